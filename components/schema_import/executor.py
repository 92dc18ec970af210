"""PackagedSchemaGen executor: unpack the artifact, run `logic.import_packaged_schema`."""

from __future__ import annotations

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.schema_import import logic
from offline_recall.core import contracts as C


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        logic.import_packaged_schema(
            exec_properties[C.SCHEMA_NAME_KEY],
            artifact_utils.get_single_uri(output_dict[C.SCHEMA_KEY]),
        )
