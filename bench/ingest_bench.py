"""Ingest of one large file: read whole by one worker against read in parts by several.

    .venv/bin/python bench/ingest_bench.py --input CLICKS.csv [--workers 2] [--repeats 1]
        [--split-mb 64]

Runs the product's Ingest (`logic.ingest_clicks`: read, validate, quarantine, deduplicate,
write tf.Examples) on the Beam DirectRunner in multi-process mode with `--workers` worker
processes, interleaved: once with `ingest.split_bytes` larger than the file (one worker reads
it all, as before parts existed) and once with `--split-mb` parts. It checks that both write the
same summary, and prints the median seconds of each. Last line:
`ingest: rows=R bytes=B parts=P whole_s=.. parts_s=.. speedup=S workers=W`, S = whole / parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from offline_recall.components.ingest import logic, sources
from offline_recall.core.config import IngestConfig


def make_pipeline(workers: int) -> beam.Pipeline:
    return beam.Pipeline(
        options=PipelineOptions(
            ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
        )
    )


def run_once(path: str, split_bytes: int, workers: int, work: str) -> tuple[float, dict]:
    """Seconds of one Ingest and its summary (paths and the per-file list left out)."""
    config = dataclasses.replace(IngestConfig(), split_bytes=split_bytes, max_bad_fraction=1.0)
    files, window = sources.preflight(path, None)
    out = tempfile.mkdtemp(dir=work)
    start = time.perf_counter()
    summary = logic.ingest_clicks(
        functools.partial(make_pipeline, workers),
        files,
        window,
        config,
        os.path.join(out, "examples"),
        os.path.join(out, "quarantine"),
        os.path.join(out, "summary.json"),
    )
    seconds = time.perf_counter() - start
    return seconds, {k: v for k, v in summary.items() if k != "files"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--split-mb", type=float, default=64)
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)

    size = tf.io.gfile.stat(args.input).length
    split_bytes = int(args.split_mb * 2**20)
    (f,) = sources.preflight(args.input, None)[0]
    parts = len(sources.plan_splits(f, split_bytes))
    print(f"input: {args.input}, {size} bytes, {parts} parts of {args.split_mb} MiB", flush=True)
    work = args.work or tempfile.mkdtemp(prefix="ingest-bench-")
    tf.io.gfile.makedirs(work)
    times: dict[str, list[float]] = {"whole": [], "parts": []}
    summaries = {}
    for repeat in range(args.repeats):
        for name, bytes_ in (("whole", size + 1), ("parts", split_bytes)):  # interleaved
            seconds, summaries[name] = run_once(args.input, bytes_, args.workers, work)
            times[name].append(seconds)
            print(f"repeat {repeat} {name}: {seconds:.1f} s", flush=True)
    if summaries["whole"] != summaries["parts"]:
        print(f"MISMATCH: {summaries}", file=sys.stderr)
        return 1
    whole, cut = statistics.median(times["whole"]), statistics.median(times["parts"])
    print(
        f"ingest: rows={summaries['whole']['rows_read']} bytes={size} parts={parts} "
        f"whole_s={whole:.1f} parts_s={cut:.1f} speedup={whole / cut:.2f} workers={args.workers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
