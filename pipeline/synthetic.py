"""The embedded synthetic click log: seeded, with real structure for a recommender to learn.

Items belong to clusters and have power-law popularity. Each user has a taste (a Dirichlet mix
over a few clusters) and clicks in a sticky Markov walk: the next item usually comes from the
same cluster as the previous one, sometimes from another cluster of the user's taste. A few item
ids hold commas, quotes, spaces, non-ASCII and newlines, to exercise byte-exact id handling.

`generate_days` writes it as daily `YYYY-MM-DD/` folders (the default input): new items are
released each day (and are popular while new), and every user's taste drifts from day to day.
`generate_clicks` writes one file with a fixed catalog and fixed tastes.
"""

from __future__ import annotations

import csv
import datetime
import os
import shutil

import numpy as np

from offline_recall.core import dates
from offline_recall.core.config import SyntheticConfig

HEADER = ["user_id", "item_id", "timestamp", "session"]
NASTY_ITEM_IDS = ["i,comma", 'i "quoted"', "i space", "caf\u00e9", "\u5546\u54c1", "line\nbreak"]


def item_ids(num_items: int) -> list[str]:
    """Item ids in index order; the first few are the nasty ones (popular enough to matter)."""
    ids = [f"i{i:04d}" for i in range(num_items)]
    for k, nasty in enumerate(NASTY_ITEM_IDS[: max(0, num_items // 50)]):
        ids[k * 7 % num_items] = nasty
    return ids


def item_clusters(num_items: int, num_clusters: int, seed: int = 7) -> np.ndarray:
    """Returns each item's cluster, as `generate_clicks` assigns them for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_clusters, num_items)


def _events(rng, num_users, num_items, num_clusters, mean_events, clusters):
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    rng.shuffle(popularity)
    members = [np.flatnonzero(clusters == c) for c in range(num_clusters)]
    cluster_p = [popularity[m] / popularity[m].sum() if len(m) else None for m in members]
    nonempty = np.array([len(m) > 0 for m in members])
    for u in range(num_users):
        n = max(2, int(rng.lognormal(np.log(mean_events) - 0.5, 1.0)))
        taste_clusters = rng.choice(
            np.flatnonzero(nonempty), size=min(3, nonempty.sum()), replace=False
        )
        weights = rng.dirichlet(np.ones(len(taste_clusters)))
        current = rng.choice(taste_clusters, p=weights)
        seen: set[int] = set()
        items = []
        for _ in range(n):
            if rng.random() > 0.8:
                current = rng.choice(taste_clusters, p=weights)
            pool = members[current]
            item = int(rng.choice(pool, p=cluster_p[current]))
            if item in seen:  # one retry keeps repeats rare without forbidding them
                item = int(rng.choice(pool, p=cluster_p[current]))
            seen.add(item)
            items.append(item)
        yield u, items


def _rows(seed, num_users, num_items, num_clusters, mean_events_per_user, start_timestamp):
    rng = np.random.default_rng(seed)
    clusters = item_clusters(num_items, num_clusters, seed)
    ids = item_ids(num_items)
    span = 30 * dates.SECONDS_PER_DAY
    for u, items in _events(
        rng, num_users, num_items, num_clusters, mean_events_per_user, clusters
    ):
        t = start_timestamp + int(rng.integers(0, span // 2))
        gaps = rng.exponential(span / 2 / max(len(items), 1), len(items)).astype(np.int64)
        for k, item in enumerate(items):
            t += int(gaps[k])
            yield [f"u{u:05d}", ids[item], str(t), f"s{u}-{k // 10}"]


# The first event's earliest time (2023-11-14), so the log is in the past whatever the clock says.
START_TIMESTAMP = 1_700_000_000


def generate_clicks(
    path: str, config: SyntheticConfig, start_timestamp: int = START_TIMESTAMP
) -> dict:
    """Writes the synthetic log as an RFC 4180 CSV at `path`; returns rows, users and items.

    Args:
        path: the CSV file to write.
        config: the `synthetic` section: seed and shape.
        start_timestamp: epoch seconds the users' first events start from.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rows = users = 0
    seen_items = set()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        last_user = None
        for row in _rows(
            config.seed,
            config.num_users,
            config.num_items,
            config.num_clusters,
            config.mean_events_per_user,
            start_timestamp,
        ):
            writer.writerow(row)
            rows += 1
            seen_items.add(row[1])
            if row[0] != last_user:
                users, last_user = users + 1, row[0]
    return {"rows": rows, "users": users, "items": len(seen_items)}


# The newest day of the default synthetic week when no run date is given.
DEFAULT_LAST_DAY = datetime.date(2023, 11, 21)


def release_days(config: SyntheticConfig) -> np.ndarray:
    """The day (0 .. days-1) each item is released: most items exist from day 0, and the last
    `new_items_per_day` x (days - 1) item indices arrive `new_items_per_day` a day."""
    days = np.zeros(config.num_items, dtype=np.int64)
    new = min(config.new_items_per_day * (config.days - 1), config.num_items - 1)
    if new > 0:
        first_new = config.num_items - new
        days[first_new:] = 1 + (np.arange(new) // config.new_items_per_day)
    return days


def _drifting_events(config: SyntheticConfig, rng):
    """Yields (user, day, seconds into the day, item) over `config.days` days, user by user."""
    clusters = item_clusters(config.num_items, config.num_clusters, config.seed)
    released = release_days(config)
    popularity = 1.0 / np.arange(1, config.num_items + 1) ** 0.9
    rng.shuffle(popularity)
    # A new item is as popular as the catalog's head while it is new.
    novelty = np.where(released > 0, popularity.max(), popularity)
    members = [np.flatnonzero(clusters == c) for c in range(config.num_clusters)]
    nonempty = np.flatnonzero([len(m) > 0 for m in members])
    for u in range(config.num_users):
        n = max(2, int(rng.lognormal(np.log(config.mean_events_per_user) - 0.5, 1.0)))
        taste = rng.choice(nonempty, size=min(3, len(nonempty)), replace=False)
        weights = rng.dirichlet(np.ones(len(taste)))
        # Event times spread over the days, in order.
        times = np.sort(rng.uniform(0, config.days * dates.SECONDS_PER_DAY, n)).astype(np.int64)
        day_of_weights = 0
        current = rng.choice(taste, p=weights)
        for t in times:
            day = int(t // dates.SECONDS_PER_DAY)
            while day_of_weights < day:
                # A day passes: the taste drifts towards a fresh random mix.
                fresh = rng.dirichlet(np.ones(len(taste)))
                weights = (1 - config.drift) * weights + config.drift * fresh
                day_of_weights += 1
            if rng.random() > 0.8:
                current = rng.choice(taste, p=weights)
            pool = members[current][released[members[current]] <= day]
            if len(pool) == 0:
                continue
            p = np.where(released[pool] == day, novelty[pool], popularity[pool])
            item = int(rng.choice(pool, p=p / p.sum()))
            yield u, day, int(t % dates.SECONDS_PER_DAY), item


def generate_days(
    folder: str, config: SyntheticConfig, last_day: datetime.date = DEFAULT_LAST_DAY
) -> dict:
    """Writes the synthetic log as `config.days` daily folders ending at `last_day`.

    Each `folder/YYYY-MM-DD/clicks.csv` holds that day's events (RFC 4180 CSV, epoch-second
    timestamps inside the day). The folder is replaced whole, so the same config and last day
    always give the same files.

    Returns:
        {rows, users, items, days: [first, last] as YYYY-MM-DD, new_items}.
    """
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    first_day = last_day - datetime.timedelta(days=config.days - 1)
    epoch_of_first = int(
        datetime.datetime.combine(first_day, datetime.time(), datetime.UTC).timestamp()
    )
    ids = item_ids(config.num_items)
    per_day: list[list[list[str]]] = [[] for _ in range(config.days)]
    users, items, sessions = set(), set(), {}
    rng = np.random.default_rng(config.seed)
    for u, day, seconds, item in _drifting_events(config, rng):
        session = sessions.get((u, day), len(sessions))
        sessions[(u, day)] = session
        timestamp = epoch_of_first + day * dates.SECONDS_PER_DAY + seconds
        per_day[day].append([f"u{u:05d}", ids[item], str(timestamp), f"s{u}-{day}"])
        users.add(u)
        items.add(item)
    for day, rows in enumerate(per_day):
        name = (first_day + datetime.timedelta(days=day)).isoformat()
        os.makedirs(os.path.join(folder, name))
        with open(os.path.join(folder, name, "clicks.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows(rows)
    return {
        "rows": sum(len(r) for r in per_day),
        "users": len(users),
        "items": len(items),
        "days": [first_day.isoformat(), last_day.isoformat()],
        "new_items": int((release_days(config) > 0).sum()),
    }
