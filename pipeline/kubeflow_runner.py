"""Compiles the pipeline into an open-source Kubeflow Pipelines v2 package (KubeflowV2DagRunner).

Binds paths and options only. The package is the pipeline spec (YAML IR, which kfp's loader and
`kfp.Client().create_run_from_pipeline_package` take), not Vertex's PipelineJob wrapper. Every task
runs `image`; the input, the output folder and the run date are runtime parameters
(`input_base`, `output_dir`, `run_date`), so one package serves every day; nothing in it names a path of the compiling
machine (schemas are read from the image's installed package).
"""

from __future__ import annotations

import json
import os
import tempfile

import yaml
from tfx import v1 as tfx

from offline_recall.core.config import Config
from offline_recall.pipeline.pipeline import create_pipeline

# The runtime parameters of a compiled package.
INPUT_BASE_PARAMETER = "input_base"
OUTPUT_DIR_PARAMETER = "output_dir"
RUN_DATE_PARAMETER = "run_date"  # YYYY-MM-DD; empty: the newest day folder


def compile_pipeline(
    output_file: str,
    input_base: str,
    output_dir: str,
    pipeline_root: str,
    config: Config,
    beam_args: list[str] | None = None,
    *,
    image: str,
) -> str:
    """Writes the KFP v2 pipeline spec to `output_file` (YAML for .yaml/.yml, else JSON).

    Args:
        output_file: the package to write.
        input_base: the default of the `input_base` runtime parameter.
        output_dir: the default of the `output_dir` runtime parameter.
        pipeline_root: where TFX writes artifacts (gs://... on a cluster); the package's
            `defaultPipelineRoot`.
        config: the run config, compiled into each component.
        beam_args: Beam options of every Beam stage.
        image: the container every task runs (see the Dockerfile).
    """
    pipeline = create_pipeline(
        pipeline_root=pipeline_root,
        input_base=tfx.dsl.experimental.RuntimeParameter(
            name=INPUT_BASE_PARAMETER, ptype=str, default=input_base
        ),
        output_dir=tfx.dsl.experimental.RuntimeParameter(
            name=OUTPUT_DIR_PARAMETER, ptype=str, default=output_dir
        ),
        config=config,
        beam_pipeline_args=list(beam_args or []),
        run_date=tfx.dsl.experimental.RuntimeParameter(
            name=RUN_DATE_PARAMETER, ptype=str, default=""
        ),
    )
    with tempfile.TemporaryDirectory() as scratch:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
                default_image=image, use_pipeline_spec_2_1=True
            ),
            output_dir=scratch,
            output_filename="pipeline_job.json",
        )
        runner.run(pipeline)
        with open(os.path.join(scratch, "pipeline_job.json"), encoding="utf-8") as f:
            job = json.load(f)
    spec = pipeline_spec_of(
        job,
        {
            INPUT_BASE_PARAMETER: input_base,
            OUTPUT_DIR_PARAMETER: output_dir,
            RUN_DATE_PARAMETER: "",
        },
        pipeline_root,
    )
    text = (
        yaml.safe_dump(spec, sort_keys=False)
        if output_file.endswith((".yaml", ".yml"))
        else json.dumps(spec, indent=2)
    )
    tmp = f"{output_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, output_file)
    return output_file


def pipeline_spec_of(job: dict, defaults: dict[str, str], pipeline_root: str) -> dict:
    """The PipelineSpec of a Vertex PipelineJob, in the form open-source KFP reads.

    Args:
        job: what KubeflowV2DagRunner wrote.
        defaults: {runtime parameter: default value}, set on the root's input parameters.
        pipeline_root: the package's `defaultPipelineRoot` (Vertex keeps it in the job's
            runtime config, which the package drops; a KFP run uses it unless told otherwise).
    """
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = pipeline_root
    _modernize(spec)
    root_parameters = spec["root"].setdefault("inputDefinitions", {}).setdefault("parameters", {})
    for name, value in defaults.items():
        root_parameters.setdefault(name, {"parameterType": "STRING"})["defaultValue"] = value
    return spec


# Parameter types: the deprecated `type` enum and the `parameterType` kfp 2 reads.
_PARAMETER_TYPES = {"STRING": "STRING", "INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE"}
_CONSTANT_KINDS = ("stringValue", "intValue", "doubleValue")


def _modernize(node) -> None:
    """Rewrites TFX 1.15's older IR forms in place into those kfp 2 reads.

    - artifact types named by `instanceSchema` get its title as `schemaTitle` ("tfx.Examples",
      "offline_recall.Recalls"; the artifacts still carry their properties at run time);
    - parameter definitions' `type: STRING` becomes `parameterType: STRING`;
    - constants `runtimeValue.constantValue.stringValue` become `runtimeValue.constant`.
    """
    if isinstance(node, list):
        for value in node:
            _modernize(value)
        return
    if not isinstance(node, dict):
        return
    artifact_type = node.get("artifactType")
    if isinstance(artifact_type, dict) and "instanceSchema" in artifact_type:
        schema = yaml.safe_load(artifact_type.pop("instanceSchema"))
        artifact_type["schemaTitle"] = schema["title"]
        artifact_type["schemaVersion"] = "0.0.1"
    for definitions in ("inputDefinitions", "outputDefinitions"):
        for parameter in node.get(definitions, {}).get("parameters", {}).values():
            if "type" in parameter:
                parameter["parameterType"] = _PARAMETER_TYPES[parameter.pop("type")]
    runtime_value = node.get("runtimeValue")
    if isinstance(runtime_value, dict) and "constantValue" in runtime_value:
        constant = runtime_value.pop("constantValue")
        runtime_value["constant"] = next(constant[k] for k in _CONSTANT_KINDS if k in constant)
    for value in node.values():
        _modernize(value)
