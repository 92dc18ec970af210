"""The tf.estimator model_fn: history encoder -> user_vector, loss over the item softmax."""

from __future__ import annotations

import contextlib
import dataclasses

import tensorflow as tf

from offline_recall.core import options
from offline_recall.core.contracts import (
    BLESSING_K,
    BLESSING_METRIC,
    EARLY_STOPPING_METRICS,
    EARLY_STOPPING_NDCG,
    EARLY_STOPPING_NDCG_K,
)
from offline_recall.trainer import encoders, losses
from offline_recall.trainer import features as F

ITEM_EMBEDDINGS = "item_embeddings"
USER_EMBEDDINGS = "user_embeddings"
# Params holding the item-item blend's factors (`trainer/item_item.py`), absent without it:
# [num_classes, r] float32 arrays, the user side with the blend's scale folded in.
ITEM_ITEM_USER_ROWS = "item_item_user_rows"
ITEM_ITEM_ITEM_ROWS = "item_item_item_rows"
# The rank of a held-out item Recall could never return: beyond every cut-off.
NOT_RANKED = 2**62

# The registered name of each encoder and loss is its function's name (see core/options.py).
ENCODERS = {name: getattr(encoders, name) for name in options.ENCODERS}
LOSSES = {name: getattr(losses, name) for name in options.LOSSES}


def output_kernel_name(params: dict) -> str:
    """The variable whose rows are the item vectors (the input table when embeddings are tied)."""
    return ITEM_EMBEDDINGS if params["tie_embeddings"] else F.SOFTMAX_KERNEL


def next_values(history: tf.Tensor, values: tf.Tensor, last: tf.Tensor, pad_value) -> tf.Tensor:
    """Per slot, the value of what the slot predicts: slot i + 1's, the label's at the last.

    Args:
        history: [batch, L] int64, PAD (-1) after the last real item.
        values: [batch, L] per-slot values aligned with `history` (items, ages...).
        last: [batch] the label's value.
        pad_value: what fills the column shifted in at the end.

    Returns:
        [batch, L]: slot i < length - 1 gets values[i + 1]; the last real slot and every slot
        after it (all of them for an empty history) get `last`.
    """
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(history, encoders.PAD), tf.int32), axis=1)
    pad_column = tf.fill([tf.shape(values)[0], 1], tf.constant(pad_value, values.dtype))
    following = tf.concat([values[:, 1:], pad_column], 1)
    slots = tf.range(tf.shape(history)[1])[tf.newaxis, :]
    return tf.where(
        slots >= (lengths - 1)[:, tf.newaxis],
        tf.broadcast_to(last[:, tf.newaxis], tf.shape(values)),
        following,
    )


def per_position_targets(
    history: tf.Tensor, labels: tf.Tensor, per_position: tf.Tensor, user_vector: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pairs every real history slot with the item that follows it.

    Slot i of a history predicts slot i + 1; the last real slot predicts the label. A row with an
    empty history contributes its user vector (the empty-history vector) -> label.

    Args:
        history: [batch, L] int64, PAD (-1) after the last real item.
        labels: [batch] int64, the item after the history.
        per_position: [batch, L, dim] causal encoder outputs.
        user_vector: [batch, dim].

    Returns:
        (vectors [n, dim], targets [n] int64), n = real slots + empty histories in the batch.
    """
    vectors, window = per_position_window_targets(history, labels, per_position, user_vector, 1)
    return vectors, window[:, 0]


def following_items(history: tf.Tensor, labels: tf.Tensor, horizon: int) -> tf.Tensor:
    """Per slot, the next `horizon` items of the user's sequence (the history, then the label).

    Args:
        history: [batch, L] int64, PAD (-1) after the last real item.
        labels: [batch] int64, the item after the history.
        horizon: how many following items each slot gets (1 = `next_values`'s items).

    Returns:
        [batch, L, horizon] int64: slot i's column d is the sequence's item i + 1 + d, PAD where
        the sequence (which ends at the label) has none.
    """
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(history, encoders.PAD), tf.int32), axis=1)
    batch, width = tf.shape(history)[0], tf.shape(history)[1]
    # `horizon` PADs after the history, so every column's slice is L wide, even where a batch's
    # histories are all shorter than the horizon.
    padded = tf.concat([history, tf.fill([batch, horizon], tf.constant(encoders.PAD, tf.int64))], 1)
    slots = tf.range(width + horizon)[tf.newaxis, :]
    sequence = tf.where(
        tf.equal(slots, lengths[:, tf.newaxis]),
        tf.broadcast_to(labels[:, tf.newaxis], tf.shape(padded)),
        padded,
    )  # [batch, L + horizon]: the history with the label written after its last item.
    columns = [sequence[:, offset : offset + width] for offset in range(1, horizon + 1)]
    return tf.stack(columns, axis=2)


def per_position_window_targets(
    history: tf.Tensor,
    labels: tf.Tensor,
    per_position: tf.Tensor,
    user_vector: tf.Tensor,
    horizon: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`per_position_targets` with each slot's next `horizon` items instead of the next one.

    Returns:
        (vectors [n, dim], targets [n, horizon] int64): the real slots in row-major order, then
        the empty histories' user vectors; column 0 is the next item (the label for the last
        real slot and for an empty history), later columns PAD past the sequence's end.
    """
    real = tf.not_equal(history, encoders.PAD)
    lengths = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
    where = tf.where(real)
    empty = tf.equal(lengths, 0)
    vectors = tf.concat(
        [tf.gather_nd(per_position, where), tf.boolean_mask(user_vector, empty)], axis=0
    )
    empty_targets = tf.pad(
        tf.boolean_mask(labels, empty)[:, tf.newaxis],
        [[0, 0], [0, horizon - 1]],
        constant_values=encoders.PAD,
    )
    window = tf.gather_nd(following_items(history, labels, horizon), where)
    return vectors, tf.concat([window, empty_targets], 0)


def _dense_like(values, history: tf.Tensor, default) -> tf.Tensor:
    """A per-slot feature as dense [batch, L], padded like `encoders.dense_history` pads."""
    if isinstance(values, tf.SparseTensor):
        values = tf.sparse.to_dense(values, default_value=default)
    width = tf.shape(history)[1] - tf.shape(values)[1]
    return tf.pad(values, [[0, 0], [0, width]], constant_values=default)


def encoder_extras(features: dict, history: tf.Tensor, params: dict, mode) -> dict:
    """The optional mean_mlp inputs: {"user_vectors": [batch, du], "ages": [batch, L]}.

    The age of slot i is the example age of what slot i predicts. It is the real one while
    training; evaluation and serving predict for "now", age 0, as YouTube DNN does.
    """
    extras = {}
    if params["user_embedding"]:
        table = tf.compat.v1.get_variable(
            USER_EMBEDDINGS,
            [params["num_users"], params["user_embedding_dim"]],
            initializer=tf.compat.v1.truncated_normal_initializer(
                stddev=1.0 / params["user_embedding_dim"] ** 0.5
            ),
        )
        users = tf.reshape(tf.cast(features[F.USER_IDX], tf.int64), [-1])
        extras["user_vectors"] = tf.nn.embedding_lookup(table, users)
    if params["recency_feature"]:
        if mode == tf.estimator.ModeKeys.TRAIN:
            ages = _dense_like(features[F.HISTORY_AGE], history, 0.0)
            label_age = tf.reshape(features[F.LABEL_AGE], [-1])
            extras["ages"] = next_values(history, ages, label_age, 0.0)
        else:
            extras["ages"] = tf.zeros(tf.shape(history), tf.float32)
    return extras


def history_mask(history: tf.Tensor, num_classes: int) -> tf.Tensor:
    """[batch, num_classes] bool, True for the row's items (PAD-padded [batch, L] indices)."""
    rows = tf.broadcast_to(
        tf.range(tf.shape(history, out_type=tf.int64)[0])[:, tf.newaxis], tf.shape(history)
    )
    real = tf.not_equal(history, encoders.PAD)
    indices = tf.stack([tf.boolean_mask(rows, real), tf.boolean_mask(history, real)], axis=1)
    marked = tf.scatter_nd(
        indices,
        tf.ones([tf.shape(indices)[0]], tf.int32),
        tf.stack([tf.shape(history, out_type=tf.int64)[0], num_classes]),
    )
    return marked > 0


def learning_rate(params: dict):
    """Constant, or decayed linearly to `learning_rate * lr_decay_floor` over `decay_steps`
    global steps from `decay_start_step` (a warm refit resumes the fit's global step)."""
    base = params["learning_rate"]
    steps = params["decay_steps"]
    if steps <= 0:
        return base
    start = params["decay_start_step"]
    return tf.compat.v1.train.polynomial_decay(
        base,
        tf.maximum(tf.compat.v1.train.get_global_step() - start, 0),
        steps,
        end_learning_rate=base * params["lr_decay_floor"],
    )


def holdout_ranks(
    scores: tf.Tensor, labels: tf.Tensor, excluded: tf.Tensor, vocab_size: int
) -> tf.Tensor:
    """The 1-based rank of each held-out item among the items Recall would return.

    Ranks as Recall and Evaluate do: only catalog items (OOV buckets are no items, and an OOV
    label is never ranked), with every visited item excluded, ties going to the lower index.

    Args:
        scores: [batch, num_classes] logits.
        labels: [batch] int64 held-out item indices.
        excluded: [batch, num_classes] bool, the row's visited items.
        vocab_size: the catalog size; indices from it on are OOV buckets.

    Returns:
        [batch] int64; a label Recall could never return (OOV or visited) gets NOT_RANKED.
    """
    columns = tf.range(tf.shape(scores, out_type=tf.int64)[1])[tf.newaxis, :]
    allowed = tf.logical_and(tf.logical_not(excluded), columns < vocab_size)
    label_scores = tf.gather(scores, labels, batch_dims=1)[:, tf.newaxis]
    ahead = tf.logical_or(
        scores > label_scores,
        tf.logical_and(tf.equal(scores, label_scores), columns < labels[:, tf.newaxis]),
    )
    rank = 1 + tf.reduce_sum(tf.cast(tf.logical_and(ahead, allowed), tf.int64), axis=1)
    rankable = tf.logical_and(labels < vocab_size, tf.gather(allowed, labels, batch_dims=1))
    return tf.where(rankable, rank, tf.constant(NOT_RANKED, tf.int64))


def holdout_metrics(ranks: tf.Tensor) -> dict[str, tf.Tensor]:
    """Per-row early-stopping metrics from `holdout_ranks`: {name: [batch] float32}.

    `hit_rate_at_K` (the blessing K) and `ndcg_at_10`, as Evaluate computes them for one target.
    """
    ranks_f = tf.cast(ranks, tf.float32)
    ndcg = tf.where(
        ranks <= EARLY_STOPPING_NDCG_K, tf.math.log(2.0) / tf.math.log(ranks_f + 1.0), 0.0
    )
    return {
        EARLY_STOPPING_METRICS[BLESSING_METRIC]: tf.cast(ranks <= BLESSING_K, tf.float32),
        EARLY_STOPPING_METRICS[EARLY_STOPPING_NDCG]: ndcg,
    }


class LazyAdamOptimizer(tf.compat.v1.train.AdamOptimizer):
    """Adam that, for a sparse gradient, updates the slots and the variable on the touched rows
    only (as TF 1's contrib `LazyAdamOptimizer`). tf.compat.v1's Adam decays both slots over the
    whole table on every step, which at 424k items made a step 10 times dearer than at 79k.
    Dense gradients are Adam's own. Duplicate indices are summed by the base class first."""

    def _apply_sparse_shared(self, grad, var, indices, scatter_update):
        beta1_power, beta2_power = self._get_beta_accumulators()
        dtype = var.dtype.base_dtype
        beta1_power = tf.cast(beta1_power, dtype)
        beta2_power = tf.cast(beta2_power, dtype)
        lr_t = tf.cast(self._lr_t, dtype)
        beta1_t = tf.cast(self._beta1_t, dtype)
        beta2_t = tf.cast(self._beta2_t, dtype)
        epsilon_t = tf.cast(self._epsilon_t, dtype)
        lr = lr_t * tf.sqrt(1 - beta2_power) / (1 - beta1_power)
        m = self.get_slot(var, "m")
        v = self.get_slot(var, "v")
        m_rows = beta1_t * tf.gather(m, indices) + (1 - beta1_t) * grad
        v_rows = beta2_t * tf.gather(v, indices) + (1 - beta2_t) * tf.square(grad)
        m_t = scatter_update(m, indices, m_rows)
        v_t = scatter_update(v, indices, v_rows)
        with tf.control_dependencies([m_t, v_t]):
            step = lr * m_rows / (tf.sqrt(v_rows) + epsilon_t)
            var_update = scatter_update(var, indices, tf.gather(var, indices) - step)
        return tf.group(var_update, m_t, v_t)

    def _apply_sparse(self, grad, var):
        return self._apply_sparse_shared(
            grad.values,
            var,
            grad.indices,
            lambda x, i, v: tf.compat.v1.scatter_update(x, i, v, use_locking=self._use_locking),
        )

    def _resource_apply_sparse(self, grad, var, indices):
        return self._apply_sparse_shared(grad, var, indices, _resource_scatter_update)


def _resource_scatter_update(x, i, v):
    with tf.control_dependencies([x.scatter_update(tf.IndexedSlices(v, i))]):
        return x.value()


def make_optimizer(name: str, lr):
    """The trainer's optimizer by its config name (`options.OPTIMIZERS`)."""
    if name == "lazy_adam":
        return LazyAdamOptimizer(lr, beta2=0.98)
    if name == "adam":
        return tf.compat.v1.train.AdamOptimizer(lr, beta2=0.98)
    raise ValueError(f"trainer.optimizer must be one of {options.OPTIMIZERS}, got {name!r}")


def member_scope(member: int) -> str:
    """The variable-name prefix of ensemble member `member`: "" for the first, so a one-member
    model keeps the names it always had (and warm-starts from older checkpoints)."""
    return "" if member == 0 else f"member_{member}/"


def item_row_names(params: dict) -> list[tuple[str, str]]:
    """(output kernel, softmax bias) variable names of each ensemble member, in member order."""
    return [
        (member_scope(m) + output_kernel_name(params), member_scope(m) + F.SOFTMAX_BIAS)
        for m in range(params["ensemble_size"])
    ]


@dataclasses.dataclass(frozen=True)
class _Member:
    """One ensemble member's tensors."""

    user_vector: tf.Tensor  # [batch, dim]
    per_position: tf.Tensor  # [batch, L, dim]
    item_embeddings: tf.Tensor  # [num_classes, dim]
    kernel: tf.Tensor  # [num_classes, dim]
    bias: tf.Tensor  # [num_classes]


def _member(history: tf.Tensor, extras: dict, params: dict, training: bool) -> _Member:
    """Builds one member's variables (in the current variable scope) and its encoder."""
    num_classes = params["num_classes"]
    dim = params["embedding_dim"]
    item_embeddings = tf.compat.v1.get_variable(
        ITEM_EMBEDDINGS,
        [num_classes, dim],
        initializer=tf.compat.v1.truncated_normal_initializer(stddev=1.0 / dim**0.5),
    )
    encoder_kwargs = dict(params["encoder_options"])
    if params["encoder"] == options.SELF_ATTENTION:
        encoder_kwargs["attention_dropout"] = (
            params["dropout"] if params["dropout_attention"] else 0.0
        )
    user_vector, per_position = ENCODERS[params["encoder"]](
        history,
        item_embeddings,
        params["hidden_units"],
        dim,
        params["dropout"],
        training,
        **encoder_kwargs,
        **extras,
    )
    with tf.compat.v1.variable_scope("softmax"):
        if params["tie_embeddings"]:
            kernel = item_embeddings
        else:
            kernel = tf.compat.v1.get_variable(
                "kernel",
                [num_classes, dim],
                initializer=tf.compat.v1.truncated_normal_initializer(stddev=1.0 / dim**0.5),
            )
        # Stored [num_classes, 1]: warm start remaps a variable's rows by vocabulary only for a
        # matrix (tf.estimator.VocabInfo), and the bias must follow its item like the kernel.
        bias_rows = tf.compat.v1.get_variable(
            "bias", [num_classes, 1], initializer=tf.zeros_initializer()
        )
    return _Member(user_vector, per_position, item_embeddings, kernel, tf.reshape(bias_rows, [-1]))


def _member_loss(member: _Member, history: tf.Tensor, labels: tf.Tensor, params: dict):
    """One member's training loss (scalar): the chosen loss over its targets, plus its l2."""
    horizon = params["future_targets"]
    if params["objective"] == options.PER_POSITION and horizon > 1:
        vectors, window = per_position_window_targets(
            history, labels, member.per_position, member.user_vector, horizon
        )
        weights = tf.where(
            tf.equal(window, encoders.PAD),
            tf.zeros_like(window, tf.float32),
            tf.constant([1.0] + [params["future_target_weight"]] * (horizon - 1))[tf.newaxis, :],
        )
        per_row = losses.window_loss(
            LOSSES[params["loss"]],
            member.kernel,
            member.bias,
            window,
            weights,
            vectors,
            params["loss_context"],
        )
    else:
        if params["objective"] == options.PER_POSITION:
            vectors, targets = per_position_targets(
                history, labels, member.per_position, member.user_vector
            )
        else:
            vectors, targets = member.user_vector, labels
        per_row = LOSSES[params["loss"]](
            member.kernel, member.bias, targets, vectors, params["loss_context"]
        )
    loss = tf.reduce_mean(per_row)
    if params["l2"] > 0:
        loss += params["l2"] * (
            tf.nn.l2_loss(member.item_embeddings) + tf.nn.l2_loss(member.kernel)
        )
    return loss


def item_item_part(history: tf.Tensor, user_rows) -> tf.Tensor:
    """The item-item blend's part of a user vector: the sum of `user_rows` over the history's
    distinct items (`trainer/item_item.py`: scale * x_u P).

    Args:
        history: [batch, max_len] int64, PAD-padded.
        user_rows: [num_classes, r] float32 array (scale folded in), a constant of the graph.

    Returns:
        [batch, r] float32.
    """
    valid = tf.not_equal(history, encoders.PAD)
    # A repeated item counts once, as in EASE's 0/1 user rows: keep each item's first slot.
    same = tf.equal(history[:, :, None], history[:, None, :])
    length = tf.shape(history)[1]
    earlier = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(length, dtype=tf.bool)))
    repeated = tf.reduce_any(tf.logical_and(same, earlier[None]), axis=2)
    keep = tf.cast(tf.logical_and(valid, tf.logical_not(repeated)), tf.float32)
    rows = tf.gather(tf.constant(user_rows, tf.float32), tf.maximum(history, 0))
    return tf.reduce_sum(rows * keep[:, :, None], axis=1)


def model_fn(features, labels, mode, params):
    """Estimator model_fn.

    Args:
        features: {`history_idx`: SparseTensor or PAD-padded dense [batch, <=max_history] int64;
            with user_embedding `user_idx` [batch]; with recency_feature, while training,
            `history_age` (aligned with the history) and `label_age` [batch]}.
        labels: [batch] int64 target item indices (None when predicting).
        mode: a tf.estimator.ModeKeys.
        params: what `hparams.build_params` builds: num_classes, vocab_size, embedding_dim,
            ensemble_size, hidden_units, dropout, dropout_attention, future_targets,
            future_target_weight, encoder, encoder_options, objective, tie_embeddings, loss,
            loss_context (a losses.LossContext), learning_rate, decay_steps, decay_start_step,
            lr_decay_floor, l2, user_embedding, user_embedding_dim, recency_feature, and
            num_users with user_embedding; with the item-item blend
            ITEM_ITEM_USER_ROWS and ITEM_ITEM_ITEM_ROWS (prediction only).

    Returns:
        EstimatorSpec; predictions hold `user_vector` [batch, ensemble_size * embedding_dim
        (+ r with the item-item blend)]: the members' vectors side by side, then the blend's
        part. Training minimises the sum of the members' losses. Evaluation scores items by
        the sum of the members' logits and reports the exact full-softmax loss of each
        history's next item and the holdout metrics of `holdout_metrics` (HR at the blessing K,
        NDCG@10), ranked as Recall ranks: catalog items only, the user's visited items
        (`visited_idx` when given) excluded.
    """
    training = mode == tf.estimator.ModeKeys.TRAIN
    num_classes = params["num_classes"]
    history = encoders.dense_history(features[F.HISTORY_IDX])
    extras = encoder_extras(features, history, params, mode)
    members = []
    for member in range(params["ensemble_size"]):
        scope = member_scope(member)
        with tf.compat.v1.variable_scope(scope.rstrip("/")) if scope else contextlib.nullcontext():
            members.append(_member(history, extras, params, training))

    if mode == tf.estimator.ModeKeys.PREDICT:
        # The members' vectors side by side: with their kernels side by side (and their biases
        # summed, see export.py) one inner product is the sum of the members' logits.
        user_vector = tf.concat([m.user_vector for m in members], axis=1)
        if params.get(ITEM_ITEM_USER_ROWS) is not None:
            user_vector = tf.concat(
                [user_vector, item_item_part(history, params[ITEM_ITEM_USER_ROWS])], axis=1
            )
        return tf.estimator.EstimatorSpec(mode, predictions={F.USER_VECTOR: user_vector})

    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    if mode == tf.estimator.ModeKeys.EVAL:
        scores = tf.add_n([losses.logits(m.kernel, m.bias, m.user_vector) for m in members])
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)
        )
        # Exclude what Evaluate excludes: every visited item, not only the truncated history.
        visited = features.get(F.VISITED_IDX)
        excluded = encoders.dense_history(visited) if visited is not None else history
        ranks = holdout_ranks(
            scores, labels, history_mask(excluded, num_classes), params["vocab_size"]
        )
        return tf.estimator.EstimatorSpec(
            mode,
            loss=loss,
            eval_metric_ops={
                name: tf.compat.v1.metrics.mean(values)
                for name, values in holdout_metrics(ranks).items()
            },
        )

    # Each member minimises its own loss (its gradients never reach another member), so the
    # members are trained independently, on the same batches, from different initial values.
    loss = tf.add_n([_member_loss(m, history, labels, params) for m in members])
    optimizer = make_optimizer(params["optimizer"], learning_rate(params))
    update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
