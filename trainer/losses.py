"""Losses over the item softmax. One function per `trainer.loss`; each returns per-example loss."""

from __future__ import annotations

import tensorflow as tf


def sampled_softmax(kernel, bias, labels, user_vectors, num_sampled: int, num_classes: int):
    """Sampled softmax with the log-uniform sampler (the vocabulary is frequency-ordered).

    Args:
        kernel: [num_classes, dim] softmax weights.
        bias: [num_classes].
        labels: [batch] int64 target indices.
        user_vectors: [batch, dim].
        num_sampled: negatives per batch.
        num_classes: rows of the kernel.

    Returns:
        [batch] loss.
    """
    return tf.nn.sampled_softmax_loss(
        weights=kernel,
        biases=bias,
        labels=tf.reshape(labels, [-1, 1]),
        inputs=user_vectors,
        num_sampled=num_sampled,
        num_classes=num_classes,
        remove_accidental_hits=True,
    )


def nce(kernel, bias, labels, user_vectors, num_sampled: int, num_classes: int):
    """Noise-contrastive estimation with the log-uniform sampler. Shapes as `sampled_softmax`."""
    return tf.nn.nce_loss(
        weights=kernel,
        biases=bias,
        labels=tf.reshape(labels, [-1, 1]),
        inputs=user_vectors,
        num_sampled=num_sampled,
        num_classes=num_classes,
        remove_accidental_hits=True,
    )


LOSSES = {"sampled_softmax": sampled_softmax, "nce": nce}
