"""`offline-recall compile`: a KFP v2 spec with every stage, and an Airflow DAG that loads."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from offline_recall.pipeline.pipeline import STAGES

IMAGE = "registry.example/offline-recall:0.1.0"
# What a cluster package needs: an image with a tag, object-store input, output and root.
CLUSTER = (
    "--image",
    IMAGE,
    "--input",
    "gs://bucket/clicks",
    "--output-dir",
    "gs://bucket/out",
    "--pipeline-root",
    "gs://bucket/pipeline-root",
)


def _compile(cli, target, output, *extra):
    return cli("compile", "--target", target, "--output", str(output), *extra, timeout=600)


@pytest.mark.parametrize(
    "target, args, says",
    [
        ("kubeflow", ("--input", "gs://b/in", "--output-dir", "gs://b/o"), "--image is required"),
        ("kubeflow", ("--image", "offline-recall", "--local"), "needs a tag or a digest"),
        ("kubeflow", ("--image", "localhost:5000/offline-recall", "--local"), "tag or a digest"),
        ("kubeflow", ("--image", IMAGE), "--input must be an object-store URI"),
        (
            "kubeflow",
            ("--image", IMAGE, "--input", "gs://b/in", "--output-dir", "/data/out"),
            "--output-dir must be an object-store URI",
        ),
        (
            "kubeflow",
            ("--image", IMAGE, "--input", "gs://b/in", "--output-dir", "s3://b/o"),
            "--pipeline-root must be an object-store URI",
        ),
        (
            "kubeflow",
            (*CLUSTER[:6], "--pipeline-root", "file:///tmp/root"),
            "--pipeline-root must be an object-store URI",
        ),
        ("kubeflow", (*CLUSTER, "--catchup"), "--catchup applies to --target airflow only"),
        ("airflow", ("--image", IMAGE), "--image applies to --target kubeflow only"),
        (
            "airflow",
            ("--pipeline-root", "gs://b/r"),
            "--pipeline-root applies to --target kubeflow",
        ),
        ("airflow", ("--local",), "--local applies to --target kubeflow only"),
        ("airflow", ("--input", "relative/clicks"), "must be absolute or an object-store URI"),
        ("airflow", ("--output-dir", "gs://b/out"), "must be an absolute folder of the worker"),
        ("airflow", ("--output-dir", "out"), "must be an absolute folder of the worker"),
    ],
)
def test_compile_refuses_what_would_not_run_with_one_line(tmp_path, cli, target, args, says):
    output = tmp_path / "package.yaml"
    result = _compile(cli, target, output, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not output.exists()


def test_image_tags_and_digests_are_told_from_registry_ports():
    from offline_recall.pipeline import compile as compile_lib

    for image in (
        "offline-recall:0.1.0",
        "localhost:5000/x/offline-recall:v1",
        f"x@sha256:{'a' * 64}",
    ):
        assert compile_lib.check_image(image) == image
    for image in ("offline-recall", "localhost:5000/offline-recall", "x@sha256:short", ""):
        with pytest.raises(compile_lib.CompileError):
            compile_lib.check_image(image)


def test_kubeflow_spec_has_every_stage_and_refits_after_evaluate(tmp_path, cli):
    config = tmp_path / "refit.json"
    config.write_text(json.dumps({"trainer": {"refit_on_holdout": True}}))
    result = _compile(cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config), *CLUSTER)
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
    result = _compile(
        cli, "kubeflow", tmp_path / "kfp.json", "--config", str(config), "--image", IMAGE, "--local"
    )
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "kfp.json").read_text())["root"]["dag"]["tasks"]
    assert set(tasks) == set(STAGES) - {"Refit"}
    assert "Trainer" in tasks["RecallServing"]["dependentTasks"]


def test_kubeflow_package_loads_in_kfp_runs_the_image_and_names_no_local_path(tmp_path, cli):
    package = tmp_path / "offline-recall.yaml"
    image = IMAGE
    result = _compile(cli, "kubeflow", package, *CLUSTER)
    assert result.returncode == 0, result.stderr
    text = package.read_text()
    assert yaml.safe_load(text)["defaultPipelineRoot"] == "gs://bucket/pipeline-root"
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
    assert set(facts["tasks"]) == set(STAGES)  # the defaults refit on the holdout


def _artifact_types(node):
    """Every artifactType of a pipeline spec: {schemaTitle}."""
    if isinstance(node, dict):
        found = {node["artifactType"]["schemaTitle"]} if "artifactType" in node else set()
        return found.union(*(_artifact_types(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_artifact_types(v) for v in node))
    return set()


def test_every_artifact_type_of_the_package_parses_in_tfx_kubeflow_entrypoint(tmp_path, cli):
    """TFX's KFP task entrypoint imports a custom type by its schema title: each must resolve."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entry

    package = tmp_path / "offline-recall.json"
    assert _compile(cli, "kubeflow", package, *CLUSTER).returncode == 0
    titles = _artifact_types(json.loads(package.read_text()))
    assert {"tfx.Examples", "tfx.Model", "offline_recall.Recalls", "tfx.Metrics"} <= titles
    for title in sorted(titles):
        artifact = pipeline_spec_pb2.RuntimeArtifact(
            name="a",
            uri="gs://bucket/root/a",
            type=pipeline_spec_pb2.ArtifactTypeSchema(schema_title=title),
        )
        parsed = entry._parse_raw_artifact(artifact, {})  # noqa: SLF001 - the entrypoint's own
        assert parsed.uri == "gs://bucket/root/a", title
        assert title.split(".")[-1] in (parsed.type_name.split(".")[-1], type(parsed).__name__)


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
    # The worker's own `offline-recall`, never this machine's interpreter or checkout.
    assert facts["command"].split(" | ")[1].startswith("offline-recall run ")
    text = dag_file.read_text()
    for local in (sys.executable, sys.prefix, os.getcwd()):
        assert local not in text, local


@pytest.mark.e2e
def test_airflow_dags_test_runs_the_pipeline_and_publishes(tmp_path, cli, small_config, small_log):
    from offline_recall.core.config import SyntheticConfig
    from offline_recall.pipeline import synthetic

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
    # The worker's PATH holds the installed `offline-recall`, as on an Airflow worker.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
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
