"""`offline-recall compile`: a KFP v2 spec with every stage, and an Airflow DAG that loads."""

import json
import os
import subprocess
import sys

from offline_recall.pipeline.pipeline import STAGES


def _compile(cli, target, output, *extra):
    return cli("compile", "--target", target, "--output", str(output), *extra, timeout=600)


def test_kubeflow_spec_has_every_stage_and_refits_after_evaluate(tmp_path, cli):
    config = tmp_path / "refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": True}}))
    result = _compile(cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    job = json.loads((tmp_path / "kfp.json").read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES)
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "offline-recall"
    # Refit has no data edge to Evaluate; the ordering edge must survive compilation.
    assert "Evaluate" in tasks["Refit"]["dependentTasks"]
    assert "Refit" in tasks["RecallServing"]["dependentTasks"]


def test_without_refit_there_is_no_refit_stage(tmp_path, cli):
    config = tmp_path / "no_refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": False}}))
    result = _compile(cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "kfp.json").read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES) - {"Refit"}
    assert "Trainer" in tasks["RecallServing"]["dependentTasks"]


def test_airflow_dag_loads_with_every_stage_and_refits_after_evaluate(tmp_path, cli):
    config = tmp_path / "refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": True}}))
    dag_file = tmp_path / "dags" / "offline_recall_dag.py"
    result = _compile(cli, "airflow", dag_file, "--config", str(config))
    assert result.returncode == 0, result.stderr
    check = (
        "from airflow.models import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file.parent)!r}, include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['offline-recall']\n"
        "print(sorted(dag.get_task('Refit').upstream_task_ids))\n"
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
    refit_upstream, tasks = out.stdout.strip().splitlines()[-2:]
    assert "Evaluate" in eval(refit_upstream)  # noqa: S307
    assert set(eval(tasks)) == set(STAGES)  # noqa: S307
