"""Cold against warm start over consecutive days: training steps and wall time to the same HR@50.

Generates the synthetic log as daily folders (new items every day, drifting tastes), runs day 1
once per chain, then for each later day runs `offline-recall run --date D` twice, interleaved:
in the cold chain (`trainer.warm_start: false`) and in the warm chain (default: it starts from
the previous day's release). Both chains see the same data and config otherwise.

For each day it prints the holdout HR@50 each reached (best evaluation), the steps and training
seconds each needed to first reach the target (the cold run's best HR@50, to within
--tolerance), the steps and seconds each trained in all (early stopping decides), and the wall
time of the whole run.

    .venv/bin/python bench/warm_start.py [--days 5] [--users 1500] [--items 800] [--work DIR]

Last line: `warm_start: days=N cold_steps_to_target=.. warm_steps_to_target=.. step_ratio=..
cold_train_s=.. warm_train_s=.. cold_hr50=.. warm_hr50=.. cold_wall_s=.. warm_wall_s=..`
(sums over the days, HR@50 as means; step_ratio = warm / cold steps to the target).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic

FIRST_DAY = datetime.date(2024, 5, 1)


def run_day(logs: str, out: str, day: str, config_path: str) -> dict:
    """Runs one day through the CLI; returns its run summary and wall seconds."""
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "offline_recall.pipeline.cli", "run"]
        + ["--input", logs, "--output", out, "--date", day, "--config", config_path],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    if result.returncode not in (0, 3):
        raise SystemExit(f"run {day} into {out} failed ({result.returncode}):\n{result.stderr}")
    with open(os.path.join(out, "run_summary.json")) as f:
        summary = json.load(f)
    # Kept per day: the next run overwrites run_summary.json.
    with open(os.path.join(out, f"run_summary-{day}.json"), "w") as f:
        json.dump(summary, f)
    return {"summary": summary, "wall_s": wall, "exit": result.returncode}


def steps_per_epoch(trainer: dict) -> float:
    # The summary's global_step is the exported (best) checkpoint's.
    return trainer["global_step"] / max(trainer["best_epochs"], 1)


def total_steps(trainer: dict) -> int:
    return round(trainer["epochs_trained"] * steps_per_epoch(trainer))


def to_target(trainer: dict, target: float) -> tuple[int | None, float | None]:
    """(steps, training seconds) at the first evaluation whose HR@50 reaches `target`."""
    per_epoch = steps_per_epoch(trainer)
    for point in trainer["eval_history"]:
        if point["hit_rate_at_50"] >= target:
            return round(point["epochs"] * per_epoch), point["seconds"]
    return None, None


def best_hr(trainer: dict) -> float:
    return max((p["hit_rate_at_50"] for p in trainer["eval_history"]), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=5, help="days compared (after day 1)")
    parser.add_argument("--users", type=int, default=SyntheticConfig.num_users)
    parser.add_argument("--items", type=int, default=SyntheticConfig.num_items)
    parser.add_argument("--tolerance", type=float, default=0.005, help="HR@50 short of target")
    parser.add_argument("--work", default="/tmp/offline-recall-warm-start")
    parser.add_argument(
        "--window-days", type=int, default=None, help="ingest.window_days of both chains"
    )
    args = parser.parse_args()

    os.makedirs(args.work, exist_ok=True)
    shape = SyntheticConfig(num_users=args.users, num_items=args.items, days=args.days + 1)
    logs = os.path.join(args.work, "logs")
    last = FIRST_DAY + datetime.timedelta(days=args.days)
    facts = synthetic.generate_days(logs, shape, last)
    print(f"log: {facts}", flush=True)
    configs = {}
    for chain, warm in (("cold", False), ("warm", True)):
        configs[chain] = os.path.join(args.work, f"{chain}.json")
        with open(configs[chain], "w") as f:
            overrides = {"trainer": {"warm_start": warm}}
            if args.window_days:
                overrides["ingest"] = {"window_days": args.window_days}
            json.dump(overrides, f)
    outs = {chain: os.path.join(args.work, chain) for chain in configs}
    days = [(FIRST_DAY + datetime.timedelta(days=d)).isoformat() for d in range(args.days + 1)]
    # Day 1 trains cold in both chains: nothing came before.
    for chain in configs:
        run_day(logs, outs[chain], days[0], configs[chain])

    header = (
        f"{'day':<11} {'chain':<5} {'hr@50':>6} {'target':>6} {'steps→t':>8} {'s→t':>6} "
        f"{'steps':>6} {'train_s':>7} {'wall_s':>7} {'carried':>7} {'new':>4}"
    )
    print(header)
    totals = {c: {"to_t": 0, "to_s": 0.0, "train_s": 0.0, "wall": 0.0, "hr": 0.0} for c in configs}
    missed = {c: 0 for c in configs}
    for day in days[1:]:
        runs = {chain: run_day(logs, outs[chain], day, configs[chain]) for chain in configs}
        cold_trainer = runs["cold"]["summary"]["trainer"]
        target = best_hr(cold_trainer) - args.tolerance
        for chain, run in runs.items():
            trainer = run["summary"]["trainer"]
            steps, seconds = to_target(trainer, target)
            warm = trainer.get("warm_start", {})
            if steps is None:
                missed[chain] += 1
                steps, seconds = total_steps(trainer), trainer["train_seconds"]
            hr = run["summary"]["evaluate"]["model"]["hr@50"]
            totals[chain]["to_t"] += steps
            totals[chain]["to_s"] += seconds
            totals[chain]["train_s"] += trainer["train_seconds"]
            totals[chain]["wall"] += run["wall_s"]
            totals[chain]["hr"] += hr
            print(
                f"{day:<11} {chain:<5} {hr:6.4f} {target:6.4f} {steps:8d} {seconds:6.1f} "
                f"{total_steps(trainer):6d} {trainer['train_seconds']:7.1f} "
                f"{run['wall_s']:7.1f} {warm.get('items_carried', '-')!s:>7} "
                f"{warm.get('items_new', '-')!s:>4}",
                flush=True,
            )
    n = args.days
    cold, warm = totals["cold"], totals["warm"]
    if missed["warm"] or missed["cold"]:
        print(f"(never reached the target: cold {missed['cold']} day(s), warm {missed['warm']})")
    print(
        f"warm_start: days={n} cold_steps_to_target={cold['to_t']} "
        f"warm_steps_to_target={warm['to_t']} step_ratio={warm['to_t'] / max(cold['to_t'], 1):.3f} "
        f"cold_train_s={cold['train_s']:.1f} warm_train_s={warm['train_s']:.1f} "
        f"cold_hr50={cold['hr'] / n:.4f} warm_hr50={warm['hr'] / n:.4f} "
        f"cold_wall_s={cold['wall']:.1f} warm_wall_s={warm['wall']:.1f}"
    )


if __name__ == "__main__":
    main()
