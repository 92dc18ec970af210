"""The item-item blend: EASE against its textbook form, the factorisation, the weight rule."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from offline_recall.trainer import item_item
from offline_recall.trainer import model as model_lib
from offline_recall.trainer.encoders import PAD


def _random_rows(rng, users: int, items: int, per_user: int) -> list[np.ndarray]:
    return [
        rng.choice(items, size=rng.integers(1, per_user + 1), replace=False) for _ in range(users)
    ]


def test_ease_weights_match_the_closed_form_in_float64():
    rng = np.random.default_rng(0)
    rows = _random_rows(rng, 60, 15, 6)
    x = np.zeros((60, 15))
    for r, row in enumerate(rows):
        x[r, row] = 1.0
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(15))
    expected = np.eye(15) - p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    got = item_item.ease_weights(item_item.multi_hot(rows, 15), 3.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(np.diag(got) == 0)


def test_multi_hot_drops_duplicates_pad_and_out_of_range_indices():
    got = item_item.multi_hot([np.array([2, 2, PAD, 5, 9]), np.array([], np.int64)], 6)
    assert got.toarray().tolist() == [[0, 0, 1, 0, 0, 1], [0] * 6]


def test_low_rank_is_exact_at_full_rank_and_near_the_best_truncation_below():
    rng = np.random.default_rng(1)
    # A matrix whose spectrum decays, as an EASE matrix's does.
    u, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    v, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    matrix = ((u * 0.7 ** np.arange(40)) @ v.T).astype(np.float32)
    p, q = item_item.low_rank(matrix, 40, seed=0)
    np.testing.assert_allclose(p @ q.T, matrix, atol=1e-5)
    p, q = item_item.low_rank(matrix, 8, seed=0)
    assert p.shape == q.shape == (40, 8)
    best = np.linalg.norm(matrix - (u[:, :8] * 0.7 ** np.arange(8)) @ v[:, :8].T)
    assert np.linalg.norm(matrix - p @ q.T) <= best * 1.001


def test_history_sums_count_each_distinct_item_once():
    user_rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    histories = np.array([[1, 3, 1, PAD], [PAD, PAD, PAD, PAD]])
    got = item_item.history_sums(histories, user_rows)
    np.testing.assert_array_equal(got, [user_rows[1] + user_rows[3], [0, 0]])


def test_the_serving_graph_sums_the_same_rows_as_numpy():
    rng = np.random.default_rng(2)
    user_rows = rng.normal(size=(9, 4)).astype(np.float32)
    histories = np.array([[3, 5, 3, 8, PAD], [0, 0, 0, PAD, PAD], [PAD] * 5, [1, 2, 4, 6, 7]])
    got = model_lib.item_item_part(tf.constant(histories, tf.int64), user_rows).numpy()
    np.testing.assert_allclose(got, item_item.history_sums(histories, user_rows), rtol=1e-6)


def test_ndcg_at_10_ranks_the_label_among_unvisited_items_ties_against_it():
    scores = np.array([[5.0, 4.0, 3.0, 9.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 1.0, 3.0]])
    visited = item_item.multi_hot([np.array([3]), np.array([]), np.array([1])], 4)
    got = item_item.ndcg_at_10(scores, np.array([1, 2, 1]), visited)
    # User 0: item 3 is visited, so the label ranks 2nd; user 1: a four-way tie ranks it 4th;
    # user 2: the label is visited, a miss.
    np.testing.assert_allclose(got, [1 / np.log2(3), 1 / np.log2(5), 0.0])


def _holdout(rng, users: int, items: int):
    histories = rng.integers(0, items, size=(users, 4))
    labels = rng.integers(0, items, size=users)
    visited = item_item.multi_hot(list(histories), items)
    return item_item.Holdout(histories, labels, visited)


def test_choose_weight_takes_a_blend_that_finds_the_held_out_items():
    rng = np.random.default_rng(3)
    items, users = 50, 3000
    holdout = _holdout(rng, users, items)
    # The item-item part scores exactly each user's label: x_u P Q^T puts it on top.
    user_rows = np.eye(items, dtype=np.float32)
    item_rows = np.zeros((items, items), np.float32)
    first = holdout.histories[:, 0]
    labels = np.array(holdout.labels)
    for item in range(items):
        # Each label follows its history's first item; keep one label per first item.
        chosen = labels[first == item]
        if len(chosen):
            item_rows[chosen[0], item] = 1.0
            labels[first == item] = chosen[0]
    holdout = item_item.Holdout(holdout.histories, labels, holdout.visited)
    model = rng.normal(size=(users, items)).astype(np.float32)
    blocks = (model[s : s + item_item.BLOCK_USERS] for s in range(0, users, item_item.BLOCK_USERS))
    choice = item_item.choose_weight(blocks, holdout, user_rows, item_rows, (0.5, 2.0))
    assert choice.weight > 0
    assert set(choice.ndcg10) == {0.0, 0.5, 2.0}
    assert choice.gain > choice.gain_se > 0
    assert choice.scale == pytest.approx(choice.weight * choice.model_sd / choice.item_item_sd)


def test_choose_weight_keeps_the_model_alone_when_the_blend_is_noise():
    rng = np.random.default_rng(4)
    items, users = 40, 400
    holdout = _holdout(rng, users, items)
    # The model knows each label; the item-item part is noise.
    model = rng.normal(size=(users, items)).astype(np.float32)
    model[np.arange(users), holdout.labels] += 3.0
    user_rows = rng.normal(size=(items, 5)).astype(np.float32)
    item_rows = rng.normal(size=(items, 5)).astype(np.float32)
    choice = item_item.choose_weight(iter([model]), holdout, user_rows, item_rows, (0.5, 1.0))
    assert choice.weight == 0.0 and choice.scale == 0.0
    assert choice.ndcg10[0.0] >= max(choice.ndcg10.values()) - 1e-9 or "within" in choice.why


def test_holdout_readers_return_histories_labels_and_item_sets(tmp_path):
    from offline_recall.trainer import features as F
    from offline_recall.trainer import inputs

    path = str(tmp_path / "eval.gz")
    examples = [([4, 5], 6, [5, 4]), ([], 2, []), ([1, 2, 3], 0, [1, 2, 3, 7])]
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for history, label, visited in examples:
            feature = {
                F.HISTORY_IDX: history,
                F.LABEL_IDX: [label],
                F.VISITED_IDX: visited,
            }
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                        for k, v in feature.items()
                    }
                )
            )
            writer.write(example.SerializeToString())
    spec = {
        F.HISTORY_IDX: tf.io.VarLenFeature(tf.int64),
        F.LABEL_IDX: tf.io.FixedLenFeature([1], tf.int64),
        F.VISITED_IDX: tf.io.VarLenFeature(tf.int64),
    }
    histories, labels, visited = inputs.read_holdout([path], spec)
    assert histories.tolist() == [[4, 5, PAD], [PAD, PAD, PAD], [1, 2, 3]]
    assert labels.tolist() == [6, 2, 0]
    assert [v.tolist() for v in visited] == [[5, 4], [], [1, 2, 3, 7]]
    rows = inputs.item_sets([path], spec, with_label=True)
    assert [r.tolist() for r in rows] == [[5, 4, 6], [2], [1, 2, 3, 7, 0]]
    assert [r.tolist() for r in inputs.item_sets([path], spec, with_label=False)][0] == [5, 4]


def test_scale_for_puts_the_weight_in_units_of_the_model_spread():
    rng = np.random.default_rng(5)
    histories = rng.integers(0, 30, size=(50, 6))
    user_rows = rng.normal(size=(30, 4)).astype(np.float32)
    item_rows = rng.normal(size=(30, 4)).astype(np.float32)
    model = rng.normal(scale=3.0, size=(50, 30)).astype(np.float32)
    blend = item_item.history_sums(histories, user_rows) @ item_rows.T
    expected = 0.2 * model.std(axis=1).mean() / blend.std(axis=1).mean()
    got = item_item.scale_for(model, histories, user_rows, item_rows, 0.2)
    assert got == pytest.approx(expected, rel=1e-5)
    assert item_item.scale_for(model, histories, np.zeros_like(user_rows), item_rows, 0.2) == 0.0
