"""EASE (Steck, 2019) under the same leave-last-out protocol as bench/quality.py: the baseline.

The regularisation lambda is tuned on a validation target (each kept user's last *input* event,
i.e. the second-to-last overall), refitting on the input minus those events; the chosen lambda is
then fitted on the whole input and scored on the final target. Visited items are excluded.

    .venv/bin/python bench/ease.py --input ../shared/data/ml-100k/clicks.csv \
        [--lambdas 50 100 200 500 1000 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402


def read_events(path: str) -> dict[str, list[str]]:
    """{user: items ordered by (timestamp, input order)}."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        u, i, t = (header.index(c) for c in ("user_id", "item_id", "timestamp"))
        rows = [(r[u], r[i], float(r[t]), n) for n, r in enumerate(reader)]
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    for user, item, ts, n in rows:
        by_user.setdefault(user, []).append((ts, n, item))
    return {user: [item for _, _, item in sorted(ev)] for user, ev in by_user.items()}


def fit_and_rank(
    histories: dict[str, list[str]], lambdas: list[float], top_n: int = 100
) -> dict[float, dict[str, list[str]]]:
    """Fits EASE for each lambda (one Gram matrix) and returns {lambda: {user: top-n items}}.

    The user-item matrix stays sparse, and catalogs above 5,000 items are solved in float32 with
    the regulariser added in place, so a 22k-item catalog needs about three 2 GB matrices
    instead of a dense float64 pipeline that does not fit in memory.
    """
    from scipy import linalg, sparse

    items = sorted({i for h in histories.values() for i in h})
    index = {item: n for n, item in enumerate(items)}
    users = list(histories)
    rows, cols = [], []
    for r, user in enumerate(users):
        for j in {index[i] for i in histories[user]}:
            rows.append(r)
            cols.append(j)
    x = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(items))
    )
    dtype = np.float64 if len(items) <= 5000 else np.float32
    gram = (x.T @ x).toarray().astype(dtype)
    diagonal = np.diag_indices(len(items))
    out = {}
    for lam in lambdas:
        regularised = gram.copy()
        regularised[diagonal] += lam
        p = linalg.inv(regularised, overwrite_a=True, check_finite=False)
        del regularised
        b = (-p / np.diag(p)).astype(np.float32)
        del p
        np.fill_diagonal(b, 0.0)
        ranked = {}
        for start in range(0, len(users), 2048):
            block = x[start : start + 2048]
            scores = np.asarray(block @ b)
            scores[block.toarray() > 0] = -np.inf
            top = np.argpartition(-scores, min(top_n, scores.shape[1] - 1), axis=1)[:, :top_n]
            order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
            top = np.take_along_axis(top, order, axis=1)
            for r, row in enumerate(top):
                ranked[users[start + r]] = [items[j] for j in row]
        out[lam] = ranked
    return out


def metrics(lists: dict[str, list[str]], targets: dict[str, str], catalog: set[str]) -> dict:
    return quality.rank_metrics(lists, targets, catalog)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument(
        "--lambdas", type=float, nargs="+", default=[20, 50, 100, 200, 500, 1000, 2000]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train_path = os.path.join(tmp, "input.csv")
        targets, catalog = quality.split_protocol(args.input, train_path)
        histories = read_events(train_path)
    # Validation: hold out each kept user's last input event.
    val_targets = {u: h[-1] for u, h in histories.items() if u in targets and len(h) >= 2}
    val_hist = {u: (h[:-1] if u in val_targets else h) for u, h in histories.items()}
    val_catalog = {i for h in val_hist.values() for i in h}
    started = time.time()
    val = {
        lam: metrics(lists, val_targets, val_catalog)
        for lam, lists in fit_and_rank(val_hist, args.lambdas).items()
    }
    for lam, m in val.items():
        print(f"validation lambda={lam:g}: HR@50 {m['hr@50']:.4f} NDCG@10 {m['ndcg@10']:.4f}")
    best = max(val, key=lambda lam: val[lam]["hr@50"])
    lists = fit_and_rank(histories, [best])[best]
    m = metrics(lists, targets, catalog)
    print(f"users {len(targets)}, catalog {len(catalog)}, lambda {best:g}")
    print("| model | HR@10 | HR@50 | HR@100 | NDCG@10 | NDCG@50 | NDCG@100 | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| EASE | {m['hr@10']:.4f} | {m['hr@50']:.4f} | {m['hr@100']:.4f} | {m['ndcg@10']:.4f} "
        f"| {m['ndcg@50']:.4f} | {m['ndcg@100']:.4f} | {time.time() - started:.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
