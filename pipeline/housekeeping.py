"""What a local run does around the pipeline: one run per output folder, a temp folder of its own,
stale ML-Metadata executions closed, old artifacts pruned, the folder's size measured.

These act on the local disk on purpose: the lock, the temp folder and the SQLite store belong to
the machine the LocalDagRunner runs on.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

LOCK_FILE = ".lock"


TMP_DIR = "tmp"


class OutputBusyError(Exception):
    """Another live run holds the output folder."""


def _describe_holder(info: dict) -> str:
    return f"pid {info['pid']} on {info['host']} since {info['started_at']} (run {info['run_id']})"


class OutputLock:
    """An exclusive lock on an output folder, held for a whole run.

    It is an advisory `flock` on OUTPUT/.lock, so the kernel releases it when its holder dies,
    kill -9 included: a lock left by a dead run is free, and the file still names that run, so
    the next run can say whose stale lock it took over.
    """

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._file = None
        self.stale: dict | None = None

    def acquire(self, run_id: str) -> OutputLock:
        """Takes the lock or raises OutputBusyError naming the holder."""
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _read_holder(handle.read())
            handle.close()
            raise OutputBusyError(
                f"{os.path.dirname(self.path)} is in use by another offline-recall run: "
                f"{_describe_holder(holder)}"
            ) from None
        handle.seek(0)
        previous = _read_holder(handle.read())
        self.stale = previous or None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "run_id": run_id,
                    "started_at": datetime.datetime.now(datetime.UTC).isoformat(),
                }
            )
        )
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Empties the lock file (a clean end leaves no holder to report) and unlocks it."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.flush()
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    @staticmethod
    def describe(holder: dict) -> str:
        return _describe_holder(holder)


def _read_holder(text: str) -> dict:
    try:
        holder = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"pid": "?", "note": "unreadable lock file"}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def run_temp_dir(output_dir: str, run_id: str) -> Iterator[str]:
    """Points TMPDIR (and Python's tempfile) at OUTPUT/tmp/<run_id> for the run, then removes it.

    Beam, TFX and TensorFlow make their scratch folders (packaged modules, autograph sources)
    under the temp dir and leave them there; a daily run would fill /tmp. Earlier runs' leftovers
    (a killed run cannot clean up) are removed too: the output lock says no other run is live.
    """
    root = os.path.join(output_dir, TMP_DIR)
    shutil.rmtree(root, ignore_errors=True)
    path = os.path.join(root, run_id)
    os.makedirs(path)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(root, ignore_errors=True)


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def cancel_stale_executions(metadata_path: str) -> int:
    """Marks executions still RUNNING (their run was interrupted or killed) as CANCELED.

    Called under the output lock, when no run of this folder is live. Returns how many.
    """
    if not os.path.exists(metadata_path):
        return 0
    from ml_metadata.proto import metadata_store_pb2

    store = _store(metadata_path)
    running = [
        e
        for e in store.get_executions()
        if e.last_known_state == metadata_store_pb2.Execution.RUNNING
    ]
    for execution in running:
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
    if running:
        store.put_executions(running)
    return len(running)


def _execution_folders(pipeline_root: str) -> Iterator[tuple[str, list[int]]]:
    """Yields (folder, execution ids) for every folder whose children are execution ids.

    LocalDagRunner lays artifacts out as <node>/<output key>/<execution id>/ and its own files
    as <node>/.system/executor_execution/<execution id>/.
    """
    for node in sorted(os.listdir(pipeline_root)):
        node_dir = os.path.join(pipeline_root, node)
        if not os.path.isdir(node_dir):
            continue
        candidates = [os.path.join(node_dir, k) for k in os.listdir(node_dir) if k != ".system"]
        candidates.append(os.path.join(node_dir, ".system", "executor_execution"))
        for folder in candidates:
            if not os.path.isdir(folder):
                continue
            ids = sorted(int(c) for c in os.listdir(folder) if c.isdigit())
            if ids:
                yield folder, ids


def prune_pipeline_root(pipeline_root: str, metadata_path: str, keep_runs: int) -> list[str]:
    """Removes the artifacts of all but the newest `keep_runs` executions of each node.

    Each node runs once per run, so this keeps the last `keep_runs` runs' artifacts. Nothing a
    published release or the next run needs lives there (a release is a copy; the regression
    baseline is the release's metrics). ML Metadata keeps the lineage and marks the removed
    artifacts DELETED. Returns the removed folders.
    """
    if not os.path.isdir(pipeline_root):
        return []
    removed = []
    for folder, ids in _execution_folders(pipeline_root):
        for execution_id in ids[: max(0, len(ids) - keep_runs)]:
            path = os.path.join(folder, str(execution_id))
            shutil.rmtree(path)
            removed.append(path)
    if removed and os.path.exists(metadata_path):
        _mark_deleted(metadata_path, removed)
    return removed


def _mark_deleted(metadata_path: str, uris: list[str]) -> None:
    from ml_metadata.proto import metadata_store_pb2

    store = _store(metadata_path)
    artifacts = [a for uri in uris for a in store.get_artifacts_by_uri(uri)]
    for artifact in artifacts:
        artifact.state = metadata_store_pb2.Artifact.DELETED
    if artifacts:
        store.put_artifacts(artifacts)


def folder_size(path: str, skip: tuple[str, ...] = (TMP_DIR,)) -> int:
    """Bytes of every file below `path` (links not followed), but for its `skip` subfolders."""
    total = 0
    for root, folders, files in os.walk(path):
        if root == path:
            folders[:] = [f for f in folders if f not in skip]
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
