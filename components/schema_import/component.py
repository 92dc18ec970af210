"""PackagedSchemaGen: a Schema artifact from a schema file this package ships (schema/*.pbtxt).

Like ImportSchemaGen, but names the schema, not a path, so the compiled pipeline carries no path
of the compiling machine: the container reads the schema from its own installed package.
"""

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components.schema_import import executor
from offline_recall.core import contracts as C


class PackagedSchemaGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {C.SCHEMA_NAME_KEY: component_spec.ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {C.SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema)}


class PackagedSchemaGen(base_component.BaseComponent):
    SPEC_CLASS = PackagedSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, schema_name: str):
        super().__init__(
            spec=PackagedSchemaGenSpec(
                schema_name=schema_name,
                schema=channel_utils.as_channel([standard_artifacts.Schema()]),
            )
        )
