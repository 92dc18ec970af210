"""Losses over the item softmax. One function per `trainer.loss`, named as the option is
(registered in `core/options.py`); each returns per-row loss.

Every loss scores a row's vector u against item i as the serving score `u . w_i + b_i` (the kernel
row with its bias), so the exported item vectors rank exactly what training optimised. They share
one signature: `loss(kernel, bias, labels, vectors, ctx)` with

    kernel [num_classes, dim], bias [num_classes], labels [n] int64, vectors [n, dim],

and a `LossContext` carrying the catalog facts and options, and return a [n] float32 loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from offline_recall.core import options


@dataclasses.dataclass
class LossContext:
    """What a loss needs besides the tensors.

    Attributes:
        num_classes: rows of the kernel (vocabulary plus OOV buckets).
        num_sampled: negatives per batch (sampled losses), or the most in-batch candidates.
        item_counts: [num_classes] training counts in index order (the TFT vocabulary's counts;
            OOV buckets count 1), for the unigram sampler and the logQ correction.
        sampler: "unigram" (fixed_unigram_candidate_sampler over item_counts) or "log_uniform".
        sampler_distortion: unigram counts are raised to this power before sampling.
        temperature: in_batch logits are divided by this.
        logq_correction: in_batch subtracts log q(item) from every logit.
        seed: op seed of the samplers.
        sampled_values: a fixed (sampled, true_expected, sampled_expected) triple instead of
            sampling; tests use it to check a loss against a hand-computed value.
    """

    num_classes: int
    num_sampled: int = 100
    item_counts: np.ndarray | None = None
    sampler: str = "unigram"
    sampler_distortion: float = 1.0
    temperature: float = 1.0
    logq_correction: bool = True
    seed: int | None = None
    sampled_values: tuple | None = None

    def counts(self) -> np.ndarray:
        if self.item_counts is None:
            raise ValueError("this loss needs item_counts (the vocabulary's training counts)")
        counts = np.asarray(self.item_counts, dtype=np.float64)
        if counts.shape != (self.num_classes,):
            raise ValueError(f"item_counts has shape {counts.shape}, want ({self.num_classes},)")
        return np.maximum(counts, 1.0)


def logits(kernel: tf.Tensor, bias: tf.Tensor, vectors: tf.Tensor) -> tf.Tensor:
    """Serving scores over the whole catalog: [n, dim] x [C, dim] -> [n, C]."""
    return tf.matmul(vectors, kernel, transpose_b=True) + bias


def sample_negatives(labels: tf.Tensor, ctx: LossContext):
    """Returns (sampled [S], true_expected [n, 1], sampled_expected [S]) from the chosen sampler."""
    if ctx.sampled_values is not None:
        return ctx.sampled_values
    true_classes = tf.reshape(tf.cast(labels, tf.int64), [-1, 1])
    num_sampled = min(ctx.num_sampled, ctx.num_classes - 1)
    if ctx.sampler == "log_uniform":
        return tf.random.log_uniform_candidate_sampler(
            true_classes, 1, num_sampled, unique=True, range_max=ctx.num_classes, seed=ctx.seed
        )
    if ctx.sampler == "unigram":
        return tf.random.fixed_unigram_candidate_sampler(
            true_classes,
            1,
            num_sampled,
            unique=True,
            range_max=ctx.num_classes,
            distortion=ctx.sampler_distortion,
            unigrams=[float(c) for c in ctx.counts()],
            seed=ctx.seed,
        )
    raise ValueError(f"trainer.sampler must be one of {options.SAMPLERS}, got {ctx.sampler!r}")


def full_softmax(kernel, bias, labels, vectors, ctx: LossContext) -> tf.Tensor:
    """Exact softmax cross-entropy over every item; [n]. For catalogs that fit a [n, C] matrix.

    Computed as logsumexp(scores) - the label's score, the label's score from its own kernel
    row: with op determinism on (the trainer's), TF's sparse op takes its gradient through a
    deterministic segment sum over the whole [n, C] matrix, which took most of a step (54 of
    90 ms at 12k items), and the dense op multiplies a one-hot [n, C] matrix.
    """
    del ctx
    labels = tf.cast(labels, tf.int64)
    label_scores = tf.reduce_sum(vectors * tf.gather(kernel, labels), axis=1) + tf.gather(
        bias, labels
    )
    return tf.reduce_logsumexp(logits(kernel, bias, vectors), axis=1) - label_scores


def sampled_softmax(kernel, bias, labels, vectors, ctx: LossContext) -> tf.Tensor:
    """`tf.nn.sampled_softmax_loss`, accidental hits removed; [n]."""
    return tf.nn.sampled_softmax_loss(
        weights=kernel,
        biases=bias,
        labels=tf.reshape(tf.cast(labels, tf.int64), [-1, 1]),
        inputs=vectors,
        num_sampled=min(ctx.num_sampled, ctx.num_classes - 1),
        num_classes=ctx.num_classes,
        sampled_values=sample_negatives(labels, ctx),
        remove_accidental_hits=True,
        seed=ctx.seed,
    )


def nce(kernel, bias, labels, vectors, ctx: LossContext) -> tf.Tensor:
    """`tf.nn.nce_loss`, accidental hits removed; [n]."""
    return tf.nn.nce_loss(
        weights=kernel,
        biases=bias,
        labels=tf.reshape(tf.cast(labels, tf.int64), [-1, 1]),
        inputs=vectors,
        num_sampled=min(ctx.num_sampled, ctx.num_classes - 1),
        num_classes=ctx.num_classes,
        sampled_values=sample_negatives(labels, ctx),
        remove_accidental_hits=True,
    )


def in_batch_candidates(labels: tf.Tensor, ctx: LossContext) -> tf.Tensor:
    """The batch's own labels as negatives: all of them, or `num_sampled` rows drawn uniformly.

    Drawing rows (not distinct items) keeps the candidates distributed like item frequency, which
    is what the logQ correction assumes, while bounding the [n, S] logits of the per-position
    objective, whose n is every position of the batch.
    """
    if ctx.sampled_values is not None:
        return ctx.sampled_values[0]
    n = tf.shape(labels)[0]
    take = tf.minimum(n, ctx.num_sampled)
    rows = tf.random.shuffle(tf.range(n), seed=ctx.seed)[:take]
    return tf.gather(labels, rows)


def in_batch(kernel, bias, labels, vectors, ctx: LossContext) -> tf.Tensor:
    """In-batch softmax (Yi et al., 2019): other rows' positives are the negatives; [n].

    Row r's logits are [s(r, label_r), s(r, c_1), ..., s(r, c_S)] with s = (u . w + b) / T, minus
    log q(item) when `logq_correction` (q = the item's share of training clicks, so popular items
    are not over-penalised for being sampled often). A candidate equal to the row's own label is
    an accidental hit and is masked out; the positive is always column 0.
    """
    labels = tf.cast(labels, tf.int64)
    candidates = tf.cast(in_batch_candidates(labels, ctx), tf.int64)  # [S]
    true_w = tf.gather(kernel, labels)  # [n, dim]
    true_logit = (
        tf.reduce_sum(vectors * true_w, axis=1, keepdims=True)
        + tf.gather(bias, labels)[:, tf.newaxis]
    )
    cand_logits = tf.matmul(vectors, tf.gather(kernel, candidates), transpose_b=True) + tf.gather(
        bias, candidates
    )
    all_logits = tf.concat([true_logit, cand_logits], axis=1) / ctx.temperature  # [n, 1 + S]
    if ctx.logq_correction:
        counts = ctx.counts()
        log_q = tf.constant(np.log(counts / counts.sum()), tf.float32)  # [C]
        ids = tf.concat(
            [
                labels[:, tf.newaxis],
                tf.broadcast_to(candidates, [tf.shape(labels)[0], tf.shape(candidates)[0]]),
            ],
            axis=1,
        )
        all_logits -= tf.gather(log_q, ids)
    hits = tf.equal(candidates[tf.newaxis, :], labels[:, tf.newaxis])  # [n, S]
    hits = tf.concat([tf.zeros_like(hits[:, :1]), hits], axis=1)
    all_logits = tf.where(hits, tf.fill(tf.shape(all_logits), -1e9), all_logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.zeros_like(labels), logits=all_logits
    )


def window_loss(loss, kernel, bias, targets, weights, vectors, ctx: LossContext) -> tf.Tensor:
    """A weighted sum of `loss` over several targets per row; [n].

    Args:
        loss: one of this module's losses.
        kernel: [num_classes, dim]; bias: [num_classes].
        targets: [n, k] int64 item indices, any value where the weight is 0.
        weights: [n, k] float32, each (row, target)'s weight (0 = no target there).
        vectors: [n, dim].
        ctx: the loss's context.

    Returns:
        [n]: sum over d of weights[:, d] * loss(row's vector -> targets[:, d]).

    The exact softmax computes a row's logsumexp once for its k targets; any other loss is
    computed once per (row, target) pair of nonzero weight.
    """
    targets = tf.maximum(tf.cast(targets, tf.int64), 0)
    if loss is full_softmax:
        target_scores = tf.einsum("nd,nkd->nk", vectors, tf.gather(kernel, targets)) + tf.gather(
            bias, targets
        )
        lse = tf.reduce_logsumexp(logits(kernel, bias, vectors), axis=1, keepdims=True)
        return tf.reduce_sum(weights * (lse - target_scores), axis=1)
    pairs = tf.where(weights > 0)  # [m, 2]: (row, target column)
    rows = pairs[:, 0]
    per_pair = loss(kernel, bias, tf.gather_nd(targets, pairs), tf.gather(vectors, rows), ctx)
    return tf.math.unsorted_segment_sum(
        per_pair * tf.gather_nd(weights, pairs), rows, tf.shape(vectors, out_type=tf.int64)[0]
    )
