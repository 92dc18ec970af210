"""`offline-recall compile`: a KFP v2 spec with every stage, and an Airflow DAG that loads."""

import json
import os
import subprocess
import sys

from offline_recall.pipeline.pipeline import STAGES


def _compile(target, output):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "offline_recall.pipeline.cli",
            "compile",
            "--target",
            target,
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_kubeflow_spec_has_every_stage(tmp_path):
    result = _compile("kubeflow", tmp_path / "kfp.json")
    assert result.returncode == 0, result.stderr
    job = json.loads((tmp_path / "kfp.json").read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES)
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "offline-recall"


def test_airflow_dag_loads_with_every_stage(tmp_path):
    dag_file = tmp_path / "dags" / "offline_recall_dag.py"
    result = _compile("airflow", dag_file)
    assert result.returncode == 0, result.stderr
    check = (
        "from airflow.models import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file.parent)!r}, include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['offline-recall']\n"
        "print(sorted(t.task_id for t in dag.tasks))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(eval(out.stdout.strip().splitlines()[-1])) == set(STAGES)  # noqa: S307
