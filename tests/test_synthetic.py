"""The embedded synthetic log: deterministic, RFC 4180 round trip, and real structure."""

import collections
import csv

import numpy as np

from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic

SMALL = {"num_users": 300, "num_items": 200, "num_clusters": 10, "mean_events_per_user": 15}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_deterministic_per_seed(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    synthetic.generate_clicks(str(a), SyntheticConfig(seed=1, **SMALL))
    synthetic.generate_clicks(str(b), SyntheticConfig(seed=1, **SMALL))
    synthetic.generate_clicks(str(c), SyntheticConfig(seed=2, **SMALL))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_shape_nasty_ids_and_order(tmp_path):
    path = tmp_path / "clicks.csv"
    facts = synthetic.generate_clicks(str(path), SyntheticConfig(seed=1, **SMALL))
    rows = _rows(path)
    assert facts["rows"] == len(rows) and facts["users"] == 300
    assert 10 * 300 < len(rows) < 25 * 300
    items = {r["item_id"] for r in rows}
    assert "line\nbreak" in items or 'i "quoted"' in items or "i,comma" in items
    last = {}
    for r in rows:
        assert int(r["timestamp"]) >= last.get(r["user_id"], 0)
        last[r["user_id"]] = int(r["timestamp"])


def test_structure_is_learnable(tmp_path):
    path = tmp_path / "clicks.csv"
    synthetic.generate_clicks(str(path), SyntheticConfig(seed=1, **SMALL))
    rows = _rows(path)
    ids = synthetic.item_ids(SMALL["num_items"])
    cluster = dict(
        zip(ids, synthetic.item_clusters(SMALL["num_items"], SMALL["num_clusters"], 1), strict=True)
    )
    same = total = 0
    for prev, cur in zip(rows, rows[1:], strict=False):
        if prev["user_id"] == cur["user_id"]:
            total += 1
            same += cluster[prev["item_id"]] == cluster[cur["item_id"]]
    assert same / total > 3 / SMALL["num_clusters"]  # far above the 1/10 chance rate
    counts = np.array(sorted(collections.Counter(r["item_id"] for r in rows).values())[::-1])
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.3
