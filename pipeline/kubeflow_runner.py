"""Compiles the pipeline into a Kubeflow Pipelines v2 JSON spec (KubeflowV2DagRunner).

Binds paths and options only. The image must hold this package installed with its constraints;
`pipeline_root` and the input/output paths must be reachable from the cluster (e.g. gs://).
"""

from __future__ import annotations

import os

from tfx import v1 as tfx

from offline_recall.pipeline.config import Config
from offline_recall.pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "offline-recall:latest"


def compile_pipeline(
    output_file: str,
    input_base: str,
    output_dir: str,
    pipeline_root: str,
    config: Config,
    beam_args: list[str] | None = None,
    image: str = DEFAULT_IMAGE,
) -> str:
    """Writes the KFP v2 PipelineJob JSON to `output_file` and returns its path."""
    # Transform packages nothing here (preprocessing_fn is an installed module path), but the
    # compiler still wants the root to exist when it is local.
    if "://" not in pipeline_root:
        os.makedirs(pipeline_root, exist_ok=True)
    pipeline = create_pipeline(
        pipeline_root=pipeline_root,
        input_base=input_base,
        output_dir=output_dir,
        config=config,
        beam_pipeline_args=list(beam_args or []),
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    runner.run(pipeline)
    return output_file
