"""History encoders: item-index histories -> user vectors. One function per `trainer.encoder`."""
from __future__ import annotations

import tensorflow as tf

PAD = -1  # the index of an empty history slot.


def dense_history(history_idx: tf.SparseTensor) -> tf.Tensor:
    """Returns histories as a dense [batch, max_len] int64 tensor padded with PAD (-1)."""
    return tf.sparse.to_dense(history_idx, default_value=PAD)


def masked_mean(item_embeddings: tf.Tensor, history: tf.Tensor) -> tf.Tensor:
    """Averages the embeddings of the real (non-PAD) items of each history.

    Args:
        item_embeddings: [num_classes, dim] input embedding table.
        history: [batch, max_len] int64 indices, PAD where empty.

    Returns:
        [batch, dim]; an empty history gives the zero vector.
    """
    mask = tf.cast(tf.not_equal(history, PAD), tf.float32)[..., tf.newaxis]  # [B, L, 1]
    embedded = tf.nn.embedding_lookup(item_embeddings, tf.maximum(history, 0)) * mask
    count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)  # [B, 1]
    return tf.reduce_sum(embedded, axis=1) / count


def mean_mlp(
    history: tf.Tensor,
    item_embeddings: tf.Tensor,
    hidden_units: list[int],
    output_dim: int,
    dropout: float,
    training: bool,
) -> tf.Tensor:
    """YouTube DNN: masked mean pooling of the history, then a ReLU tower and a linear output.

    Args:
        history: [batch, max_len] int64, PAD where empty.
        item_embeddings: [num_classes, dim].
        hidden_units: widths of the ReLU layers.
        output_dim: the user vector's size (the softmax kernel's width).
        dropout: drop rate after each hidden layer while training.
        training: whether dropout is active.

    Returns:
        user_vector [batch, output_dim].
    """
    x = masked_mean(item_embeddings, history)
    for i, units in enumerate(hidden_units):
        x = tf.compat.v1.layers.dense(x, units, activation=tf.nn.relu, name=f"user_tower/hidden_{i}")
        if dropout > 0:
            x = tf.compat.v1.layers.dropout(x, rate=dropout, training=training)
    return tf.compat.v1.layers.dense(x, output_dim, name="user_tower/output")


ENCODERS = {"mean_mlp": mean_mlp}
