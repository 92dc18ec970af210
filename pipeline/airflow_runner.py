"""Writes an Airflow DAG file that runs the pipeline once a day.

Shape: one Airflow task per run, a BashOperator that calls the product's own runner
(`offline-recall run`, LocalDagRunner with its SQLite ML Metadata in the output folder). Why not
AirflowDagRunner, a task per TFX component: its legacy driver names artifacts
`{output key}:{run id}`, which ML Metadata wants unique per type, and this pipeline has two
ImportSchemaGens (`schema`), two Recalls (`recalls`, `report`) and two Trainers (`model`) that
collide; and every task would import TensorFlow at parse time. One task keeps what the local run
guarantees (the output lock, interrupts, the atomic publish, retention) and makes the DAG file
import nothing but Airflow, so it parses in well under Airflow's import timeout. A retry reruns
the whole pipeline; that is what a failed daily run needs anyway.

Exit codes map onto task states: 0 success; 3 (ran, not blessed) skipped, so the DAG run stays
green and the skip is visible; 2 (bad input), 1 and interrupts fail, and are retried.
"""

from __future__ import annotations

from offline_recall.core.config import Config

DAG_TEMPLATE = '''"""offline-recall daily DAG (written by `offline-recall compile --target airflow`).

One task runs the whole pipeline with the product's own runner; see
offline_recall/pipeline/airflow_runner.py for why. It imports only Airflow.
"""

import datetime
import os
import shlex

from airflow import DAG
from airflow.operators.bash import BashOperator

DAG_ID = {dag_id!r}
# The run's input and output folder (paths on the worker, or object-store URIs); the output
# folder also holds ML Metadata. The worker runs `offline-recall` from its PATH (install the
# package in the workers' environment, or run this command in the image with a
# KubernetesPodOperator).
INPUT = {input_base!r}  # empty: the built-in synthetic log
OUTPUT = {output_dir!r} or os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "offline-recall", "output"
)
COMMAND_NAME = "offline-recall"
CONFIG_JSON = {config_json!r}
BEAM_ARGS = {beam_args!r}
CATCHUP = {catchup!r}

COMMAND = (
    "printf %s " + shlex.quote(CONFIG_JSON) + " | "
    + COMMAND_NAME + " run --config -"
    + " --output " + shlex.quote(OUTPUT)
    + (" --input " + shlex.quote(INPUT) if INPUT else "")
    # Airflow's run date is the run's: the day folder it ends at, the events it keeps.
    + " --date {{{{ ds }}}}"
    + ((" -- " + " ".join(shlex.quote(a) for a in BEAM_ARGS)) if BEAM_ARGS else "")
)

with DAG(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=datetime.datetime(2026, 1, 1),
    catchup=CATCHUP,
    # One ML Metadata store and one output folder: runs of this DAG never overlap.
    max_active_runs=1,
    default_args={{
        "retries": 2,
        "retry_delay": datetime.timedelta(minutes=10),
        "execution_timeout": datetime.timedelta(hours=6),
    }},
    tags=["offline-recall"],
) as dag:
    BashOperator(
        task_id="offline_recall_run",
        bash_command=COMMAND,
        # Exit 3: the run finished but its model was not blessed; the last release stays.
        skip_on_exit_code=3,
    )
'''


def render_dag(
    input_base: str,
    output_dir: str,
    config: Config,
    beam_args: list[str] | None = None,
    catchup: bool = False,
) -> str:
    """Returns the text of the Airflow DAG file.

    Args:
        input_base: the click log (file or folder of daily spans, any URI); empty = synthetic.
        output_dir: the output folder; empty = $AIRFLOW_HOME/offline-recall/output at run time.
        config: the run config, embedded in the file.
        beam_args: Beam options for the run.
        catchup: whether Airflow backfills the days since start_date.
    """
    return DAG_TEMPLATE.format(
        dag_id=config.pipeline_name,
        input_base=input_base,
        output_dir=output_dir,
        config_json=config.to_json(),
        beam_args=list(beam_args or []),
        catchup=catchup,
    )
