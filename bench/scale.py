"""How the whole pipeline's cost grows with the log: wall time and peak RSS per stage, per size.

For each size it writes a synthetic log with users and items growing with it (about 8 events per
user, 92 items per 1,000 events, a power-law popularity tail) plus a few heavy users with
10k-50k events each, runs `offline-recall run` with the product's defaults, and samples the RSS
of the run's whole process tree every 0.2 s. Stages run one after another (LocalDagRunner), so a
stage's peak is the highest sample between the progress line before it and its own.

    .venv/bin/python bench/scale.py [--events 100000 1000000 5000000] [--work DIR]
        [--reuse DIR/results.json] [--config FILE]

`--reuse` takes the sizes an earlier run measured (its results.json, written after each size)
instead of running them again; `--config` runs the new sizes with a config other than the
defaults (the 5M memory check with fewer epochs, say), which the figures must then mention.

It prints a table per size (stage, seconds, peak RSS, events/s, and the ratio of the stage's
time per event to the smallest run's) and a last line:
`scale: events=... wall_s=... per_event_ratio_1M=... per_event_ratio_5M=... peak_rss_gb=...
recall_vs_sgemm_1M=... recall_vs_sgemm_5M=...`
where per_event_ratio_X = (wall time per event at X) / (wall time per event at the smallest
size). Linear cost is 1.0; the goal is <= 1.2 for every stage but RecallServing, which scores
every user against every item and so grows with users x items. Its yardstick is
recall_vs_sgemm_X: RecallServing's seconds over those of a bare SGEMM of the same users x items
x dim (the published vectors, in Recall's blocks: `recall.batch_size` x `recall.block_items`),
timed in this process right after the run. The goal is <= 1.5.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
from recall_bench import read_vectors, sgemm

from offline_recall.core import contracts as C
from offline_recall.core.config import RecallConfig, SyntheticConfig
from offline_recall.pipeline import synthetic

PROGRESS = re.compile(r"^\[\s*\d+/\d+\]\s+(\S+)\s+done in\s+([\d.]+)s")
EVENTS_PER_USER = 8
ITEMS_PER_EVENT = 0.092


def heavy_users(events: int) -> list[int]:
    """Event counts of the heavy users (bots, shared accounts) a log of this size gets."""
    rng = np.random.default_rng(events)
    count = 2 + events // 1_000_000
    return [int(rng.integers(10_000, 50_000)) for _ in range(count)]


def write_log(path: str, events: int) -> dict:
    """The synthetic log of about `events` events, heavy users included; returns its shape."""
    heavy = heavy_users(events)
    regular = max(events - sum(heavy), events // 2)
    items = max(200, int(regular * ITEMS_PER_EVENT))
    shape = SyntheticConfig(
        seed=11,
        num_users=max(100, regular // EVENTS_PER_USER),
        num_items=items,
        num_clusters=max(20, items // 80),
        mean_events_per_user=EVENTS_PER_USER,
    )
    facts = synthetic.generate_clicks(path, shape)
    ids = synthetic.item_ids(items)
    rng = np.random.default_rng(events + 1)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity /= popularity.sum()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for h, n in enumerate(heavy):
            picks = rng.choice(items, size=n, p=popularity)
            times = np.sort(rng.integers(0, 30 * 86400, n)) + synthetic.START_TIMESTAMP
            for item, t in zip(picks, times, strict=True):
                writer.writerow([f"heavy{h:02d}", ids[item], str(int(t)), f"h{h}"])
    return {**facts, "rows": facts["rows"] + sum(heavy), "heavy_users": heavy}


class RssSampler(threading.Thread):
    """Samples the RSS of a process and its descendants; `take_peak` returns and resets the peak
    since the last call."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._every = every
        self._peak = 0
        self.overall = 0
        self._lock = threading.Lock()
        self.done = threading.Event()

    def _rss(self) -> int:
        total = 0
        for p in [self._process, *self._process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue  # the process ended between listing and reading
        return total

    def run(self):
        while not self.done.is_set():
            try:
                rss = self._rss()
            except psutil.NoSuchProcess:
                return
            with self._lock:
                self._peak = max(self._peak, rss)
                self.overall = max(self.overall, rss)
            time.sleep(self._every)

    def take_peak(self) -> int:
        with self._lock:
            peak, self._peak = self._peak, 0
        return peak


def run_pipeline(log: str, out: str, config: str | None = None) -> dict:
    """Runs the pipeline; returns {wall_s, stages: {name: {seconds, peak_rss}}, peak_rss}."""
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "offline_recall.pipeline.cli", "run", "--input", log]
        + ["--output", out]
        + (["--config", config] if config else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = RssSampler(process.pid)
    sampler.start()
    stages = {}
    for line in process.stdout:
        match = PROGRESS.match(line)
        if match:
            stages[match.group(1)] = {
                "seconds": float(match.group(2)),
                "peak_rss": sampler.take_peak(),
            }
    stderr = process.stderr.read()
    code = process.wait()
    sampler.done.set()
    if code not in (0, 3):
        raise SystemExit(f"the run on {log} failed ({code}):\n{stderr}")
    return {"wall_s": time.time() - started, "stages": stages, "peak_rss": sampler.overall}


def sgemm_seconds(out: str) -> dict:
    """Times a bare SGEMM of the published user x item vectors, in Recall's default blocks."""
    release = os.path.join(out, "published")
    users = read_vectors(os.path.join(release, C.USER_VECTORS_DIR))
    items = read_vectors(os.path.join(release, C.ITEM_VECTORS_DIR))
    recall = RecallConfig()
    started = time.perf_counter()
    sgemm(items, users, recall.batch_size, recall.block_items)
    return {
        "sgemm_s": time.perf_counter() - started,
        "users": len(users),
        "items": len(items),
        "dim": users.shape[1],
    }


def print_table(results: dict, events: int) -> None:
    """One size's per-stage table, with each stage's time per row against the smallest size."""
    base = min(results)
    base_rows = results[base]["shape"]["rows"]
    result = results[events]
    rows = result["shape"]["rows"]
    print(
        f"\n{events} events ({rows} rows): {result['wall_s']:.1f} s, "
        f"peak RSS {result['peak_rss'] / 2**30:.2f} GiB, {rows / result['wall_s']:.0f} rows/s"
    )
    if "sgemm" in result:
        g = result["sgemm"]
        print(
            f"bare SGEMM of {g['users']} users x {g['items']} items x {g['dim']}: "
            f"{g['sgemm_s']:.1f} s"
        )
    print(f"{'stage':<20} {'seconds':>8} {'peak_gib':>8} {'rows/s':>10} {'per_row_x':>9}")
    for name, stage in result["stages"].items():
        before = results[base]["stages"].get(name, {}).get("seconds")
        ratio = (stage["seconds"] / rows) / (before / base_rows) if before else float("nan")
        speed = rows / stage["seconds"] if stage["seconds"] else float("inf")
        print(
            f"{name:<20} {stage['seconds']:8.1f} {stage['peak_rss'] / 2**30:8.2f} "
            f"{speed:10.0f} {ratio:9.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--work", default="/tmp/offline-recall-scale")
    parser.add_argument(
        "--reuse",
        metavar="RESULTS_JSON",
        help="results.json of an earlier run on this machine: its sizes are not run again",
    )
    parser.add_argument(
        "--config",
        help="a run config for the sizes run now (the defaults otherwise); say so with the figures",
    )
    args = parser.parse_args()

    results = {}
    if args.reuse:
        with open(args.reuse, encoding="utf-8") as f:
            results = {int(k): v for k, v in json.load(f).items()}
        print(f"reusing {sorted(results)} from {args.reuse}", flush=True)
    for events in sorted(set(args.events) - set(results)):
        folder = os.path.join(args.work, str(events))
        os.makedirs(folder, exist_ok=True)
        log = os.path.join(folder, "clicks.csv")
        shape = write_log(log, events)
        print(f"log {events}: {json.dumps(shape)}", flush=True)
        run = run_pipeline(log, os.path.join(folder, "out"), args.config)
        results[events] = {"shape": shape, "config": args.config, **run}
        results[events]["sgemm"] = sgemm_seconds(os.path.join(folder, "out"))
        # Each size's table as soon as it is done: a long 5M run still leaves the others.
        print_table(results, events)
        with open(os.path.join(args.work, "results.json"), "w", encoding="utf-8") as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=1)
    results = dict(sorted(results.items()))
    base = min(results)
    per_row = {e: r["wall_s"] / r["shape"]["rows"] for e, r in results.items()}
    ratios = " ".join(
        f"per_event_ratio_{_label(e)}={per_row[e] / per_row[base]:.3f}"
        for e in results
        if e != base
    )
    walls = ",".join(f"{r['wall_s']:.1f}" for r in results.values())
    recall = " ".join(
        f"recall_vs_sgemm_{_label(e)}="
        f"{r['stages']['RecallServing']['seconds'] / r['sgemm']['sgemm_s']:.2f}"
        for e, r in results.items()
        if "sgemm" in r
    )
    print(
        f"scale: events={','.join(str(r['shape']['rows']) for r in results.values())} "
        f"wall_s={walls} {ratios} "
        f"peak_rss_gb={max(r['peak_rss'] for r in results.values()) / 2**30:.2f} {recall}"
    )


def _label(events: int) -> str:
    return f"{events // 1_000_000}M" if events % 1_000_000 == 0 else f"{events // 1000}k"


if __name__ == "__main__":
    main()
