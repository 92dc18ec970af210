"""Exact top-N inner-product recall with each user's visited items excluded, in blocks.

Why not one `faiss.IndexFlatIP.search`: an index search cannot exclude a different set of items
per user, so it must go deep enough to survive the exclusion (top_n + visited items), and one
heavy user (a bot with 50k visited items) forces a near-full-catalog selection. Here the
search is faiss's exact algorithm (`knn_inner_product`: a BLAS SGEMM of users x a block of
items, then per-user top-N heaps), opened up. Three things differ:

- Exclusion: each visited item's score in the block is set to -inf before the heaps see it, one
  write per visited item, so a heavy user costs what their history costs and nothing more.
- Early exit: `u . i <= |u| |i|` (with the bias column bounded on its own, see `Catalog`). Each
  block knows the longest item vector from it to the end of the catalog; a user whose N-th best
  score already beats what those items can reach can gain nothing more, so later blocks are
  multiplied only for the users still open. The catalog is in item
  vocabulary order, most clicked first, and a softmax model gives popular items long vectors,
  so most users close after the first blocks.
- Selection: the previous selection here (faiss's `float_minheap_array_t`) offered every score
  to its heap, a compare and a branch each (about 3 cycles a score; a third of the search on
  trained models, where nothing closes early). `_offer_rows` first takes the maximum of each
  group of 16 scores, vectorised across groups, and looks into a group only when that maximum
  can enter the heap, which after the first block is rare (about N / b of the b-th block's
  scores). It is compiled by numba and runs on all cores, each thread on its own users.

Ties go to the lower catalog index: each heap keeps the best N under one total order (score
descending, then index ascending), whatever order the scores are offered in, so the result is
one exact function of the scores: the same for any block size, batch split, thread count or
item sharding (`merge_top_n`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# Scores from the SGEMM may exceed |u| |i| by rounding; the bound gets this much slack so that no
# user is closed early.
_BOUND_SLACK = 1e-3
# Scores summarised by one maximum in `_offer_rows`. Fewer means more maxima to compare, more
# means more scores to look at each time one can enter.
_LANES = 16
# Fewer users than this per thread are not worth a thread's wake-up.
_MIN_ROWS_PER_THREAD = 64


def _jit(**options):
    """numba.njit without the GIL, its machine code cached on disk when a folder allows it.

    numba caches beside the module, else in the user's cache folder (`NUMBA_CACHE_DIR` overrides
    both); with neither writable (a read-only image run by a user without a home) it refuses to
    cache at import, and the kernels are compiled in each process instead (about 1.5 s).
    """

    def decorate(function):
        try:
            return numba.njit(nogil=True, cache=True, **options)(function)
        except RuntimeError as error:
            if "cannot cache" not in str(error):
                raise
            return numba.njit(nogil=True, **options)(function)

    return decorate


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A catalog, or one contiguous shard of it, laid out for blocked recall.

    The last column is bounded apart from the others: the product's item vectors end with the
    softmax bias and its user vectors with the constant 1 that meets it, so `u . i <=
    |u[:-1]| |i[:-1]| + u[-1] i[-1]` is much tighter than `|u| |i|` when biases differ.

    Attributes:
        vectors: [n, dim] float32 item vectors, C-contiguous.
        first_index: the catalog index of row 0 (a shard's offset).
        block_items: items per SGEMM block.
        head_norm: [num_blocks] float32, the longest `i[:-1]` from each block to the end.
        last_max: [num_blocks] float32, the largest `i[-1]` from each block to the end.
        last_min: [num_blocks] float32, the smallest `i[-1]` from each block to the end.
    """

    vectors: np.ndarray
    first_index: int
    block_items: int
    head_norm: np.ndarray
    last_max: np.ndarray
    last_min: np.ndarray

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def reach(self, users: np.ndarray) -> np.ndarray:
        """[batch, num_blocks]: no item from block b on scores above reach[:, b] for a user."""
        head = np.linalg.norm(users[:, :-1], axis=1)[:, None] * self.head_norm[None, :]
        last = users[:, -1:]
        tail = np.maximum(last * self.last_max[None, :], last * self.last_min[None, :])
        slack = _BOUND_SLACK * (head + np.abs(tail)) + 1e-30
        return head + tail + slack


def _suffix(values: np.ndarray, starts: np.ndarray, ufunc) -> np.ndarray:
    """Per block, `ufunc` (maximum / minimum) of `values` from the block's start to the end."""
    if not starts.size:
        return values[:0].astype(np.float32)
    per_block = ufunc.reduceat(values, starts)
    return ufunc.accumulate(per_block[::-1])[::-1].astype(np.float32)


def _check_finite(vectors: np.ndarray, kind: str, first_index: int) -> None:
    """Raises on a NaN or infinite vector: its bound would be NaN and close every user early,
    leaving empty lists instead of an error (a diverged model should fail the run)."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{bad.size} {kind} vector(s) hold NaN or infinity, the first at row "
            f"{int(bad[0]) + first_index}: {vectors[bad[0]].tolist()[:8]}"
        )


def build_catalog(vectors: np.ndarray, block_items: int, first_index: int = 0) -> Catalog:
    """Lays out item vectors for `top_n_excluding`.

    Args:
        vectors: [n, dim] item vectors of catalog indices first_index .. first_index + n - 1.
        block_items: items per SGEMM block.
        first_index: the catalog index of the first row.
    """
    if block_items <= 0:
        raise ValueError(f"block_items must be positive, got {block_items}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise ValueError(f"item vectors must be [n, dim >= 1], got shape {vectors.shape}")
    _check_finite(vectors, "item", first_index)
    starts = np.arange(0, vectors.shape[0], block_items)
    head = np.linalg.norm(vectors[:, :-1], axis=1)
    last = vectors[:, -1]
    return Catalog(
        vectors,
        int(first_index),
        int(block_items),
        _suffix(head, starts, np.maximum),
        _suffix(last, starts, np.maximum),
        _suffix(last, starts, np.minimum),
    )


def visited_pairs(catalog: Catalog, visited) -> tuple[np.ndarray, np.ndarray]:
    """(user row, catalog row) of every visited item this catalog holds, grouped by block.

    Args:
        catalog: the items.
        visited: per user, an int array of visited catalog indices.
    """
    lengths = np.fromiter((len(v) for v in visited), np.int64, len(visited))
    if not lengths.sum():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows = np.concatenate([np.asarray(v, dtype=np.int64).reshape(-1) for v in visited])
    users = np.repeat(np.arange(len(visited), dtype=np.int64), lengths)
    rows = rows - catalog.first_index
    held = (rows >= 0) & (rows < catalog.size)
    rows, users = rows[held], users[held]
    # Grouped by block is all the scan needs; a stable sort of small ints is a radix sort.
    blocks = rows // catalog.block_items
    order = np.argsort(
        blocks.astype(np.int16 if blocks.max(initial=0) < 2**15 else np.int64), kind="stable"
    )
    return users[order], rows[order]


@_jit(inline="always")
def _worse(score_a, index_a, score_b, index_b):
    """The order every heap keeps: a lower score, or the same score and a higher index."""
    return score_a < score_b or (score_a == score_b and index_a > index_b)


@_jit(inline="always")
def _replace_worst(heap_scores, heap_index, score, index):
    """Replaces a heap's root (its worst entry) with (score, index) and sifts it down.

    Args:
        heap_scores: [top_n] float32, a heap under `_worse` with the worst entry at 0.
        heap_index: [top_n] int64, the catalog indices beside heap_scores.
    """
    size = heap_scores.shape[0]
    at = 0
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(
            heap_scores[right], heap_index[right], heap_scores[child], heap_index[child]
        ):
            child = right
        if not _worse(heap_scores[child], heap_index[child], score, index):
            break
        heap_scores[at] = heap_scores[child]
        heap_index[at] = heap_index[child]
        at = child
    heap_scores[at] = score
    heap_index[at] = index


@_jit()
def _offer_rows(scores, rows, lo, hi, first_index, heap_scores, heap_index):
    """Offers each score of a block to its user's heap; rows lo..hi of the block, one thread.

    The block's columns are read as `_LANES` interleaved groups (column lane * groups + g), so
    that the maximum of each group is an elementwise maximum over contiguous columns, which
    LLVM vectorises; a group is looked into only when its maximum can enter the heap. NaN
    scores never enter a heap (no comparison holds for them), as in faiss.

    Args:
        scores: [b, width] float32, the block's scores (visited items already -inf).
        rows: [b] int64, each score row's user row in the heaps.
        lo: first score row of this call.
        hi: one past the last score row of this call.
        first_index: catalog index of column 0.
        heap_scores: [batch, top_n] float32 heaps under `_worse`, -inf in empty slots.
        heap_index: [batch, top_n] int64 catalog indices, -1 in empty slots.
    """
    width = scores.shape[1]
    groups = width // _LANES
    maxima = np.empty(groups, np.float32)
    for r in range(lo, hi):
        user = rows[r]
        best_scores = heap_scores[user]
        best_index = heap_index[user]
        line = scores[r]
        for g in range(groups):
            maxima[g] = -np.inf
        for lane in range(_LANES):
            base = lane * groups
            for g in range(groups):
                value = line[base + g]
                # Written so that a NaN never becomes a maximum and hides a real score.
                maxima[g] = value if value > maxima[g] else maxima[g]
        for g in range(groups):
            # >=: a score equal to the worst kept one still enters with a lower index.
            if maxima[g] >= best_scores[0]:
                for lane in range(_LANES):
                    column = lane * groups + g
                    if _worse(best_scores[0], best_index[0], line[column], first_index + column):
                        _replace_worst(best_scores, best_index, line[column], first_index + column)
        for column in range(groups * _LANES, width):
            if _worse(best_scores[0], best_index[0], line[column], first_index + column):
                _replace_worst(best_scores, best_index, line[column], first_index + column)


_POOL_LOCK = threading.Lock()
_POOL: list[ThreadPoolExecutor] = []


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be None (every core) or at least 1, got {threads}")


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool: `_offer_rows` releases the GIL, so its threads use every core."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(_threads(), thread_name_prefix="recall-offer"))
        return _POOL[0]


def offer(
    scores: np.ndarray,
    rows: np.ndarray,
    first_index: int,
    heap_scores: np.ndarray,
    heap_index: np.ndarray,
    threads: int | None = None,
) -> None:
    """Offers a block of scores to the users' heaps (in place), split over threads by user.

    Args:
        scores: [b, width] float32, C-contiguous.
        rows: [b] int64, distinct heap rows, one per score row.
        first_index: catalog index of the block's column 0.
        heap_scores: [batch, top_n] float32 heaps (see `_offer_rows`).
        heap_index: [batch, top_n] int64.
        threads: how many threads at most; None = every core this process may use.
    """
    _check_threads(threads)
    count = scores.shape[0]
    threads = min(threads or _threads(), max(1, count // _MIN_ROWS_PER_THREAD))
    if threads == 1:
        _offer_rows(scores, rows, 0, count, first_index, heap_scores, heap_index)
        return
    cuts = np.linspace(0, count, threads + 1).astype(np.int64)
    futures = [
        _pool().submit(_offer_rows, scores, rows, lo, hi, first_index, heap_scores, heap_index)
        for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)
    ]
    for future in futures:
        future.result()


def warm_up() -> None:
    """Compiles the selection kernel for the types the search passes, filling the disk cache.

    The image runs this once at build time, so that its processes load machine code instead of
    each compiling it.
    """
    offer(
        np.zeros((1, 2 * _LANES + 1), np.float32),
        np.zeros(1, np.int64),
        0,
        np.full((1, 1), -np.inf, np.float32),
        np.full((1, 1), -1, np.int64),
    )


def canonical_order(index: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorts each row by score descending, then catalog index ascending; -1 padding last."""
    padded = index < 0
    key = np.where(padded, np.iinfo(np.int64).max, index)
    order = np.lexsort((key, -scores.astype(np.float64), padded), axis=-1)
    return np.take_along_axis(index, order, -1), np.take_along_axis(scores, order, -1)


def top_n_excluding(
    catalog: Catalog, user_vectors: np.ndarray, visited, top_n: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's best `top_n` catalog items by inner product, their visited items excluded.

    Args:
        catalog: the items (or one shard of them), from `build_catalog`.
        user_vectors: [batch, dim] float32.
        visited: per user, an int array of visited catalog indices (any order; duplicates and
            indices outside this catalog are allowed).
        top_n: list length wanted.
        threads: how many threads select at most; None = every core this process may use.

    Returns:
        (index [batch, top_n] int64, scores [batch, top_n] float32), best first, ties by the
        lower index. A user with fewer than top_n unvisited items gets them all, padded with
        index -1 and score -inf.
    """
    users = np.ascontiguousarray(user_vectors, dtype=np.float32)
    batch = users.shape[0]
    if len(visited) != batch:
        raise ValueError(f"visited has {len(visited)} users, user_vectors {batch}")
    if users.ndim != 2 or (catalog.size and users.shape[1] != catalog.vectors.shape[1]):
        raise ValueError(
            f"user vectors {users.shape} do not match item vectors {catalog.vectors.shape}"
        )
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    _check_threads(threads)
    _check_finite(users, "user", 0)
    # Heaps under `_worse`, row 0 the worst kept entry: the user's N-th best so far.
    best_scores = np.full((batch, top_n), -np.inf, dtype=np.float32)
    best_index = np.full((batch, top_n), -1, dtype=np.int64)
    if not batch or not catalog.size:
        return best_index, best_scores
    visit_user, visit_row = visited_pairs(catalog, visited)
    visit_block = visit_row // catalog.block_items
    reach = catalog.reach(users)
    buffer = np.empty(batch * min(catalog.block_items, catalog.size), dtype=np.float32)
    slot = np.empty(batch, dtype=np.int64)
    for block, start in enumerate(range(0, catalog.size, catalog.block_items)):
        stop = min(start + catalog.block_items, catalog.size)
        open_users = np.flatnonzero(reach[:, block] >= best_scores[:, 0])
        if not open_users.size:
            break
        everyone = open_users.size == batch
        scores = buffer[: open_users.size * (stop - start)].reshape(open_users.size, stop - start)
        np.matmul(
            users if everyone else users[open_users], catalog.vectors[start:stop].T, out=scores
        )
        lo, hi = np.searchsorted(visit_block, [block, block + 1])
        if hi > lo:
            row, col = visit_user[lo:hi], visit_row[lo:hi] - start
            if not everyone:
                slot.fill(-1)
                slot[open_users] = np.arange(open_users.size)
                row = slot[row]
                col = col[row >= 0]
                row = row[row >= 0]
            scores[row, col] = -np.inf
        offer(scores, open_users, start + catalog.first_index, best_scores, best_index, threads)
    return canonical_order(best_index, best_scores)


def merge_top_n(
    parts: list[tuple[np.ndarray, np.ndarray]], top_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merges the results of `top_n_excluding` on item shards, for the same users, into one.

    Args:
        parts: per shard (index [batch, n_s], scores [batch, n_s]), -1 / -inf padded.
        top_n: list length wanted.

    Returns:
        (index [batch, top_n], scores [batch, top_n]) equal to `top_n_excluding` over the union
        of the shards, ties included.
    """
    index = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    index, scores = canonical_order(index, scores)
    return index[:, :top_n], scores[:, :top_n]
