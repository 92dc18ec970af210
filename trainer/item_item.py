"""An item-item model (EASE, Steck 2019) blended into the published vectors, inner products kept.

EASE learns an item-item weight matrix B [items, items] (zero diagonal) in closed form from the
users' item sets, and scores a user by `x_u B` (x_u the multi-hot of the user's items). It sees
co-occurrence the sequence model does not: blending the two helps on logs whose users share many
items. A dense B cannot be published as vectors, so it is cut to rank r by a randomized SVD,
B ~ P Q^T with P, Q [items, r]: a user vector gains `scale * sum_{h in history} P_h` and an item
vector Q_i, and a recall's score stays the inner product of the published vectors:

    score(u, i) = model(u, i) + scale * x_u P Q_i

`scale` is `weight * model_sd / item_item_sd`, the per-user spread of each part's scores over the
catalog, so `weight` is in units of the model's spread. The weight is chosen on the holdout
(`choose_weight`); 0 keeps the model alone. Nothing here knows of TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack

# Users scored together when choosing the weight: three [block, items] float32 buffers.
BLOCK_USERS = 1024
# Extra random directions and power iterations of the randomized SVD (Halko et al. 2011).
OVERSAMPLE = 16
POWER_ITERATIONS = 3


def multi_hot(rows: Sequence[np.ndarray], num_items: int) -> sparse.csr_matrix:
    """[len(rows), num_items] float32 0/1 matrix; each row an int array of item indices
    (duplicates and indices outside [0, num_items) are dropped)."""
    indptr, indices = [0], []
    for row in rows:
        kept = np.unique(row[(row >= 0) & (row < num_items)])
        indices.append(kept)
        indptr.append(indptr[-1] + len(kept))
    cols = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    data = np.ones(len(cols), np.float32)
    return sparse.csr_matrix((data, cols, np.asarray(indptr)), shape=(len(rows), num_items))


def ease_weights(users_items: sparse.csr_matrix, l2: float) -> np.ndarray:
    """EASE's closed form: B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, diagonal zeroed.

    Args:
        users_items: X [users, items] 0/1.
        l2: EASE's lambda, > 0.

    Returns:
        B [items, items] float32.
    """
    n = users_items.shape[1]
    # float32: a 20k-item catalog's matrices are 1.6 GB each, float64 twice that.
    gram = (users_items.T @ users_items).toarray().astype(np.float32)
    gram[np.diag_indices(n)] += l2
    # X^T X + l2 I is symmetric positive definite: a Cholesky inverse takes half LU's time.
    factor, info = lapack.spotrf(gram, lower=True, overwrite_a=True, clean=False)
    if info == 0:
        factor, info = lapack.spotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE's regularised Gram matrix: LAPACK info {info}")
    # spotri fills the lower triangle only.
    inverse = np.tril(factor)
    del factor
    inverse += np.tril(inverse, -1).T
    inverse /= -np.diag(inverse)
    np.fill_diagonal(inverse, 0.0)
    return inverse.astype(np.float32, copy=False)


def low_rank(matrix: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A rank-`rank` factorisation matrix ~ P Q^T by randomized SVD (singular values in P).

    Args:
        matrix: [n, n] float32.
        rank: r; at least n gives the exact factorisation (r = n).
        seed: the random test matrix's seed.

    Returns:
        (P [n, r], Q [n, r]) float32.
    """
    n = matrix.shape[0]
    if rank >= n:
        u, s, vt = linalg.svd(matrix, full_matrices=False, check_finite=False)
        return (u * s).astype(np.float32), vt.T.astype(np.float32)
    rng = np.random.default_rng(seed)
    width = min(n, rank + OVERSAMPLE)
    basis = matrix @ rng.standard_normal((n, width), dtype=np.float32)
    for _ in range(POWER_ITERATIONS):
        basis, _ = np.linalg.qr(basis)
        basis = matrix @ (matrix.T @ basis)
    basis, _ = np.linalg.qr(basis)
    u, s, vt = np.linalg.svd(basis.T @ matrix, full_matrices=False)
    p = (basis @ u[:, :rank]) * s[:rank]
    return p.astype(np.float32), vt[:rank].T.astype(np.float32)


def factors(
    rows: Sequence[np.ndarray], num_items: int, l2: float, rank: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """EASE on the users' item sets, cut to rank `rank`: (P, Q), each [num_items, r]."""
    return low_rank(ease_weights(multi_hot(rows, num_items), l2), rank, seed)


def history_sums(histories: np.ndarray, user_rows: np.ndarray) -> np.ndarray:
    """Sum of `user_rows` over each history's distinct items, PAD (< 0) skipped.

    Args:
        histories: [users, max_len] int item indices, padded with negative values.
        user_rows: [num_classes, r].

    Returns:
        [users, r] float32: x_u P for x_u the multi-hot of the history.
    """
    return np.asarray(multi_hot(list(histories), user_rows.shape[0]) @ user_rows, np.float32)


def ndcg_at_10(scores: np.ndarray, labels: np.ndarray, excluded: sparse.csr_matrix) -> np.ndarray:
    """Each user's NDCG@10 of its label under `scores`, excluded items never ranked.

    Args:
        scores: [users, items].
        labels: [users] item indices; one outside [0, items) is a miss.
        excluded: [users, items] 0/1 (visited items).

    Returns:
        [users] float64. Ties count against the label, as Recall's top-N may drop it.
    """
    scores = np.array(scores, np.float32)
    scores[excluded.nonzero()] = -np.inf
    n = scores.shape[1]
    valid = (labels >= 0) & (labels < n)
    label_scores = scores[np.arange(len(labels)), np.where(valid, labels, 0)]
    rank = (scores >= label_scores[:, None]).sum(axis=1)
    hit = valid & np.isfinite(label_scores) & (rank <= 10)
    return np.where(hit, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The holdout users the weight is chosen on (numpy, in one order)."""

    histories: np.ndarray  # [users, max_len] int64, padded with negative values
    labels: np.ndarray  # [users] int64
    visited: sparse.csr_matrix  # [users, vocab_size] 0/1


@dataclasses.dataclass(frozen=True)
class Choice:
    """The chosen weight and what chose it."""

    weight: float
    scale: float
    model_sd: float
    item_item_sd: float
    # {weight: holdout NDCG@10} for every candidate, 0 (the model alone) included.
    ndcg10: dict[float, float]
    # The chosen weight's paired NDCG@10 gain over the model alone, and its standard error.
    gain: float
    gain_se: float
    why: str


def choose_weight(
    model_scores: Iterable[np.ndarray],
    holdout: Holdout,
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    weights: Sequence[float],
) -> Choice:
    """Picks the blend weight on the holdout: the best NDCG@10 of the candidates and 0, but a
    weight above 0 only when its paired gain over the model alone beats its standard error.

    Args:
        model_scores: the model's [block, vocab_size] scores of the holdout users, in blocks of
            BLOCK_USERS in `holdout` order (a generator: the model scores a block at a time).
        holdout: the users' histories, labels and visited items.
        user_rows: P [>= vocab_size, r]; item_rows: Q [>= vocab_size, r].
        weights: the candidate weights, each > 0.
    """
    vocab = holdout.visited.shape[1]
    candidates = [0.0, *sorted(set(weights))]
    per_user = {w: [] for w in candidates}
    spreads = None
    for start, scores in zip(range(0, len(holdout.labels), BLOCK_USERS), model_scores, strict=True):
        rows = slice(start, start + len(scores))
        blend = _blend_scores(holdout.histories[rows], user_rows, item_rows, vocab)
        # The first block's users estimate the spreads: a mean over 1,024 users is steady.
        spreads = spreads or _spreads(scores, blend)
        ratio = _ratio(*spreads)
        for w in candidates:
            per_user[w].append(
                ndcg_at_10(
                    scores + (w * ratio) * blend, holdout.labels[rows], holdout.visited[rows]
                )
            )
    if spreads is None:
        raise ValueError("choose_weight needs at least one holdout user")
    per_user = {w: np.concatenate(v) for w, v in per_user.items()}
    best = max(candidates, key=lambda w: (per_user[w].mean(), -w))
    diff = per_user[best] - per_user[0.0]
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    if best > 0 and gain <= se:
        why = (
            f"the best weight, {best}, gained {gain:+.4f} NDCG@10 on the holdout, within its "
            f"standard error {se:.4f}"
        )
        best, gain, se = 0.0, 0.0, 0.0
    elif best > 0:
        why = f"weight {best}: holdout NDCG@10 {gain:+.4f} +- {se:.4f} over the model alone"
    else:
        why = "no candidate weight beat the model alone on the holdout"
    return Choice(
        weight=best,
        scale=best * _ratio(*spreads),
        model_sd=spreads[0],
        item_item_sd=spreads[1],
        ndcg10={w: round(float(v.mean()), 5) for w, v in per_user.items()},
        gain=round(gain, 5),
        gain_se=round(se, 5),
        why=why,
    )


def _blend_scores(histories: np.ndarray, user_rows, item_rows, vocab: int) -> np.ndarray:
    """[users, vocab] x_u P Q^T: the item-item part's scores of the catalog (unscaled)."""
    return history_sums(histories, user_rows) @ item_rows[:vocab].T


def _spreads(model_scores: np.ndarray, blend: np.ndarray) -> tuple[float, float]:
    """(model_sd, item_item_sd): the mean over users of each part's spread over the catalog."""
    return float(model_scores.std(axis=1).mean()), float(blend.std(axis=1).mean())


def _ratio(model_sd: float, item_item_sd: float) -> float:
    """model_sd / item_item_sd: the scale of weight 1 (0 when the item-item part is flat)."""
    return model_sd / item_item_sd if item_item_sd > 0 else 0.0


def scale_for(
    model_scores: np.ndarray, histories: np.ndarray, user_rows, item_rows, weight: float
) -> float:
    """`weight * model_sd / item_item_sd` over these users (at most BLOCK_USERS of them).

    Args:
        model_scores: [users, vocab_size] the model's scores of the users.
        histories: [users, max_len] their histories, padded with negative values.
        user_rows: P [>= vocab_size, r]; item_rows: Q [>= vocab_size, r].
        weight: the chosen weight.
    """
    blend = _blend_scores(histories, user_rows, item_rows, model_scores.shape[1])
    return weight * _ratio(*_spreads(model_scores, blend))
