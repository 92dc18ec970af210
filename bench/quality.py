"""Recall quality of the real pipeline against EASE under a leave-last-out protocol.

Protocol: each CSV row is one implicit click. Each user's events are sorted by (timestamp, input
order); users with fewer than 3 events are dropped; each user's last event is the target and the
pipeline (`offline-recall run`, through the CLI) gets every other event as its input file. The
published top-100 of every kept user is scored against the target over the whole catalog (items
in the input), visited items excluded by the pipeline; a missing list or an out-of-catalog target
is a miss. EASE (bench/ease.py) runs in the same process on the same input as the peer: its
lambda is picked on the validation target of that input, then it is refitted on the whole input.

    .venv/bin/python bench/quality.py --input ../shared/data/ml-100k/clicks.csv \
        [--configs configs.json] [--seeds 42 43 44] [--work /tmp/quality] [--no-ease]

`--target validation` scores the second-to-last event instead (the last is dropped), for tuning.
`--configs` is a JSON object {name: config overrides}; without it the product's defaults run.
Each config prints one line:

    quality: data=ml-100k config=defaults seeds=42,43,44 ndcg10=0.1023±0.0081 hr10=... hr50=...
        hr100=... ease_ndcg10=0.0950 ratio=1.077±0.060 vs_first=+0.0000±0.0000 wall_s=...

A figure is the mean over users of each user's mean over seeds; `±` is its standard error over
users. `ratio` is ndcg10 / ease_ndcg10 with the standard error of the paired per-user difference
divided by EASE's NDCG@10; `vs_first` is the paired per-user NDCG@10 difference from the first
config (0 for the first). `seed_sd` is the standard deviation of NDCG@10 across seeds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq

KS = (10, 50, 100)


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


def per_user_metrics(
    lists: dict[str, list[str]], targets: dict[str, str], catalog: set[str]
) -> dict[str, np.ndarray]:
    """{"hr@k" | "ndcg@k": [users] float64} in `targets` order; a missing list is a miss."""
    out = {f"{m}@{k}": np.zeros(len(targets)) for m in ("hr", "ndcg") for k in KS}
    for n, (user, target) in enumerate(targets.items()):
        ranked = lists.get(user, [])[: max(KS)]
        if target not in catalog or target not in ranked:
            continue
        rank = ranked.index(target) + 1
        for k in KS:
            if rank <= k:
                out[f"hr@{k}"][n] = 1.0
                out[f"ndcg@{k}"][n] = 1 / math.log2(rank + 1)
    return out


def rank_metrics(
    lists: dict[str, list[str]], targets: dict[str, str], catalog: set[str]
) -> dict[str, float]:
    """HR and NDCG @10/50/100 over all target users (a missing list is a miss), coverage@50."""
    out = {k: float(v.mean()) for k, v in per_user_metrics(lists, targets, catalog).items()}
    covered = {item for user in targets for item in lists.get(user, [])[:50]}
    out["coverage@50"] = len(covered) / len(catalog)
    return out


def read_recalls(recalls_dir: str) -> dict[str, list[str]]:
    """{user: item ids, best first} from a published recalls table."""
    table = pq.read_table(recalls_dir, columns=["user_id", "item_ids"])
    users, items = table.column("user_id").to_pylist(), table.column("item_ids").to_pylist()
    return dict(zip(users, items, strict=True))


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean) of a [users] array."""
    n = len(values)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(values.mean()), se


def ease_per_user(
    train_path: str, targets: dict[str, str], catalog: set[str], lambdas: list[float]
) -> tuple[dict[str, np.ndarray], float]:
    """EASE's per-user metrics on the target, lambda picked on the input's own last events.

    Kept beside the input (keyed by its digest, the targets and the lambdas): a second call
    on the same split reads them back instead of fitting again.
    """
    import ease

    digest = hashlib.sha256()
    with open(train_path, "rb") as f:
        digest.update(f.read())
    digest.update(json.dumps([sorted(targets.items()), lambdas]).encode())
    cache = f"{train_path}.ease-{digest.hexdigest()[:16]}.npz"
    if os.path.exists(cache):
        saved = np.load(cache)
        return {k: saved[k] for k in saved.files if k != "lambda"}, float(saved["lambda"])

    histories = ease.read_events(train_path)
    val_targets = {u: h[-1] for u, h in histories.items() if u in targets and len(h) >= 2}
    val_hist = {u: (h[:-1] if u in val_targets else h) for u, h in histories.items()}
    val_catalog = {i for h in val_hist.values() for i in h}
    scores = {
        lam: rank_metrics(lists, val_targets, val_catalog)["ndcg@10"]
        for lam, lists in ease.fit_and_rank(val_hist, lambdas).items()
    }
    best = max(scores, key=scores.get)
    lists = ease.fit_and_rank(histories, [best])[best]
    users = per_user_metrics(lists, targets, catalog)
    np.savez(cache, **users, **{"lambda": best})
    return users, best


def run_pipeline(train_path: str, out: str, config: dict, config_path: str) -> tuple[int, str]:
    """Runs `offline-recall run` on the input with `config`; returns (exit code, stderr tail)."""
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
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
    return result.returncode, result.stderr.strip()[-300:]


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
    parser.add_argument("--data", help="the data set's name in the lines (default: its folder)")
    parser.add_argument("--no-ease", action="store_true", help="skip the EASE peer")
    parser.add_argument(
        "--ease-lambdas", type=float, nargs="+", default=[20, 50, 100, 200, 500, 1000]
    )
    args = parser.parse_args()
    data = args.data or os.path.basename(os.path.dirname(os.path.abspath(args.input)))
    os.makedirs(args.work, exist_ok=True)
    train_path = os.path.join(args.work, f"input-{args.target}.csv")
    targets, catalog = split_protocol(args.input, train_path, args.target)
    configs = {"defaults": {}}
    if args.configs:
        with open(args.configs, encoding="utf-8") as f:
            configs = json.load(f)
    print(f"target {args.target}: users {len(targets)}, catalog {len(catalog)}", flush=True)

    ease_ndcg = None
    if not args.no_ease:
        started = time.time()
        ease_users, lam = ease_per_user(train_path, targets, catalog, args.ease_lambdas)
        ease_ndcg = ease_users["ndcg@10"]
        m = {k: mean_se(v) for k, v in ease_users.items()}
        print(
            f"ease: data={data} target={args.target} lambda={lam:g} "
            f"ndcg10={m['ndcg@10'][0]:.4f}±{m['ndcg@10'][1]:.4f} hr10={m['hr@10'][0]:.4f} "
            f"hr50={m['hr@50'][0]:.4f} hr100={m['hr@100'][0]:.4f} "
            f"wall_s={time.time() - started:.0f}",
            flush=True,
        )

    first_ndcg = None
    for name, overrides in configs.items():
        started = time.time()
        runs, seed_ndcg, details = [], [], []
        for seed in args.seeds:
            out = os.path.join(args.work, f"{args.target}-{name}-{seed}")
            config = json.loads(json.dumps(overrides))
            config.setdefault("trainer", {})["seed"] = seed
            # A run into an older run's folder would be judged against that run's release.
            if os.path.exists(out):
                shutil.rmtree(out)
            run_started = time.time()
            code, stderr = run_pipeline(train_path, out, config, f"{out}.json")
            if code not in (0, 3):
                print(f"quality: data={data} config={name} seed={seed} failed: {stderr}")
                continue
            with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
                trainer = json.load(f)["trainer"]
            # An unblessed run (3) leaves its recalls unpublished; score the run's own release
            # only when it was published.
            lists = read_recalls(os.path.join(out, "published", "recalls")) if code == 0 else {}
            users = per_user_metrics(lists, targets, catalog)
            # Per-user figures, in the targets' order, for paired comparisons across commands.
            np.savez(f"{out}.users.npz", **users)
            runs.append(users)
            seed_ndcg.append(users["ndcg@10"].mean())
            details.append(
                f"{seed}:{users['ndcg@10'].mean():.4f}/{trainer['train_seconds']:.0f}s"
                f"/{trainer.get('best_epochs', '?')}ep/{time.time() - run_started:.0f}s"
            )
        if not runs:
            continue
        mean_users = {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}
        m = {k: mean_se(v) for k, v in mean_users.items()}
        ndcg = mean_users["ndcg@10"]
        line = (
            f"quality: data={data} target={args.target} config={name} "
            f"seeds={','.join(str(s) for s in args.seeds[: len(runs)])} "
            f"ndcg10={m['ndcg@10'][0]:.4f}±{m['ndcg@10'][1]:.4f} "
            f"hr10={m['hr@10'][0]:.4f}±{m['hr@10'][1]:.4f} "
            f"hr50={m['hr@50'][0]:.4f}±{m['hr@50'][1]:.4f} "
            f"hr100={m['hr@100'][0]:.4f}±{m['hr@100'][1]:.4f}"
        )
        if ease_ndcg is not None:
            _, diff_se = mean_se(ndcg - ease_ndcg)
            base = ease_ndcg.mean()
            line += f" ease_ndcg10={base:.4f} ratio={ndcg.mean() / base:.3f}±{diff_se / base:.3f}"
        if first_ndcg is None:
            first_ndcg = ndcg
        diff, diff_se = mean_se(ndcg - first_ndcg)
        line += (
            f" vs_first={diff:+.4f}±{diff_se:.4f} seed_sd={np.std(seed_ndcg, ddof=1) if len(seed_ndcg) > 1 else 0:.4f}"
            f" wall_s={time.time() - started:.0f} peak_gib={peak_rss_gib():.1f}"
            f" runs={';'.join(details)}"
        )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
