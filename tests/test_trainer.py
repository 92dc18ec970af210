"""Trainer numerics: losses against hand-computed values, encoder masks, targets, export logits."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from offline_recall.core import model_artifact
from offline_recall.core.config import TrainerConfig
from offline_recall.trainer import encoders, export, hparams, losses, training
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

PAD = encoders.PAD

# A 4-item catalog in 2 dimensions, one row vector; hand-checkable scores u . w_i + b_i.
KERNEL = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]], np.float32)
BIAS = np.array([0.0, 0.5, -0.5, 0.25], np.float32)
U = np.array([[2.0, 1.0]], np.float32)
SCORES = U @ KERNEL.T + BIAS  # [[2.0, 1.5, 2.5, -1.25]]


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_full_softmax_matches_hand_value():
    ctx = losses.LossContext(num_classes=4)
    got = losses.full_softmax(KERNEL, BIAS, np.array([1]), U, ctx).numpy()
    want = -1.5 + _lse([2.0, 1.5, 2.5, -1.25])
    assert got == pytest.approx([want], rel=1e-6)


def test_full_softmax_gradients_equal_the_sparse_reference():
    # Written as logsumexp minus the label's score (see losses.full_softmax); its gradients with
    # respect to every input must be those of TF's own sparse cross-entropy.
    rng = np.random.default_rng(0)
    kernel = tf.Variable(rng.normal(size=(7, 3)).astype(np.float32))
    bias = tf.Variable(rng.normal(size=7).astype(np.float32))
    vectors = tf.Variable(rng.normal(size=(5, 3)).astype(np.float32))
    labels = np.array([0, 6, 3, 3, 1])
    with tf.GradientTape(persistent=True) as tape:
        got = losses.full_softmax(kernel, bias, labels, vectors, losses.LossContext(7))
        want = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.matmul(vectors, kernel, transpose_b=True) + bias
        )
        got_sum, want_sum = tf.reduce_sum(got), tf.reduce_sum(want)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    for var in (kernel, bias, vectors):
        np.testing.assert_allclose(
            tf.convert_to_tensor(tape.gradient(got_sum, var)).numpy(),
            tf.convert_to_tensor(tape.gradient(want_sum, var)).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def _fixed_samples(sampled, true_expected, sampled_expected):
    return (
        tf.constant(sampled, tf.int64),
        tf.constant([[true_expected]], tf.float32),
        tf.constant(sampled_expected, tf.float32),
    )


def _one_accidental_hit():
    """Label 1 with samples [2, 1, 3]: the second sample is the label itself, an accidental hit.

    Returns the context and the logQ-corrected hand logits (true, [kept negatives]).
    """
    ctx = losses.LossContext(
        num_classes=4,
        num_sampled=3,
        sampled_values=_fixed_samples([2, 1, 3], 0.5, [0.25, 0.5, 2.0]),
    )
    return ctx, 1.5 - math.log(0.5), [2.5 - math.log(0.25), -1.25 - math.log(2.0)]


def test_sampled_softmax_matches_hand_value_and_removes_accidental_hits():
    ctx, true_logit, kept = _one_accidental_hit()
    got = losses.sampled_softmax(KERNEL, BIAS, np.array([1]), U, ctx).numpy()
    want = -true_logit + _lse([true_logit, *kept])
    assert got == pytest.approx([want], rel=1e-5)


def test_nce_matches_hand_value():
    ctx, true_logit, negatives = _one_accidental_hit()
    got = losses.nce(KERNEL, BIAS, np.array([1]), U, ctx).numpy()
    want = -math.log(_sigmoid(true_logit)) - sum(math.log(1 - _sigmoid(x)) for x in negatives)
    assert got == pytest.approx([want], rel=1e-5)


def test_in_batch_applies_temperature_logq_and_masks_accidental_hits():
    # Two rows; candidates are the batch's labels [1, 1, 2]: for row 0 (label 1) both 1s are hits.
    vectors = np.array([[2.0, 1.0], [0.0, 1.0]], np.float32)
    counts = np.array([10.0, 30.0, 50.0, 10.0])
    q = counts / counts.sum()
    temperature = 0.5
    ctx = losses.LossContext(
        num_classes=4,
        item_counts=counts,
        temperature=temperature,
        sampled_values=(tf.constant([1, 1, 2], tf.int64), None, None),
    )
    got = losses.in_batch(KERNEL, BIAS, np.array([1, 2]), vectors, ctx).numpy()
    scores = vectors @ KERNEL.T + BIAS

    def corrected(row, item):
        return scores[row, item] / temperature - math.log(q[item])

    # Row 0: positive 1; candidates 1, 1 are accidental hits, 2 remains.
    row0 = -corrected(0, 1) + _lse([corrected(0, 1), corrected(0, 2)])
    # Row 1: positive 2; candidates 1, 1 are negatives (twice), candidate 2 is a hit.
    row1 = -corrected(1, 2) + _lse([corrected(1, 2), corrected(1, 1), corrected(1, 1)])
    assert got == pytest.approx([row0, row1], rel=1e-5)

    # Without the correction the value changes, so the test above does exercise it.
    ctx.logq_correction = False
    plain = losses.in_batch(KERNEL, BIAS, np.array([1, 2]), vectors, ctx).numpy()
    assert abs(plain[0] - row0) > 1e-3


def test_in_batch_candidates_are_batch_labels_capped_at_num_sampled():
    ctx = losses.LossContext(num_classes=100, num_sampled=3, seed=1)
    labels = tf.constant([5, 6, 7, 8, 9], tf.int64)
    got = losses.in_batch_candidates(labels, ctx).numpy()
    assert len(got) == 3 and set(got) <= {5, 6, 7, 8, 9} and len(set(got)) == 3


def test_unigram_sampler_draws_only_items_with_counts():
    counts = np.array([0.0, 100.0, 0.0, 100.0, 0.0, 0.0])
    # Zero counts are raised to 1 (OOV buckets); make the real ones dominate.
    counts[[1, 3]] = 1e9
    ctx = losses.LossContext(num_classes=6, num_sampled=2, item_counts=counts, seed=3)
    sampled, _, expected = losses.sample_negatives(tf.constant([1], tf.int64), ctx)
    assert set(sampled.numpy()) == {1, 3}
    assert np.all(expected.numpy() > 0.9)


def _run_encoder(name, histories, **options):
    """Runs one encoder (weights from a fixed seed) on each history batch in one session."""
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        history = tf.compat.v1.placeholder(tf.int64, [None, None])
        table = tf.compat.v1.get_variable("items", [10, 8])
        user_vector, per_position = model_lib.ENCODERS[name](
            history, table, [16], 8, 0.5, False, **options
        )
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return [
                sess.run([user_vector, per_position], {history: np.array(h, np.int64)})
                for h in histories
            ]


@pytest.mark.parametrize("name", ["self_attention", "mean_mlp"])
def test_encoder_is_causal(name):
    before = [[1, 2, 3, 4, 5]]
    after = [[1, 2, 3, 9, 5]]  # slot 3 changes
    (_, seq_a), (_, seq_b) = _run_encoder(name, [before, after])
    np.testing.assert_allclose(seq_a[:, :3], seq_b[:, :3], atol=1e-6)
    assert np.abs(seq_a[:, 3:] - seq_b[:, 3:]).max() > 1e-4


@pytest.mark.parametrize("name", ["self_attention", "mean_mlp"])
def test_padding_does_not_change_the_user_vector(name):
    short = [[1, 2, 3], [4, PAD, PAD]]
    padded = [[1, 2, 3, PAD, PAD], [4, PAD, PAD, PAD, PAD]]
    (uv_a, _), (uv_b, _) = _run_encoder(name, [short, padded])
    np.testing.assert_allclose(uv_a, uv_b, atol=1e-6)
    # ... and the two users do differ, so equality above is not vacuous.
    assert np.abs(uv_a[0] - uv_a[1]).max() > 1e-4


def test_per_position_targets_pair_each_slot_with_the_next_item():
    history = tf.constant([[3, 4, 5], [6, PAD, PAD], [PAD, PAD, PAD]], tf.int64)
    labels = tf.constant([7, 8, 9], tf.int64)
    per_position = tf.reshape(tf.range(9, dtype=tf.float32), [3, 3, 1])
    user_vector = tf.constant([[100.0], [200.0], [300.0]])
    vectors, targets = model_lib.per_position_targets(history, labels, per_position, user_vector)
    assert targets.numpy().tolist() == [4, 5, 7, 8, 9]
    # Rows: slots (0,0), (0,1), (0,2), (1,0), then the empty history's user vector.
    assert vectors.numpy()[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 300.0]


def test_next_values_pair_each_slot_with_what_it_predicts():
    history = tf.constant([[3, 4, 5], [6, PAD, PAD], [PAD, PAD, PAD]], tf.int64)
    ages = tf.constant([[0.3, 0.4, 0.5], [0.6, 0.0, 0.0], [0.0, 0.0, 0.0]])
    label_ages = tf.constant([0.7, 0.8, 0.9])
    got = model_lib.next_values(history, ages, label_ages, 0.0).numpy()
    # Slot i gets slot i+1's age; the last real slot, padding after it, and every slot of an
    # empty history (which trains the empty-history vector) get the label's age.
    np.testing.assert_allclose(got, [[0.4, 0.5, 0.7], [0.8, 0.8, 0.8], [0.9, 0.9, 0.9]])


def test_following_items_give_each_slot_the_sequence_after_it():
    history = tf.constant([[3, 4, 5], [6, PAD, PAD], [PAD, PAD, PAD]], tf.int64)
    labels = tf.constant([7, 8, 9], tf.int64)
    got = model_lib.following_items(history, labels, 3).numpy()
    # The sequence is the history then the label; PAD past its end.
    assert got[0].tolist() == [[4, 5, 7], [5, 7, PAD], [7, PAD, PAD]]
    assert got[1, 0].tolist() == [8, PAD, PAD]
    # Horizon 1 is what per_position_targets pairs each slot with.
    nexts = model_lib.next_values(history, history, labels, PAD).numpy()
    ones = model_lib.following_items(history, labels, 1).numpy()[..., 0]
    assert ones[0].tolist() == nexts[0].tolist() and ones[1, 0] == nexts[1, 0]
    # A batch whose histories are all shorter than the horizon (a short last batch) keeps L slots.
    short = model_lib.following_items(history[1:, :1], labels[1:], 5).numpy()
    # (An empty history's slot is no real slot: per_position_window_targets gives it the label.)
    assert short.tolist() == [[[8, PAD, PAD, PAD, PAD]], [[PAD, PAD, PAD, PAD, PAD]]]
    longer = model_lib.following_items(history, labels, 6).numpy()
    assert longer[0, 0].tolist() == [4, 5, 7, PAD, PAD, PAD]


def test_window_targets_keep_per_position_rows_and_put_the_label_first_for_empty_rows():
    history = tf.constant([[3, 4, 5], [6, PAD, PAD], [PAD, PAD, PAD]], tf.int64)
    labels = tf.constant([7, 8, 9], tf.int64)
    per_position = tf.reshape(tf.range(9, dtype=tf.float32), [3, 3, 1])
    user_vector = tf.constant([[100.0], [200.0], [300.0]])
    vectors, window = model_lib.per_position_window_targets(
        history, labels, per_position, user_vector, 2
    )
    one_vectors, targets = model_lib.per_position_targets(
        history, labels, per_position, user_vector
    )
    assert window.numpy().tolist() == [[4, 5], [5, 7], [7, PAD], [8, PAD], [9, PAD]]
    assert window.numpy()[:, 0].tolist() == targets.numpy().tolist()
    assert vectors.numpy().tolist() == one_vectors.numpy().tolist()


@pytest.mark.parametrize("loss", ["full_softmax", "sampled_softmax"])
def test_window_loss_is_the_weighted_sum_of_the_loss_per_target(loss):
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(9, 4)).astype(np.float32)
    bias = rng.normal(size=9).astype(np.float32)
    vectors = rng.normal(size=(5, 4)).astype(np.float32)
    targets = rng.integers(0, 9, size=(5, 3))
    targets[1, 2] = PAD
    weights = np.array([[1.0, 0.5, 0.5]] * 5, np.float32)
    weights[1, 2] = 0.0
    ctx = losses.LossContext(
        num_classes=9, num_sampled=4, sampled_values=_fixed_samples([0, 2, 5, 7], 0.5, [0.5] * 4)
    )
    fn = getattr(losses, loss)
    got = losses.window_loss(fn, kernel, bias, targets, weights, vectors, ctx).numpy()
    # The reference: the loss itself, once per (row, target) of nonzero weight.
    want = np.zeros(5)
    for row in range(5):
        for col in range(3):
            if weights[row, col] > 0:
                one = fn(kernel, bias, targets[row, col : col + 1], vectors[row : row + 1], ctx)
                want[row] += weights[row, col] * one.numpy()[0]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    if loss == "full_softmax":
        scores = vectors @ kernel.T + bias
        log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        hand = -(weights * np.take_along_axis(log_p, np.maximum(targets, 0), axis=1)).sum(1)
        np.testing.assert_allclose(got, hand, rtol=1e-5)


def test_mean_mlp_extras_reach_the_user_vector_and_stay_causal():
    histories = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 9, 4]], np.int64)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        table = tf.compat.v1.get_variable("items", [10, 8])
        user_vectors = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        ages = tf.constant([[0.0, 1.0, 2.0, 3.0]] * 3)
        with tf.compat.v1.variable_scope("tower", reuse=tf.compat.v1.AUTO_REUSE):
            uv, per_position = encoders.mean_mlp(
                tf.constant(histories), table, [16], 8, 0.0, False, user_vectors, ages
            )
            older = encoders.mean_mlp(
                tf.constant(histories), table, [16], 8, 0.0, False, user_vectors, ages + 1.0
            )[0]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            uv, per_position, older = sess.run([uv, per_position, older])
    # Same history, other user embedding -> other user vector.
    assert np.abs(uv[0] - uv[1]).max() > 1e-4
    # The recency feature reaches the tower.
    assert np.abs(uv - older).max() > 1e-4
    # Still causal: row 2 differs from row 0 at slot 2 only, so slots 0-1 are equal.
    np.testing.assert_allclose(per_position[0, :2], per_position[2, :2], atol=1e-6)
    assert np.abs(per_position[0, 2:] - per_position[2, 2:]).max() > 1e-4


def test_example_age_is_log1p_days_before_the_newest_event_clipped_at_zero():
    from offline_recall.trainer import preprocessing

    newest = tf.constant(10 * 86400, tf.int64)
    times = tf.constant([10 * 86400, 10 * 86400 - int((math.e - 1) * 86400), 11 * 86400], tf.int64)
    got = preprocessing.example_age(times, newest).numpy()
    np.testing.assert_allclose(got, [0.0, 1.0, 0.0], atol=1e-5)


def test_canonical_copy_orders_examples_whatever_the_input_order(tmp_path):
    from offline_recall.trainer import inputs

    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                    "b": tf.train.Feature(int64_list=tf.train.Int64List(value=[i * 7 % 5])),
                }
            )
        )
        for i in range(20)
    ]
    outputs = []
    for name, order in (("fwd", examples), ("rev", examples[::-1])):
        folder = tmp_path / name
        folder.mkdir()
        for shard in range(2):
            path = str(folder / f"part-{shard}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for example in order[shard::2]:
                    writer.write(example.SerializeToString())
        (copy,) = inputs.canonical_copy(
            [str(folder / "*")], str(tmp_path / f"{name}.gz"), keep=["a"]
        )
        outputs.append([r.numpy() for r in tf.data.TFRecordDataset(copy, compression_type="GZIP")])
    assert outputs[0] == outputs[1] and len(outputs[0]) == 20
    # Only the kept feature survives, and the order is the order of its bytes.
    kept = [tf.train.Example.FromString(r) for r in outputs[0]]
    assert all(list(e.features.feature) == ["a"] for e in kept)
    assert outputs[0] == sorted(outputs[0])


def test_canonical_copy_samples_the_same_users_whatever_the_input_order(tmp_path):
    from offline_recall.trainer import inputs

    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"a": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            )
        ).SerializeToString()
        for i in range(500)
    ]
    kept = []
    for name, order in (("fwd", examples), ("rev", examples[::-1])):
        source = str(tmp_path / f"{name}-in.gz")
        with tf.io.TFRecordWriter(source, options="GZIP") as writer:
            for record in order:
                writer.write(record)
        (copy,) = inputs.canonical_copy([source], str(tmp_path / f"{name}.gz"), ["a"], 100)
        records = [r.numpy() for r in tf.data.TFRecordDataset(copy, compression_type="GZIP")]
        kept.append(records)
    assert kept[0] == kept[1] and len(kept[0]) == 100 and kept[0] == sorted(kept[0])
    values = [
        tf.train.Example.FromString(r).features.feature["a"].int64_list.value[0] for r in kept[0]
    ]
    # A sample across the whole range, not its first or last hundred.
    assert min(values) < 50 and max(values) > 450 and 150 < np.mean(values) < 350
    (whole,) = inputs.canonical_copy([source], str(tmp_path / "all.gz"), ["a"], 500)
    assert sum(1 for _ in tf.data.TFRecordDataset(whole, compression_type="GZIP")) == 500


def test_eval_batches_shrink_with_the_catalog():
    from offline_recall.trainer import inputs

    assert inputs.eval_batch_size(1_682) == inputs.EVAL_BATCH_SIZE
    assert inputs.eval_batch_size(424_028) == 79
    assert inputs.eval_batch_size(10**9) == 1
    for classes in (1_682, 40_000, 424_028, 5_000_000):
        assert inputs.eval_batch_size(classes) * classes <= max(
            inputs.EVAL_SCORES_PER_BATCH, classes
        )


def test_history_mask_marks_history_items():
    history = tf.constant([[0, 2, PAD], [PAD, PAD, PAD]], tf.int64)
    got = model_lib.history_mask(history, 4).numpy()
    assert got.tolist() == [[True, False, True, False], [False] * 4]


@pytest.mark.parametrize(
    "variant", ["untied", "tied", "mean_mlp_extras", "ensemble", "ensemble_item_item"]
)
def test_exported_vectors_reproduce_the_model_logits(tmp_path, variant):
    """user_vector from the SavedModel . exported item vector == the model's own logit (the
    sum of the members' logits for an ensemble), plus the item-item blend's score
    scale * x_u P Q^T (x_u the history's distinct items) when the params carry it."""
    rng = np.random.default_rng(0)
    num_classes, dim = 12, 8
    histories = rng.integers(0, num_classes, size=(32, 5))
    histories[::3, 3:] = PAD
    labels = rng.integers(0, num_classes, size=32)
    counts = np.arange(1, num_classes + 1, dtype=np.float64)
    users = rng.integers(0, 6, size=32)
    config = TrainerConfig(
        embedding_dim=dim,
        hidden_units=(16,),
        dropout=0.1,
        num_blocks=1,
        num_heads=2,
        tie_embeddings=variant != "untied",
        loss="sampled_softmax",
        num_sampled=5,
        learning_rate=0.01,
        seed=1,
        future_targets=1,
    )
    if variant == "mean_mlp_extras":
        config = dataclasses.replace(
            config,
            encoder="mean_mlp",
            user_embedding=True,
            user_embedding_dim=4,
            recency_feature=True,
        )
    if variant.startswith("ensemble"):
        # Each slot also predicts the two items after its next (the window loss trains them).
        config = dataclasses.replace(config, ensemble_size=2, future_targets=3)
    params = hparams.build_params(config, num_classes - 1, num_classes, counts, num_users=6)
    params = hparams.with_data_rules(
        params, dropout=config.dropout, future_targets=config.future_targets
    )
    # A repeated history item, which the blend counts once.
    histories[1, :3] = [4, 7, 4]
    user_rows = rng.normal(size=(num_classes, 3)).astype(np.float32)
    item_rows = rng.normal(size=(num_classes, 3)).astype(np.float32)
    expected_blend = np.zeros((len(histories), num_classes), np.float32)
    for n, history in enumerate(histories):
        distinct = sorted({int(h) for h in history if h != PAD})
        expected_blend[n] = user_rows[distinct].sum(axis=0) @ item_rows.T
    features = {"history_idx": histories}
    if variant == "mean_mlp_extras":
        features.update(
            {
                F.USER_IDX: users,
                F.HISTORY_AGE: rng.uniform(0, 3, size=histories.shape).astype(np.float32),
                F.LABEL_AGE: rng.uniform(0, 1, size=32).astype(np.float32),
            }
        )
    served = {k: features[k] for k in ("history_idx", F.USER_IDX) if k in features}

    def train_input():
        ds = tf.data.Dataset.from_tensor_slices((features, labels))
        return ds.repeat(3).batch(8)

    estimator = tf.estimator.Estimator(
        model_lib.model_fn,
        params=params,
        config=tf.estimator.RunConfig(model_dir=str(tmp_path / "run"), tf_random_seed=1),
    )
    estimator.train(train_input)
    if variant == "ensemble_item_item":
        trained_params = params
        params = {
            **params,
            model_lib.ITEM_ITEM_USER_ROWS: user_rows,
            model_lib.ITEM_ITEM_ITEM_ROWS: item_rows,
        }
        estimator = training.with_params(estimator, params)

    def receiver():
        inputs = {
            "history_idx": tf.compat.v1.placeholder(tf.int64, [None, None], name="history"),
        }
        if F.USER_IDX in served:
            inputs[F.USER_IDX] = tf.compat.v1.placeholder(tf.int64, [None], name="user")
        return tf.estimator.export.ServingInputReceiver(inputs, inputs)

    exported = estimator.export_saved_model(str(tmp_path / "serving"), receiver).decode()
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    user_vectors = serve(**{k: tf.constant(v) for k, v in served.items()})["user_vector"].numpy()

    checkpoint = estimator.latest_checkpoint()
    kernel, bias = export.read_item_rows(checkpoint, params)
    blend_dim = 3 if variant == "ensemble_item_item" else 0
    assert kernel.shape == (num_classes, config.ensemble_size * dim + blend_dim)
    table = export.item_vectors_table(
        [F.encode_id(f"i{n}".encode()) for n in range(num_classes)], kernel, bias, {}
    )
    items = np.asarray(table.column("vector").to_pylist(), np.float32)
    published = model_artifact.augment_user_vectors(user_vectors) @ items.T

    # The model's own logits, from the graph that training built, at the same checkpoint: each
    # member's user vector (its slice of the prediction) against its own kernel and bias.
    with tf.Graph().as_default():
        spec = model_lib.model_fn(
            {k: tf.constant(v) for k, v in served.items()},
            None,
            tf.estimator.ModeKeys.PREDICT,
            params,
        )
        variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
        assert len(variables) == len(set(variables))
        logits = tf.add_n(
            [
                losses.logits(
                    variables[kernel_name],
                    tf.reshape(variables[bias_name], [-1]),
                    spec.predictions["user_vector"][:, m * dim : (m + 1) * dim],
                )
                for m, (kernel_name, bias_name) in enumerate(model_lib.item_row_names(params))
            ]
        )
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, checkpoint)
            model_logits = sess.run(logits)
    if variant == "ensemble_item_item":
        model_logits = model_logits + expected_blend
        notes = hparams.vector_notes(params)
        assert "3-d item row" in notes["item_vector"]
        assert "item-item" not in str(hparams.vector_notes(trained_params))
    np.testing.assert_allclose(published, model_logits, rtol=1e-4, atol=1e-4)
    assert os.path.isdir(exported)


@pytest.mark.parametrize(
    "start, steps",
    [(0, (0, 50, 100, 150)), (1000, (1000, 1050, 1100, 1200))],  # a warm refit resumes at 1000
)
def test_learning_rate_decays_linearly_to_the_floor(start, steps):
    """From `decay_start_step`, linearly to the floor over `decay_steps`, then flat."""
    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        lr = model_lib.learning_rate(
            {
                "learning_rate": 0.01,
                "decay_steps": 100,
                "decay_start_step": start,
                "lr_decay_floor": 0.1,
            }
        )
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            got = []
            for value in steps:
                sess.run(step.assign(value))
                got.append(sess.run(lr))
    assert got == pytest.approx([0.01, 0.0055, 0.001, 0.001])
    assert model_lib.learning_rate({"learning_rate": 0.01, "decay_steps": 0}) == 0.01


def test_every_option_name_is_a_function_of_that_name():
    from offline_recall.core import options

    assert set(model_lib.ENCODERS) == set(options.ENCODERS)
    assert set(model_lib.LOSSES) == set(options.LOSSES)
    assert all(f.__name__ == name for name, f in model_lib.ENCODERS.items())
    assert all(f.__name__ == name for name, f in model_lib.LOSSES.items())


def test_holdout_ranks_rank_like_recall_visited_and_oov_excluded():
    # 4 catalog items + 1 OOV bucket (index 4). Scores, best first: 4 (OOV), 0, 1, 2, 3.
    scores = tf.constant([[5.0, 4.0, 3.0, 2.0, 9.0]] * 5 + [[1.0, 2.0, 2.0, 2.0, 0.0]] * 2)
    labels = tf.constant([2, 2, 1, 4, 0, 2, 1], tf.int64)
    visited = tf.constant(
        [[PAD, PAD], [0, 1], [PAD, PAD], [PAD, PAD], [0, PAD], [PAD, PAD], [PAD, PAD]],
        tf.int64,
    )
    excluded = model_lib.history_mask(visited, 5)
    ranks = model_lib.holdout_ranks(scores, labels, excluded, vocab_size=4).numpy()
    # Row 0: 0, 1 ahead of 2 (the OOV bucket takes no place). Row 1: 0 and 1 visited -> first.
    # Row 2: second. Row 3: an OOV label, row 4: a visited label, are never ranked.
    # Rows 5-6: items 1, 2, 3 tie; the lower index goes first, as Recall orders them.
    never = model_lib.NOT_RANKED
    assert ranks.tolist() == [3, 1, 2, never, never, 2, 1]
    metrics = {k: v.numpy() for k, v in model_lib.holdout_metrics(tf.constant(ranks)).items()}
    np.testing.assert_array_equal(metrics["hit_rate_at_50"], [1, 1, 1, 0, 0, 1, 1])
    np.testing.assert_allclose(
        metrics["ndcg_at_10"], [0.5, 1.0, 1 / np.log2(3), 0.0, 0.0, 1 / np.log2(3), 1.0], rtol=1e-6
    )
    # Beyond 10 NDCG@10 is 0; beyond the blessing K, HR is 0.
    far = {
        k: v.numpy() for k, v in model_lib.holdout_metrics(tf.constant([11, 51], tf.int64)).items()
    }
    assert far["ndcg_at_10"].tolist() == [0.0, 0.0]
    assert far["hit_rate_at_50"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("patience", "min_delta", "best_index", "stops_after"),
    [
        # Amazon Beauty's fit (test target, 12-07): epoch 15 beat epoch 10 by 0.0002.
        (2, 0.0, 2, 4),
        (2, 0.001, 1, 3),
        (1, 0.001, 1, 2),
        (1, 0.0, 2, 3),
    ],
)
def test_early_stopping_counts_only_gains_above_min_delta(
    patience, min_delta, best_index, stops_after
):
    scores = [0.1976, 0.2082, 0.2084, 0.2057, 0.2052]
    stopping = training.EarlyStopping(patience, min_delta)
    best, stopped = None, None
    for index, score in enumerate(scores):
        is_best, stop = stopping.update(score)
        if is_best:
            best = index
        if stop:
            stopped = index
            break
    assert (best, stopped) == (best_index, stops_after)


def _write_sequences(path, rng, num_users: int, num_classes: int) -> list[str]:
    """GZIP TFRecords of transformed examples: a history of 3-9 items and the next one."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for _ in range(num_users):
            start = int(rng.integers(0, num_classes))
            # Mostly "the next item id", so a model learns it within a few epochs.
            items = [(start + step) % num_classes for step in range(int(rng.integers(4, 11)))]
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        F.HISTORY_IDX: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=items[:-1])
                        ),
                        F.LABEL_IDX: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[items[-1]])
                        ),
                    }
                )
            )
            writer.write(example.SerializeToString())
    return [str(path)]


@pytest.fixture
def tiny_fit(tmp_path):
    """fit's arguments on 160 training and 40 holdout sequences over 40 items."""
    from offline_recall.trainer import inputs

    rng = np.random.default_rng(3)
    num_classes, batch = 40, 16
    spec = {
        F.HISTORY_IDX: tf.io.VarLenFeature(tf.int64),
        F.LABEL_IDX: tf.io.FixedLenFeature([], tf.int64),
    }
    train_files = _write_sequences(tmp_path / "train.gz", rng, 160, num_classes)
    eval_files = _write_sequences(tmp_path / "eval.gz", rng, 40, num_classes)
    config = TrainerConfig(embedding_dim=8, num_heads=1, learning_rate=0.01, seed=5)
    counts = np.ones(num_classes, np.float64)
    params = hparams.with_data_rules(
        hparams.build_params(config, num_classes - 1, num_classes, counts, None),
        dropout=0.1,
        future_targets=1,
    )

    def train_input(epochs, seed):
        return inputs.train_input_fn(train_files, spec, batch, epochs, seed, 10)

    def run(**overrides):
        kwargs = dict(
            seed=5,
            max_epochs=4,
            steps_per_epoch=160 / batch,
            eval_every_epochs=1,
            patience=10,
            min_delta=0.0,
            max_seconds=None,
            metric="ndcg_at_10",
        )
        kwargs.update(overrides)
        eval_input = inputs.eval_input_fn(eval_files, spec, num_classes)
        return training.fit(str(tmp_path / "run"), params, train_input, eval_input, **kwargs), (
            eval_input
        )

    return run


def _global_step(checkpoint: str) -> int:
    return int(tf.train.load_variable(checkpoint, "global_step"))


def test_fit_scores_the_holdout_in_session_as_its_kept_checkpoint_scores(tiny_fit):
    """The holdout scored inside the training session equals a fresh evaluation of the kept
    checkpoint, and the kept one is the best scored."""
    result, eval_input = tiny_fit()
    assert [p["epochs"] for p in result.history] == [1, 2, 3, 4]
    scores = [p["ndcg_at_10"] for p in result.history]
    best = result.history[scores.index(max(scores))]
    assert result.best_epochs == best["epochs"]
    assert result.epochs_trained == 4
    again = result.estimator.evaluate(eval_input, checkpoint_path=result.checkpoint)
    for name in ("ndcg_at_10", "hit_rate_at_50"):
        assert again[name] == pytest.approx(best[name], abs=1e-6)
    assert float(again["loss"]) == pytest.approx(best["eval_loss"], rel=1e-5)
    if best["epochs"] < 4:
        # A chunk ends at the first step past its epochs' share of the batches.
        assert _global_step(result.checkpoint) == math.ceil(best["epochs"] * 10)


def test_fit_stops_when_the_holdout_stops_improving(tiny_fit):
    """patience 1 and a min_delta no gain reaches: the first scoring is the best and the second
    stops training there."""
    result, _ = tiny_fit(patience=1, min_delta=1.0)
    assert [p["epochs"] for p in result.history] == [1, 2]
    assert (result.epochs_trained, result.best_epochs) == (2, 1)
    assert _global_step(result.checkpoint) == 10
    assert _global_step(result.estimator.latest_checkpoint()) == 20


def test_fit_stops_at_the_first_scoring_past_max_train_seconds(tiny_fit):
    result, _ = tiny_fit(max_seconds=0.0)
    assert [p["epochs"] for p in result.history] == [1]
    assert (result.epochs_trained, result.best_epochs) == (1, 1)
    assert _global_step(result.checkpoint) == 10


@pytest.mark.parametrize("dropout_attention", [True, False])
def test_dropout_attention_drops_attention_probabilities_only_when_asked(dropout_attention):
    """The attention layer gets the dropout rate (SASRec's) or none; serving never drops."""
    config = TrainerConfig(embedding_dim=8, dropout_attention=dropout_attention)
    params = hparams.with_data_rules(
        hparams.build_params(config, 11, 12, np.ones(12, np.float64), None),
        dropout=0.3,
        future_targets=1,
    )

    def attention_dropout_ops(mode):
        with tf.Graph().as_default() as graph:
            history = tf.constant([[1, 2, 3, PAD], [4, 5, PAD, PAD]], tf.int64)
            labels = None if mode == tf.estimator.ModeKeys.PREDICT else tf.constant([4, 6])
            model_lib.model_fn({F.HISTORY_IDX: history}, labels, mode, params)
            return [
                op.name
                for op in graph.get_operations()
                if "/attention/" in op.name and op.type == "RandomUniform"
            ]

    assert bool(attention_dropout_ops(tf.estimator.ModeKeys.TRAIN)) == dropout_attention
    assert attention_dropout_ops(tf.estimator.ModeKeys.PREDICT) == []


def test_training_and_holdout_inputs_run_without_tf_data_autotune(tmp_path):
    """Autotune's model thread made closing a training session wait up to a minute
    (`inputs._without_autotune`); no input stage tunes anything, so it stays off."""
    from offline_recall.trainer import inputs

    spec = {
        F.HISTORY_IDX: tf.io.VarLenFeature(tf.int64),
        F.LABEL_IDX: tf.io.FixedLenFeature([], tf.int64),
    }
    files = _write_sequences(tmp_path / "seq.gz", np.random.default_rng(0), 8, 12)
    train = inputs.train_input_fn(files, spec, 4, 1, 0, 10)()
    holdout = inputs.eval_input_fn(files, spec, 12)()
    for ds in (train, holdout):
        assert ds.options().autotune.enabled is False
    # ... and they still yield every record.
    assert sum(int(labels.shape[0]) for _, labels in train) == 8
    assert sum(int(labels.shape[0]) for _, labels in holdout) == 8
