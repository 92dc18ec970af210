"""The product's exact recall (visited items excluded) against a plain faiss search without it.

    .venv/bin/python bench/recall_bench.py [--items 100000] [--dim 64] [--users 20000]
        [--top-n 100] [--repeats 3] [--norm-skew 0.5] [--batch-size B] [--block-items I]
        [--release DIR/releases/RUN_ID]

Seeded data: item vectors with norms skewed by a Zipf popularity (item i of popularity rank i
gets norm proportional to (i + 1) ** -norm_skew, so popular items, which users have often
visited, are often the top scorers; --norm-skew 0 gives equal norms), one bias-like constant
dimension as the product's vectors have, Gaussian user vectors, 5-200 visited items per user
drawn by popularity plus 1% heavy users with 5,000-50,000. With `--release`, the item vectors
and a seeded sample of `--users` user vectors are a published release's instead (a trained
model's norms, which decide how much the early exit skips; `--items` and `--dim` are then the
release's), and the visited items are drawn as above over its catalog, which is in popularity
order. In one process, interleaved, it times

- faiss: `faiss.IndexFlatIP.search(users, top_n)`, no exclusion (the baseline);
- product: `exact.top_n_excluding` in the product's batches, visited items excluded;
- sgemm: the bare users x items product in the product's blocks (what no exact search beats
  without skipping work),

and prints the median of each. It checks the product against a numpy brute force on a sample
of users (heavy ones included) and reports peak RSS. Last line:
`users=U items=I dim=D top_n=N product_s=.. faiss_no_exclusion_s=.. vs_faiss_no_exclusion=R
exact=1.000 sgemm_limit=L`, R = faiss time / product time, L = faiss time / sgemm time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

# faiss's OpenMP threads spin after each heap update by default, taking the cores from the
# next SGEMM's BLAS threads (measured when the product itself used faiss's heaps between numpy
# SGEMMs: 2.4 s passive against 3.6 s for 10k users x 100k items). faiss's own search alternates
# the two the same way, so the baseline gets passive waiting unless the caller set a policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from offline_recall.components.recall import exact  # noqa: E402
from offline_recall.core import contracts as C  # noqa: E402
from offline_recall.core import storage
from offline_recall.core.config import RecallConfig  # noqa: E402


def make_data(items: int, dim: int, users: int, norm_skew: float, seed: int = 0):
    """(item vectors [items, dim], user vectors [users, dim], visited per user)."""
    rng = np.random.default_rng(seed)
    rank = np.arange(1, items + 1, dtype=np.float64)
    item_vectors = rng.standard_normal((items, dim)).astype(np.float32)
    item_vectors /= np.linalg.norm(item_vectors, axis=1, keepdims=True)
    item_vectors *= (rank**-norm_skew * 4.0).astype(np.float32)[:, None]
    item_vectors[:, -1] = (-np.log(rank) / 4.0).astype(np.float32)  # a popularity bias
    user_vectors = rng.standard_normal((users, dim)).astype(np.float32)
    user_vectors[:, -1] = 1.0
    lengths = rng.integers(5, 201, users)
    heavy = rng.choice(users, max(1, users // 100), replace=False)
    lengths[heavy] = rng.integers(5_000, 50_001, heavy.size)
    lengths = np.minimum(lengths, items)
    popularity = 1.0 / rank
    cdf = np.cumsum(popularity / popularity.sum())
    draws = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), items - 1)
    visited = np.split(draws.astype(np.int64), np.cumsum(lengths)[:-1])
    return item_vectors, user_vectors, visited, heavy


def read_vectors(table_dir: str) -> np.ndarray:
    """[rows, dim] float32 from a release table's vector column (all its Parquet files)."""
    parts = []
    for path in storage.parquet_files(table_dir):
        column = storage.read_parquet(path, [C.VECTOR_COLUMN]).column(0).combine_chunks()
        parts.append(np.asarray(column.flatten(), np.float32).reshape(len(column), -1))
    if not parts:
        raise SystemExit(f"--release: no Parquet files in {table_dir}")
    return np.concatenate(parts)


def release_data(release: str, users: int, seed: int = 0):
    """`make_data`'s tuple with a release's item vectors and a sample of its user vectors."""
    item_vectors = read_vectors(os.path.join(release, C.ITEM_VECTORS_DIR))
    all_users = read_vectors(os.path.join(release, C.USER_VECTORS_DIR))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(all_users), min(users, len(all_users)), replace=False))
    # The synthetic draw gives the visited items; only the user vectors are replaced.
    _, _, visited, heavy = make_data(len(item_vectors), 2, len(pick), 0.0, seed)
    return item_vectors, np.ascontiguousarray(all_users[pick]), visited, heavy


def product(item_vectors, user_vectors, visited, top_n, batch_size, block_items):
    catalog = exact.build_catalog(item_vectors, block_items)
    parts = [
        exact.top_n_excluding(
            catalog, user_vectors[i : i + batch_size], visited[i : i + batch_size], top_n
        )
        for i in range(0, len(user_vectors), batch_size)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def plain_faiss(item_vectors, user_vectors, top_n):
    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(item_vectors)
    return index.search(user_vectors, top_n)


def sgemm(item_vectors, user_vectors, batch_size, block_items):
    out = np.empty(batch_size * block_items, np.float32)
    for i in range(0, len(user_vectors), batch_size):
        users = user_vectors[i : i + batch_size]
        for j in range(0, len(item_vectors), block_items):
            items = item_vectors[j : j + block_items]
            np.matmul(users, items.T, out=out[: len(users) * len(items)].reshape(len(users), -1))


def exactness(item_vectors, user_vectors, visited, heavy, index, top_n, sample: int = 64) -> float:
    """Share of sampled users (heavy ones included) whose list equals numpy's brute force."""
    rng = np.random.default_rng(1)
    users = np.unique(np.concatenate([rng.choice(len(user_vectors), sample), heavy[:8]]))
    good = 0
    for user in users:
        scores = item_vectors.astype(np.float64) @ user_vectors[user].astype(np.float64)
        scores[visited[user]] = -np.inf
        want = np.lexsort((np.arange(len(scores)), -scores))[:top_n]
        want = want[np.isfinite(scores[want])]
        got = index[user][index[user] >= 0]
        # float32 SGEMM against float64: equal lists, or equal up to rounding-close scores.
        good += int(
            np.array_equal(got, want)
            or (
                len(got) == len(want)
                and np.allclose(np.sort(scores[got]), np.sort(scores[want]), rtol=1e-5)
            )
        )
    return good / len(users)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--norm-skew", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=RecallConfig.batch_size)
    parser.add_argument("--block-items", type=int, default=RecallConfig.block_items)
    parser.add_argument(
        "--release", help="a published release: its item vectors and a sample of its users'"
    )
    args = parser.parse_args(argv)

    if args.release:
        item_vectors, user_vectors, visited, heavy = release_data(args.release, args.users)
        args.items, args.dim = item_vectors.shape
        args.users = len(user_vectors)
        source = f"vectors of {args.release}"
    else:
        item_vectors, user_vectors, visited, heavy = make_data(
            args.items, args.dim, args.users, args.norm_skew
        )
        source = f"norm skew {args.norm_skew}"
    print(
        f"data: {args.items} items x {args.dim}, {args.users} users, "
        f"{sum(len(v) for v in visited)} visited ({heavy.size} heavy users), {source}",
        flush=True,
    )
    times = {"product": [], "faiss": [], "sgemm": []}
    result = None
    for repeat in range(args.repeats):
        for name in ("faiss", "product", "sgemm"):  # interleaved: the machine is noisy
            start = time.perf_counter()
            if name == "faiss":
                plain_faiss(item_vectors, user_vectors, args.top_n)
            elif name == "product":
                result = product(
                    item_vectors,
                    user_vectors,
                    visited,
                    args.top_n,
                    args.batch_size,
                    args.block_items,
                )
            else:
                sgemm(item_vectors, user_vectors, args.batch_size, args.block_items)
            times[name].append(time.perf_counter() - start)
        print(
            f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
            flush=True,
        )
    median = {k: statistics.median(v) for k, v in times.items()}
    exact_share = exactness(item_vectors, user_vectors, visited, heavy, result[0], args.top_n)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    catalog_mb = item_vectors.nbytes / 2**20
    buffer_mb = args.batch_size * args.block_items * 4 / 2**20
    print(
        f"peak RSS {peak_gb:.2f} GiB (item vectors {catalog_mb:.0f} MiB, score buffer "
        f"{buffer_mb:.0f} MiB per batch)"
    )
    print(
        f"users={args.users} items={args.items} dim={args.dim} top_n={args.top_n} "
        f"product_s={median['product']:.2f} faiss_no_exclusion_s={median['faiss']:.2f} "
        f"vs_faiss_no_exclusion={median['faiss'] / median['product']:.2f} "
        f"exact={exact_share:.3f} sgemm_limit={median['faiss'] / median['sgemm']:.2f}"
    )
    return 0 if exact_share == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
