"""Writes an Airflow DAG file that builds the pipeline with AirflowDagRunner (daily schedule).

The DAG file holds only paths and the config; the DAG itself comes from `create_pipeline` when
Airflow imports the file, so a new package version changes the DAG without recompiling.
"""

from __future__ import annotations

from offline_recall.pipeline.config import Config

DAG_TEMPLATE = '''"""offline-recall daily DAG (written by `offline-recall compile --target airflow`)."""
import datetime

from tfx.orchestration import metadata
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from offline_recall.pipeline.config import Config
from offline_recall.pipeline.pipeline import create_pipeline

CONFIG = Config.from_json({config!r})
INPUT_BASE = {input_base!r}
OUTPUT_DIR = {output_dir!r}
PIPELINE_ROOT = {pipeline_root!r}
METADATA_PATH = {metadata_path!r}
BEAM_ARGS = {beam_args!r}

AIRFLOW_CONFIG = {{
    "schedule_interval": "@daily",
    "start_date": datetime.datetime(2026, 1, 1),
    "catchup": False,
}}

DAG = AirflowDagRunner(AirflowPipelineConfig(AIRFLOW_CONFIG)).run(
    create_pipeline(
        pipeline_root=PIPELINE_ROOT,
        input_base=INPUT_BASE,
        output_dir=OUTPUT_DIR,
        config=CONFIG,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(METADATA_PATH),
        beam_pipeline_args=BEAM_ARGS,
    )
)
'''


def render_dag(
    input_base: str,
    output_dir: str,
    pipeline_root: str,
    metadata_path: str,
    config: Config,
    beam_args: list[str] | None = None,
) -> str:
    """Returns the text of the Airflow DAG file."""
    return DAG_TEMPLATE.format(
        config=config.to_json(),
        input_base=input_base,
        output_dir=output_dir,
        pipeline_root=pipeline_root,
        metadata_path=metadata_path,
        beam_args=list(beam_args or []),
    )
