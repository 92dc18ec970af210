"""Files on any filesystem TensorFlow knows (local, gs://, s3://, ram://): JSON written atomically,
Parquet read lazily and written in one go, folders copied, checksums. Every stage and the trainer
read and write through here, so object stores work wherever a local path does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from offline_recall.core.contracts import LATEST_FILE, PARQUET_SUFFIX


def write_json(path: str, payload: Any) -> None:
    """Writes JSON through a temporary file and a rename, so readers never see half a file."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_json(path: str) -> Any:
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def read_latest(output_dir: str) -> dict | None:
    """The LATEST pointer of an output folder ({run_id, release, published_at}), or None."""
    path = os.path.join(output_dir, LATEST_FILE)
    return read_json(path) if tf.io.gfile.exists(path) else None


def parquet_files(folder: str) -> list[str]:
    """The Parquet files of a table folder, in name order."""
    return sorted(tf.io.gfile.glob(os.path.join(folder, f"*{PARQUET_SUFFIX}")))


def is_local(path: str) -> bool:
    """True for a path on this machine's disk, False for a URI (gs://, s3://, ram://)."""
    return "://" not in path


class GFileRaw(io.RawIOBase):
    """A tf.io.gfile file as a raw binary stream, so io, gzip and pyarrow read and write gs://,
    s3:// and ram:// as they do local files (a GFile lacks the `closed` they check)."""

    def __init__(self, path: str, mode: str = "rb"):
        super().__init__()
        if mode not in ("rb", "wb"):
            raise ValueError(f"mode must be 'rb' or 'wb', got {mode!r}")
        self._mode = mode
        self._file = tf.io.gfile.GFile(path, mode)

    def readable(self) -> bool:
        return self._mode == "rb"

    def writable(self) -> bool:
        return self._mode == "wb"

    def seekable(self) -> bool:
        return self._mode == "rb"

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data) -> int:
        self._file.write(bytes(data))
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._file.seek(offset, whence)
        return self._file.tell()

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file on any filesystem TF knows, read lazily: the footer first, then only the
    column chunks asked for."""
    if is_local(path):
        return pq.ParquetFile(path)
    return pq.ParquetFile(pa.PythonFile(io.BufferedReader(GFileRaw(path)), mode="r"))


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """Reads a Parquet file (only `columns`, in that order) on any filesystem TF knows."""
    with open_parquet(path) as f:
        table = f.read(columns=columns)
    return table.select(columns) if columns else table


def write_parquet(table: pa.Table, path: str) -> None:
    """Writes a Parquet file on any filesystem TF knows, in one write."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue().to_pybytes())


PARQUET_COPY_ROWS = 65536


def copy_parquet_columns(src: str, dst: str, columns: list[str]) -> int:
    """Rewrites a Parquet file keeping `columns` (in that order), `PARQUET_COPY_ROWS` rows at a
    time, so memory stays one batch however large the file; returns the row count. Row groups
    of the copy hold at most that many rows."""
    rows = 0
    with open_parquet(src) as source:
        names = source.schema_arrow.names
        if missing := [c for c in columns if c not in names]:
            raise ValueError(f"{src} has no column {missing[0]!r} (it has {names})")
        schema = pa.schema([source.schema_arrow.field(c) for c in columns])
        with (
            pa.PythonFile(GFileRaw(dst, "wb"), mode="w") as sink,
            pq.ParquetWriter(sink, schema) as writer,
        ):
            for batch in source.iter_batches(batch_size=PARQUET_COPY_ROWS, columns=columns):
                table = pa.Table.from_batches([batch]).select(columns)
                writer.write_table(table, row_group_size=PARQUET_COPY_ROWS)
                rows += table.num_rows
    return rows


def copy_tree(src: str, dst: str) -> None:
    """Copies a folder, file by file, on any filesystem TF knows."""
    for root, _, names in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(root, src))
        tf.io.gfile.makedirs(target)
        for name in names:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
