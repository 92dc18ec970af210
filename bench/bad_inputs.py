"""Runs `offline-recall run` on broken inputs of many kinds; prints each one's exit code and line.

    .venv/bin/python bench/bad_inputs.py [--work /tmp/bad-inputs]

Every case is a real CLI run on a file this script writes. The table is what a user sees: the
exit code and the first line on stderr (stdout's verdict for runs that exit 0 or 3).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

HEADER = "user_id,item_id,timestamp\n"
SMALL = {
    "trainer": {"epochs": 2, "embedding_dim": 8, "num_blocks": 1, "early_stopping_patience": 0},
    "recall": {"top_n": 50},
    "evaluate": {"ks": [10, 50], "min_ratio_to_popularity": 0.0},
}


def rows(n: int, start: int = 0) -> str:
    return "".join(f"u{i % 40},i{i % 90},{1_600_000_000 + i}\n" for i in range(start, start + n))


def write(path: str, data: bytes | str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def torn_parquet(path: str) -> str:
    n = 20000
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{i % 40}" for i in range(n)],
                "item_id": [f"i{i % 90}" for i in range(n)],
                "timestamp": list(range(1_600_000_000, 1_600_000_000 + n)),
            }
        ),
        path,
        row_group_size=2000,
    )
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3 : len(data) // 3 + 4000] = b"\x55" * 4000
    return write(path, bytes(data))


def corrupt_tfrecord(path: str) -> str:
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(300):
            example = tf.train.Example()
            example.features.feature["user_id"].bytes_list.value.append(f"u{i % 40}".encode())
            example.features.feature["item_id"].bytes_list.value.append(f"i{i % 90}".encode())
            example.features.feature["timestamp"].int64_list.value.append(1_600_000_000 + i)
            writer.write(example.SerializeToString())
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    return write(path, bytes(data))


def cases(work: str) -> list[tuple[str, list[str]]]:
    """(what, CLI arguments after `run --output OUT`)."""
    d = lambda name: os.path.join(work, "in", name)  # noqa: E731
    gz = gzip.compress((HEADER + rows(20000)).encode())
    many = HEADER + rows(3000)
    return [
        ("input path does not exist", ["--input", d("nope.csv")]),
        ("empty file", ["--input", write(d("empty.csv"), "")]),
        ("header only", ["--input", write(d("header.csv"), HEADER)]),
        ("header only, then blank lines", ["--input", write(d("blank.csv"), HEADER + "\n\n")]),
        (
            "tab-separated file named .csv",
            ["--input", write(d("tsv.csv"), HEADER.replace(",", "\t"))],
        ),
        ("missing required column", ["--input", write(d("nocol.csv"), "user_id,item_id\nu,i\n")]),
        (
            "repeated column",
            ["--input", write(d("rep.csv"), "user_id,item_id,timestamp,item_id\n")],
        ),
        (
            "non-UTF-8 byte in a header name",
            [
                "--input",
                write(d("hdr.csv"), b"user_id,item_id,timestamp,s\xe9ssion\n" + rows(9).encode()),
            ],
        ),
        ("truncated .csv.gz", ["--input", write(d("trunc.csv.gz"), gz[: len(gz) // 2])]),
        ("plain text named .csv.gz", ["--input", write(d("plain.csv.gz"), many)]),
        ("torn Parquet page", ["--input", torn_parquet(d("torn.parquet"))]),
        ("CSV named .parquet", ["--input", write(d("fake.parquet"), many)]),
        ("corrupt TFRecord mid-file", ["--input", corrupt_tfrecord(d("bad.tfrecord"))]),
        ("unknown extension", ["--input", write(d("clicks.txt"), many)]),
        (
            "folder with no data files",
            ["--input", os.path.dirname(write(d("nodata/_SUCCESS"), ""))],
        ),
        (
            "span folder with an invalid date",
            ["--input", os.path.dirname(os.path.dirname(write(d("spans/2024-13-01/c.csv"), many)))],
        ),
        (
            "Windows-1252 ids (every row invalid UTF-8)",
            [
                "--input",
                write(d("cp1252.csv"), (HEADER + rows(300).replace("u", "\xfc")).encode("cp1252")),
            ],
        ),
        (
            "NUL bytes in rows",
            ["--input", write(d("nul.csv"), HEADER + rows(300).replace("i1", "i\x001"))],
        ),
        (
            "2% bad timestamps",
            ["--input", write(d("bad2.csv"), HEADER + rows(2940) + "u,i,soon\n" * 60)],
        ),
        (
            "one stray quote in 3,000 rows",
            [
                "--input",
                write(
                    d("stray.csv"),
                    HEADER
                    + rows(1500)
                    + 'u1,"i-stray,1600000000\n'
                    + rows(1499, 5000)
                    + 'u2,"x",1600000001\n',
                ),
            ],
        ),
        (
            "millisecond epochs (timestamp_unit auto)",
            ["--input", write(d("ms.csv"), HEADER + rows(3000).replace("\n", "000\n"))],
        ),
        (
            "config: wrong type",
            ["--config", write(d("type.json"), json.dumps({"trainer": {"embedding_dim": "64"}}))],
        ),
        (
            "config: unknown key",
            ["--config", write(d("key.yaml"), "trainer:\n  embeding_dim: 64\n")],
        ),
        ("config: broken YAML", ["--config", write(d("broken.yaml"), "trainer: [unclosed\n")]),
        (
            "config: top_n below the blessing K",
            ["--config", write(d("topn.json"), json.dumps({"recall": {"top_n": 20}}))],
        ),
    ]


def run(work: str, args: list[str], out: str) -> tuple[int, str, float]:
    config = os.path.join(work, "small.json")
    full = ["run", "--output", out, *args]
    if "--config" not in args:
        full += ["--config", config]
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "offline_recall.pipeline.cli", *full],
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = result.stderr.strip().splitlines()
    if not lines:
        verdict = [ln for ln in result.stdout.splitlines() if ln.startswith(("published", "NOT"))]
        quarantined = [ln for ln in result.stdout.splitlines() if ln.startswith("ingest:")]
        lines = [" / ".join(quarantined + verdict)]
    return (
        result.returncode,
        lines[0] + (f"  (+{len(lines) - 1} lines)" if len(lines) > 1 else ""),
        time.time() - started,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/offline-recall-bad-inputs")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    write(os.path.join(args.work, "small.json"), json.dumps(SMALL))
    print("| case | exit | what the user sees |")
    print("|---|---|---|")
    for n, (what, case_args) in enumerate(cases(args.work)):
        code, line, _ = run(args.work, case_args, os.path.join(args.work, f"out{n}"))
        print(f"| {what} | {code} | `{line.replace(args.work, '.../')}` |", flush=True)
    taken = os.path.join(args.work, "taken")
    write(taken, "a file")
    code, line, _ = run(args.work, [], taken)
    print(f"| --output is a file | {code} | `{line.replace(args.work, '.../')}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
