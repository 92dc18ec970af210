"""Runs the pipeline with LocalDagRunner, a SQLite ML-Metadata store and Beam's DirectRunner.

Binds paths and options only; the DAG is `create_pipeline`'s.
"""

from __future__ import annotations

import os

from tfx import v1 as tfx

from offline_recall.core.config import Config
from offline_recall.pipeline.pipeline import create_pipeline

DEFAULT_BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def paths(output_dir: str) -> dict[str, str]:
    """Where a run under `output_dir` keeps TFX artifacts, ML Metadata and logs."""
    output_dir = os.path.abspath(output_dir)
    return {
        "output_dir": output_dir,
        "pipeline_root": os.path.join(output_dir, "tfx", "pipeline_root"),
        "metadata": os.path.join(output_dir, "tfx", "metadata.sqlite"),
    }


def run(
    input_base: str,
    output_dir: str,
    config: Config,
    beam_args: list[str] | None = None,
    run_id: str = "",
    input_note: str = "",
    run_date: str = "",
):
    """Builds and runs the pipeline locally; raises what the failing component raised."""
    p = paths(output_dir)
    os.makedirs(os.path.dirname(p["metadata"]), exist_ok=True)
    pipeline = create_pipeline(
        pipeline_root=p["pipeline_root"],
        input_base=os.path.abspath(input_base),
        output_dir=p["output_dir"],
        config=config,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            p["metadata"]
        ),
        beam_pipeline_args=DEFAULT_BEAM_ARGS + list(beam_args or []),
        run_id=run_id,
        input_note=input_note,
        run_date=run_date,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
