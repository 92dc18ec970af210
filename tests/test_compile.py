"""`offline-recall compile`: a KFP v2 spec with every stage, and an Airflow DAG that loads."""

import json
import os
import subprocess
import sys

import pytest

from offline_recall.pipeline.pipeline import STAGES


def _compile(cli, target, output, *extra):
    return cli("compile", "--target", target, "--output", str(output), *extra, timeout=600)


def test_kubeflow_spec_has_every_stage_and_refits_after_evaluate(tmp_path, cli):
    config = tmp_path / "refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": True}}))
    result = _compile(cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "kfp.json").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES)
    assert spec["pipelineInfo"]["name"] == "offline-recall"
    # Refit has no data edge to Evaluate; the ordering edge must survive compilation.
    assert "Evaluate" in tasks["Refit"]["dependentTasks"]
    assert "Refit" in tasks["RecallServing"]["dependentTasks"]


def test_without_refit_there_is_no_refit_stage(tmp_path, cli):
    config = tmp_path / "no_refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": False}}))
    result = _compile(cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "kfp.json").read_text())["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES) - {"Refit"}
    assert "Trainer" in tasks["RecallServing"]["dependentTasks"]


def test_kubeflow_package_loads_in_kfp_runs_the_image_and_names_no_local_path(tmp_path, cli):
    package = tmp_path / "offline-recall.yaml"
    image = "registry.example/offline-recall:0.1.0"
    result = _compile(
        cli,
        "kubeflow",
        package,
        "--image",
        image,
        "--input",
        "gs://bucket/clicks",
        "--output-dir",
        "gs://bucket/out",
        "--pipeline-root",
        "gs://bucket/root",
    )
    assert result.returncode == 0, result.stderr
    text = package.read_text()
    for local in (str(tmp_path), os.getcwd(), os.path.expanduser("~"), "/tmp/", "site-packages"):
        assert local not in text, local
    check = (
        "import json, kfp\n"
        f"c = kfp.components.load_component_from_file({str(package)!r})\n"
        "images = [e['container']['image'] for e in\n"
        "    c.pipeline_spec.deployment_spec['executors'].values()]\n"
        "print(json.dumps({'inputs': {k: v.default for k, v in c.component_spec.inputs.items()},\n"
        "  'images': images, 'tasks': sorted(c.pipeline_spec.root.dag.tasks)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["inputs"] == {
        "input_base": "gs://bucket/clicks",
        "output_dir": "gs://bucket/out",
        "run_date": "",
    }
    assert set(facts["images"]) == {image} and len(facts["images"]) == len(facts["tasks"])
    assert set(facts["tasks"]) == set(STAGES) - {"Refit"}


def _airflow_env(tmp_path, dags):
    return {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }


def test_airflow_dag_parses_fast_without_tensorflow(tmp_path, cli):
    dag_file = tmp_path / "dags" / "offline_recall_dag.py"
    result = _compile(cli, "airflow", dag_file, "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    check = (
        "import sys, json\n"
        "from airflow.models import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file.parent)!r}, include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['offline-recall']\n"
        "(task,) = dag.tasks\n"
        "(stat,) = bag.dagbag_stats\n"
        "print(json.dumps({'seconds': stat.duration.total_seconds(),\n"
        "  'tf': 'tensorflow' in sys.modules, 'max_active_runs': dag.max_active_runs,\n"
        "  'catchup': dag.catchup, 'retries': task.retries,\n"
        "  'retry_delay': task.retry_delay.total_seconds(), 'command': task.bash_command}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=600,
        env=_airflow_env(tmp_path, dag_file.parent),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["seconds"] < 2 and not facts["tf"]
    assert facts["max_active_runs"] == 1 and facts["catchup"] is False
    assert facts["retries"] >= 1 and facts["retry_delay"] > 0
    assert str(tmp_path / "out") in facts["command"] and "--config -" in facts["command"]
    assert "--date {{ ds }}" in facts["command"]


@pytest.mark.e2e
def test_airflow_dags_test_runs_the_pipeline_and_publishes(tmp_path, cli, small_config, small_log):
    from offline_recall.pipeline import synthetic
    from offline_recall.pipeline.config import SyntheticConfig

    clicks = tmp_path / "clicks.csv"
    synthetic.generate_clicks(str(clicks), SyntheticConfig(**small_log))
    config = small_config(tmp_path / "config.json", trainer={"refit_on_holdout": False})
    dags, out = tmp_path / "dags", tmp_path / "out"
    result = _compile(
        cli,
        "airflow",
        dags / "offline_recall_dag.py",
        "--input",
        str(clicks),
        "--output-dir",
        str(out),
        "--config",
        config,
    )
    assert result.returncode == 0, result.stderr
    env = _airflow_env(tmp_path, dags)
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run(
        [*airflow, "db", "migrate"], capture_output=True, text=True, timeout=600, env=env
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    test = subprocess.run(
        [*airflow, "dags", "test", "offline-recall", "2026-01-02"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    log = test.stdout + test.stderr
    assert test.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]
    latest = json.loads((out / "LATEST").read_text())
    assert (out / "releases" / latest["run_id"] / "manifest.json").exists()
