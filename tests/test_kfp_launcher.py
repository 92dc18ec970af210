"""The compiled Kubeflow package, run task by task as a KFP launcher would run it (slow tier).

No cluster can be had here, so this test plays the launcher's part: it walks the package's DAG in
topological order and starts each task's own container command (TFX's
`kubeflow_v2_run_executor`) in a subprocess with the ExecutorInput JSON the KFP launcher hands it:
parameters from the task's constants and the run's values, input artifacts from the upstream
tasks' executor outputs (metadata included), output artifacts under the pipeline root. The
package is compiled for `gs://bucket/...`; the launcher maps that bucket to a temporary folder,
the only liberty it takes. The run must publish a release shaped as `offline-recall run`'s is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from offline_recall.core import contracts as C
from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic

pytestmark = pytest.mark.e2e

BUCKET = "gs://bucket"
IMAGE = "registry.example/offline-recall:0.1.0"


def topological_order(tasks: dict) -> list[str]:
    """Task names, each after every task it depends on (ties by name, as a stable order)."""
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(
            name
            for name, task in tasks.items()
            if name not in done and set(task.get("dependentTasks", [])) <= done
        )
        assert ready, f"the package's DAG has a cycle among {set(tasks) - done}"
        order.extend(ready)
        done.update(ready)
    return order


def map_bucket(value, local_root: str):
    """`value` with every gs://bucket URI turned into a path under `local_root`."""
    if isinstance(value, str):
        return value.replace(BUCKET, local_root)
    return value


def executor_input(spec, name, root_values, produced, pipeline_root, run_id):
    """The ExecutorInput a KFP launcher passes to task `name` (as a dict for JSON)."""
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    parameters = {}
    for key, source in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            parameters[key] = root_values[source["componentInputParameter"]]
        else:
            parameters[key] = source["runtimeValue"]["constant"]
    inputs = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items():
        upstream = source["taskOutputArtifact"]
        inputs[key] = {
            "artifacts": produced[upstream["producerTask"]][upstream["outputArtifactKey"]]
        }
    task_root = os.path.join(pipeline_root, run_id, name)
    outputs = {
        key: {
            "artifacts": [
                {
                    "name": f"{run_id}-{name}-{key}",
                    "type": definition["artifactType"],
                    "uri": os.path.join(task_root, key),
                }
            ]
        }
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    return {
        "inputs": {"parameterValues": parameters, "artifacts": inputs},
        "outputs": {
            "artifacts": outputs,
            "outputFile": os.path.join(task_root, "executor_output.json"),
        },
    }


def launch(spec, local_root: str, run_id: str) -> list[str]:
    """Runs every task of `spec`; returns the task names in the order they ran."""
    pipeline_root = map_bucket(spec["defaultPipelineRoot"], local_root)
    root_values = {
        key: map_bucket(definition.get("defaultValue", ""), local_root)
        for key, definition in spec["root"]["inputDefinitions"]["parameters"].items()
    }
    produced: dict[str, dict] = {}
    order = topological_order(spec["root"]["dag"]["tasks"])
    for name in order:
        component = spec["components"][spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        assert container["image"] == IMAGE
        invocation = executor_input(spec, name, root_values, produced, pipeline_root, run_id)
        args = [json.dumps(invocation) if a == "{{$}}" else a for a in container["args"]]
        command = container["command"]
        assert command[:2] == ["python", "-m"], command
        result = subprocess.run(
            [sys.executable, *command[1:], *args], capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"task {name} failed:\n{result.stderr[-4000:]}"
        with open(invocation["outputs"]["outputFile"], encoding="utf-8") as f:
            written = json.load(f)
        # What the launcher records for downstream tasks: each output artifact as the task was
        # given it (name, type, uri) with the metadata the executor set (split names, custom
        # properties), which the executor output carries.
        produced[name] = {}
        for key, value in invocation["outputs"]["artifacts"].items():
            given = value["artifacts"][0]
            returned = written["artifacts"][key]["artifacts"][0]
            assert returned["uri"] == given["uri"], (name, key)
            produced[name][key] = [{**given, "metadata": returned.get("metadata", {})}]
    return order


def _release_shape(output_dir: str) -> dict:
    """{table: (column names, rows)} of the release LATEST points to, and its top-level names."""
    with open(os.path.join(output_dir, C.LATEST_FILE), encoding="utf-8") as f:
        release = json.load(f)["release"]
    shape = {}
    for table in (C.RECALLS_DIR, C.USER_VECTORS_DIR, C.ITEM_VECTORS_DIR):
        read = pq.read_table(os.path.join(release, table))
        shape[table] = (tuple(read.column_names), read.num_rows)
    shape["files"] = sorted(name for name in os.listdir(release) if not name.startswith("."))
    return shape


def test_every_task_of_the_package_runs_through_tfx_entrypoint_and_publishes(
    tmp_path, cli, small_config, small_log
):
    """The package proved without a cluster (no local `run` is needed beside it: the release
    is checked against the contract a run publishes to)."""
    local_root = str(tmp_path / "bucket")
    clicks = os.path.join(local_root, "clicks", "clicks.csv")
    os.makedirs(os.path.dirname(clicks))
    synthetic.generate_clicks(clicks, SyntheticConfig(**small_log))
    config = small_config(tmp_path / "config.json")
    package = tmp_path / "offline-recall.json"
    compiled = cli(
        "compile",
        "--target",
        "kubeflow",
        "--output",
        str(package),
        "--config",
        config,
        "--image",
        IMAGE,
        "--input",
        f"{BUCKET}/clicks",
        "--output-dir",
        f"{BUCKET}/out",
        "--pipeline-root",
        f"{BUCKET}/root",
    )
    assert compiled.returncode == 0, compiled.stderr
    spec = json.loads(package.read_text())

    ran = launch(spec, local_root, run_id="run-1")

    assert set(ran) == set(spec["root"]["dag"]["tasks"])
    assert ran.index("Publish") > ran.index("Evaluate")
    # The release a local `run` publishes: the contract's tables and columns, a list and a
    # vector for every user, a vector for every catalog item, the model, index and manifest.
    out = os.path.join(local_root, "out")
    with open(os.path.join(out, C.RUN_SUMMARY_FILE), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["status"] == C.STATUS_PUBLISHED
    assert summary["ingest"]["rows_read"] == summary["ingest"]["rows_valid"] > 0
    users = summary["sequences"]["users"]
    shape = _release_shape(out)
    assert shape[C.RECALLS_DIR] == (C.PUBLISHED_COLUMNS[C.RECALLS_DIR], users)
    assert shape[C.USER_VECTORS_DIR] == (C.PUBLISHED_COLUMNS[C.USER_VECTORS_DIR], users)
    assert shape[C.ITEM_VECTORS_DIR] == (
        C.PUBLISHED_COLUMNS[C.ITEM_VECTORS_DIR],
        summary["evaluate"]["catalog_size"],
    )
    assert {
        C.RECALLS_DIR,
        C.USER_VECTORS_DIR,
        C.ITEM_VECTORS_DIR,
        C.ITEM_INDEX_DIR,
        C.RELEASE_MODEL_DIR,
        C.MANIFEST_FILE,
        C.METRICS_FILE,
    } <= set(shape["files"])
