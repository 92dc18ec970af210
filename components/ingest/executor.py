"""IngestExampleGen executor: unpack artifacts, run `logic.ingest_clicks`, mark the Examples."""

from __future__ import annotations

from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.ingest import logic, sources
from offline_recall.core import contracts as C
from offline_recall.core.config import IngestConfig
from offline_recall.trainer import features as F


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        config = IngestConfig.from_json(exec_properties[C.CONFIG_KEY])
        input_base = exec_properties[C.INPUT_BASE_KEY]
        files, window = sources.preflight(
            input_base, config, exec_properties.get(C.RUN_DATE_KEY) or None
        )
        examples = artifact_utils.get_single_instance(output_dict[C.EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names([F.INGEST_SPLIT])
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples.set_string_custom_property("file_format", "tfrecords_gzip")
        examples.set_string_custom_property(C.INPUT_BASE_KEY, input_base)
        # TFX's span semantics: the artifact's span is the newest it holds; the range and the run
        # date say which days a model downstream saw.
        examples.span = max(f.span for f in files)
        examples.set_int_custom_property("span_start", min(f.span for f in files))
        examples.set_int_custom_property("span_end", max(f.span for f in files))
        examples.set_string_custom_property(C.RUN_DATE_KEY, window.run_date or "")
        # Sequences trains on events from this day on; earlier ones are history only.
        examples.set_string_custom_property(C.WINDOW_FIRST_DAY_KEY, window.first_day or "")
        logic.ingest_clicks(
            self._make_beam_pipeline,
            files,
            window,
            config,
            artifact_utils.get_split_uri(output_dict[C.EXAMPLES_KEY], F.INGEST_SPLIT),
            artifact_utils.get_single_uri(output_dict[C.QUARANTINE_KEY]),
            common.summary_path(artifact_utils.get_single_uri(output_dict[C.REPORT_KEY])),
        )
