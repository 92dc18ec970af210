"""History encoders: item-index histories -> user vectors. One function per `trainer.encoder`,
named as the option is (registered in `core/options.py`).

Every encoder returns `(user_vector [batch, dim], per_position [batch, max_len, dim])`. Row i of
`per_position` encodes the history up to and including slot i only (it is causal), so the
per-position objective can ask every slot to predict the next item; `user_vector` is the row at
the last real slot, what serving uses.
"""

from __future__ import annotations

import tensorflow as tf

PAD = -1  # the index of an empty history slot.


def dense_history(history_idx) -> tf.Tensor:
    """Returns histories as a dense [batch, max_len] int64 tensor padded with PAD (-1).

    Accepts the SparseTensor the parser gives, or an already padded dense tensor.
    """
    if isinstance(history_idx, tf.SparseTensor):
        history_idx = tf.sparse.to_dense(history_idx, default_value=PAD)
    # A batch of empty histories has width 0; one PAD column keeps "the last slot" defined.
    return tf.pad(history_idx, [[0, 0], [0, 1]], constant_values=PAD)


def last_real(per_position: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns (rows at the last real slot [batch, dim], history lengths [batch] int32)."""
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(history, PAD), tf.int32), axis=1)
    return tf.gather(per_position, tf.maximum(lengths - 1, 0), batch_dims=1), lengths


def prefix_means(item_embeddings: tf.Tensor, history: tf.Tensor) -> tf.Tensor:
    """Returns the mean embedding of every history prefix: [batch, max_len, dim].

    Row i averages the real items in slots 0..i (histories are right-padded, so a PAD slot
    repeats the mean of the whole history).
    """
    mask = tf.cast(tf.not_equal(history, PAD), tf.float32)[..., tf.newaxis]  # [B, L, 1]
    embedded = tf.nn.embedding_lookup(item_embeddings, tf.maximum(history, 0)) * mask
    return tf.cumsum(embedded, axis=1) / tf.maximum(tf.cumsum(mask, axis=1), 1.0)


def mean_mlp(
    history: tf.Tensor,
    item_embeddings: tf.Tensor,
    hidden_units: list[int],
    output_dim: int,
    dropout: float,
    training: bool,
    user_vectors: tf.Tensor | None = None,
    ages: tf.Tensor | None = None,
) -> tf.Tensor:
    """YouTube DNN: masked mean pooling of the history, then a ReLU tower and a linear output.

    The optional extras are concatenated to every prefix mean before the tower, as YouTube DNN
    concatenates its other features: a user-id embedding, and the example age (recency) of what
    each slot predicts.

    Args:
        history: [batch, max_len] int64, PAD where empty.
        item_embeddings: [num_classes, dim].
        hidden_units: widths of the ReLU layers.
        output_dim: the user vector's size (the softmax kernel's width).
        dropout: drop rate after each hidden layer while training.
        training: whether dropout is active.
        user_vectors: optional [batch, du] user-id embeddings.
        ages: optional [batch, max_len] float32 example age per slot.

    Returns:
        (user_vector [batch, output_dim], per_position [batch, max_len, output_dim]): the tower
        applied to the mean of every prefix; an empty history gives the tower's output at 0.
    """
    x = prefix_means(item_embeddings, history)
    if user_vectors is not None:
        tiled = tf.tile(user_vectors[:, tf.newaxis, :], [1, tf.shape(history)[1], 1])
        x = tf.concat([x, tiled], axis=2)
    if ages is not None:
        x = tf.concat([x, ages[..., tf.newaxis], tf.square(ages)[..., tf.newaxis]], axis=2)
    for i, units in enumerate(hidden_units):
        x = tf.compat.v1.layers.dense(
            x, units, activation=tf.nn.relu, name=f"user_tower/hidden_{i}"
        )
        if dropout > 0:
            x = tf.compat.v1.layers.dropout(x, rate=dropout, training=training)
    per_position = tf.compat.v1.layers.dense(x, output_dim, name="user_tower/output")
    user_vector, _ = last_real(per_position, history)
    return user_vector, per_position


def recency_positions(history: tf.Tensor) -> tf.Tensor:
    """Returns each slot's distance from the newest real item: [batch, max_len] int32.

    Histories are right-padded (oldest first), so counting positions from the end makes position
    0 always "the latest item", whatever the history's length. PAD slots get 0 (masked anyway).
    """
    mask = tf.cast(tf.not_equal(history, PAD), tf.int32)
    lengths = tf.reduce_sum(mask, axis=1, keepdims=True)  # [B, 1]
    index = tf.range(tf.shape(history)[1])[tf.newaxis, :]  # [1, L]
    return tf.maximum(lengths - 1 - index, 0) * mask


def causal_attention_mask(history: tf.Tensor) -> tf.Tensor:
    """Returns [batch, L, L] bool: query i may attend to key j iff j <= i and j is a real item."""
    length = tf.shape(history)[1]
    causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)  # j <= i
    real_keys = tf.not_equal(history, PAD)[:, tf.newaxis, :]  # [B, 1, L]
    return tf.logical_and(causal[tf.newaxis], real_keys)


def self_attention(
    history: tf.Tensor,
    item_embeddings: tf.Tensor,
    hidden_units: list[int],
    output_dim: int,
    dropout: float,
    training: bool,
    num_blocks: int = 2,
    num_heads: int = 1,
    max_positions: int = 512,
    attention_dropout: float = 0.0,
) -> tf.Tensor:
    """SASRec-style causal self-attention; the user vector is the output at the newest item.

    Args:
        history: [batch, max_len] int64, oldest first, PAD (-1) after the last real item.
        item_embeddings: [num_classes, dim].
        hidden_units: unused width list kept for a uniform signature; the feed-forward width
            equals `dim`, as in SASRec.
        output_dim: the user vector's size; must equal the embedding size.
        dropout: rate on embeddings, attention and feed-forward outputs while training.
        training: whether dropout is active.
        num_blocks: attention blocks.
        num_heads: attention heads per block.
        max_positions: rows of the learned position table.
        attention_dropout: rate on the attention probabilities ([batch, heads, L, L] per block);
            the model passes `dropout` here unless `trainer.dropout_attention` is false.

    Returns:
        (user_vector [batch, output_dim], per_position [batch, max_len, output_dim]); an empty
        history gives a learned constant user vector.
    """
    del hidden_units
    dim = item_embeddings.shape[1]
    if output_dim != dim:
        raise ValueError(
            f"self_attention needs output_dim == embedding_dim, got {output_dim} != {dim}"
        )
    real = tf.not_equal(history, PAD)
    mask_f = tf.cast(real, tf.float32)[..., tf.newaxis]  # [B, L, 1]
    positions = tf.compat.v1.get_variable(
        "position_embeddings",
        [max_positions, dim],
        initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.02),
    )
    x = tf.nn.embedding_lookup(item_embeddings, tf.maximum(history, 0)) * (dim**0.5)
    x += tf.nn.embedding_lookup(
        positions, tf.minimum(recency_positions(history), max_positions - 1)
    )
    x = tf.compat.v1.layers.dropout(x, rate=dropout, training=training) * mask_f
    attention_mask = causal_attention_mask(history)
    for block in range(num_blocks):
        normed = tf.keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{block}/ln_attn")(x)
        attended = tf.keras.layers.MultiHeadAttention(
            num_heads=num_heads,
            key_dim=dim // num_heads,
            dropout=attention_dropout,
            name=f"block_{block}/attention",
        )(normed, x, attention_mask=attention_mask, training=training)
        x = x + attended
        normed = tf.keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{block}/ln_ffn")(x)
        ffn = tf.compat.v1.layers.dense(
            normed, dim, activation=tf.nn.relu, name=f"block_{block}/ffn_1"
        )
        ffn = tf.compat.v1.layers.dropout(ffn, rate=dropout, training=training)
        ffn = tf.compat.v1.layers.dense(ffn, dim, name=f"block_{block}/ffn_2")
        ffn = tf.compat.v1.layers.dropout(ffn, rate=dropout, training=training)
        x = (x + ffn) * mask_f
    x = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    last, lengths = last_real(x, history)
    empty = tf.compat.v1.get_variable("empty_history", [dim], initializer=tf.zeros_initializer())
    user_vector = tf.where(
        (lengths > 0)[:, tf.newaxis], last, tf.broadcast_to(empty, tf.shape(last))
    )
    return user_vector, x
