"""Recall quality of the real pipeline under a leave-last-out protocol; prints one row per config.

Protocol: each CSV row is one implicit click. Each user's events are sorted by (timestamp, input
order); users with fewer than 3 events are dropped; each user's last event is the target and the
pipeline (`offline-recall run`, through the CLI) gets every other event as its input file. The
published top-100 of every kept user is scored against the target over the whole catalog (items
in the input), visited items excluded by the pipeline; a missing list or an out-of-catalog target
is a miss.

    .venv/bin/python bench/quality.py --input ../shared/data/ml-100k/clicks.csv \
        [--configs configs.json] [--seeds 42 43 44] [--work /tmp/quality]

`--target validation` scores the second-to-last event instead (the last is dropped), for tuning.
`--configs` is a JSON object {name: config overrides}; without it the product's defaults run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import time

import pyarrow.parquet as pq


def split_protocol(
    input_path: str, train_path: str, target: str = "test"
) -> tuple[dict[str, str], set[str]]:
    """Writes the pipeline input; returns ({user: target item}, catalog).

    `target="test"` scores each kept user's last event; `"validation"` drops the last event
    altogether and scores the second-to-last, so options can be chosen without touching the
    test target.
    """
    drop = {"test": 1, "validation": 2}[target]
    with open(input_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    u, i, t = (header.index(c) for c in ("user_id", "item_id", "timestamp"))
    by_user: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        by_user.setdefault(row[u], []).append(n)
    targets, keep = {}, []
    for user, idx in by_user.items():
        if len(idx) < 3:
            continue
        idx.sort(key=lambda n: (float(rows[n][t]), n))
        targets[user] = rows[idx[-drop]][i]
        keep.extend(idx[:-drop])
    keep.sort()
    with open(train_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows[n] for n in keep)
    return targets, {rows[n][i] for n in keep}


def rank_metrics(
    lists: dict[str, list[str]], targets: dict[str, str], catalog: set[str]
) -> dict[str, float]:
    """HR and NDCG @10/50/100 over all target users (a missing list is a miss), coverage@50."""
    out = {f"{m}@{k}": 0.0 for m in ("hr", "ndcg") for k in (10, 50, 100)}
    covered = set()
    for user, target in targets.items():
        ranked = lists.get(user, [])
        covered.update(ranked[:50])
        if target not in catalog or target not in ranked[:100]:
            continue
        rank = ranked.index(target) + 1
        for k in (10, 50, 100):
            if rank <= k:
                out[f"hr@{k}"] += 1
                out[f"ndcg@{k}"] += 1 / math.log2(rank + 1)
    n = len(targets)
    out = {k: v / n for k, v in out.items()}
    out["coverage@50"] = len(covered) / len(catalog)
    return out


def score(recalls_dir: str, targets: dict[str, str], catalog: set[str]) -> dict[str, float]:
    """Scores the published recalls table (user_id, item_ids) under the protocol."""
    lists = {r["user_id"]: r["item_ids"] for r in pq.read_table(recalls_dir).to_pylist()}
    return rank_metrics(lists, targets, catalog)


def peak_rss_gib() -> float:
    """The largest resident set of any finished pipeline run so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--configs", help="JSON file {name: overrides}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--work", default="/tmp/offline-recall-quality")
    parser.add_argument("--target", choices=("test", "validation"), default="test")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    train_path = os.path.join(args.work, "input.csv")
    targets, catalog = split_protocol(args.input, train_path, args.target)
    configs = {"defaults": {}}
    if args.configs:
        with open(args.configs, encoding="utf-8") as f:
            configs = json.load(f)
    print(f"target {args.target}: users {len(targets)}, catalog {len(catalog)}")
    print(
        "| config | seed | HR@10 | HR@50 | HR@100 | NDCG@10 | NDCG@50 | NDCG@100 | cov@50 "
        "| train s | epochs | run s | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, overrides in configs.items():
        for seed in args.seeds:
            out = os.path.join(args.work, f"{name}-{seed}")
            config = json.loads(json.dumps(overrides))
            config.setdefault("trainer", {})["seed"] = seed
            config_path = os.path.join(args.work, f"{name}-{seed}.json")
            with open(config_path, "w", encoding="utf-8") as f:
                json.dump(config, f)
            started = time.time()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "offline_recall.pipeline.cli",
                    "run",
                    "--input",
                    train_path,
                    "--output",
                    out,
                    "--config",
                    config_path,
                ],
                capture_output=True,
                text=True,
            )
            run_s = time.time() - started
            if result.returncode not in (0, 3):
                print(f"| {name} | {seed} | failed: {result.stderr.strip()[-300:]} |")
                continue
            with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
                summary = json.load(f)
            recalls = os.path.join(out, "published", "recalls")
            m = score(recalls, targets, catalog)
            print(
                f"| {name} | {seed} | {m['hr@10']:.4f} | {m['hr@50']:.4f} | {m['hr@100']:.4f} "
                f"| {m['ndcg@10']:.4f} | {m['ndcg@50']:.4f} | {m['ndcg@100']:.4f} "
                f"| {m['coverage@50']:.4f} | {summary['trainer']['train_seconds']:.0f} "
                f"| {summary['trainer'].get('best_epochs', '')} | {run_s:.0f} "
                f"| {peak_rss_gib():.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
