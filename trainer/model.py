"""The tf.estimator model_fn: history encoder -> user_vector, loss over the item softmax."""

from __future__ import annotations

import tensorflow as tf

from offline_recall.trainer import encoders, losses
from offline_recall.trainer import features as F


def model_fn(features, labels, mode, params):
    """Estimator model_fn.

    Args:
        features: {`history_idx`: SparseTensor [batch, <=max_history] int64}.
        labels: [batch] int64 target item indices (None when predicting).
        mode: a tf.estimator.ModeKeys.
        params: num_classes, embedding_dim, hidden_units, dropout, encoder, loss, num_sampled,
            learning_rate, l2.

    Returns:
        EstimatorSpec; predictions hold `user_vector` [batch, embedding_dim].
    """
    training = mode == tf.estimator.ModeKeys.TRAIN
    num_classes = params["num_classes"]
    dim = params["embedding_dim"]
    history = encoders.dense_history(features[F.HISTORY_IDX])

    item_embeddings = tf.compat.v1.get_variable(
        "item_embeddings",
        [num_classes, dim],
        initializer=tf.compat.v1.truncated_normal_initializer(stddev=1.0 / dim**0.5),
    )
    user_vector = encoders.ENCODERS[params["encoder"]](
        history,
        item_embeddings,
        params["hidden_units"],
        dim,
        params["dropout"],
        training,
        **params.get("encoder_options", {}),
    )
    with tf.compat.v1.variable_scope("softmax"):
        kernel = tf.compat.v1.get_variable(
            "kernel",
            [num_classes, dim],
            initializer=tf.compat.v1.truncated_normal_initializer(stddev=1.0 / dim**0.5),
        )
        bias = tf.compat.v1.get_variable("bias", [num_classes], initializer=tf.zeros_initializer())

    if mode == tf.estimator.ModeKeys.PREDICT:
        return tf.estimator.EstimatorSpec(mode, predictions={F.USER_VECTOR: user_vector})

    num_sampled = min(params["num_sampled"], num_classes - 1)
    per_example = losses.LOSSES[params["loss"]](
        kernel, bias, labels, user_vector, num_sampled, num_classes
    )
    loss = tf.reduce_mean(per_example)
    if params.get("l2", 0.0) > 0:
        loss += params["l2"] * (tf.nn.l2_loss(item_embeddings) + tf.nn.l2_loss(kernel))
    if mode == tf.estimator.ModeKeys.EVAL:
        return tf.estimator.EstimatorSpec(mode, loss=loss)
    optimizer = tf.compat.v1.train.AdamOptimizer(params["learning_rate"])
    train_op = optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
