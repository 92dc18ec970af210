"""Writes a synthetic click log of a chosen shape, for scale checks (time, memory, quality).

The default shape mimics the larger real log the defaults are also judged on: about 250k events,
31k users and 23k items, much sparser than MovieLens (a median user has a handful of clicks).

    .venv/bin/python bench/make_log.py --output /tmp/large/clicks.csv \
        [--users 31000 --items 23000 --mean-events 8 --clusters 300 --seed 11]
"""

from __future__ import annotations

import argparse
import json
import sys

from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--users", type=int, default=31000)
    parser.add_argument("--items", type=int, default=23000)
    parser.add_argument("--mean-events", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    shape = synthetic.generate_clicks(
        args.output,
        SyntheticConfig(
            seed=args.seed,
            num_users=args.users,
            num_items=args.items,
            num_clusters=args.clusters,
            mean_events_per_user=args.mean_events,
        ),
    )
    print(json.dumps(shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
