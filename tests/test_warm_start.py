"""Warm start by item id: rows follow their item when its index moves, new items start fresh,
optimizer slots stay behind, and a changed architecture is refused with a reason."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from offline_recall.core import storage
from offline_recall.core.config import TrainerConfig
from offline_recall.trainer import features as F
from offline_recall.trainer import hparams, warm_start
from offline_recall.trainer import model as model_lib

OOV = 2
DIM = 8


def _params(vocab_size: int, config: TrainerConfig | None = None) -> dict:
    config = config or TrainerConfig(embedding_dim=DIM, num_blocks=1, loss="full_softmax")
    num_classes = vocab_size + OOV
    params = hparams.build_params(config, vocab_size, num_classes, np.ones(num_classes))
    return hparams.with_data_rules(params, dropout=0.0, future_targets=1)


def _write_vocab(path, keys: list[str]) -> str:
    path.write_text("".join(f"{k}\n" for k in keys))
    return str(path)


def _trained_checkpoint(tmp_path, params: dict) -> str:
    """A checkpoint of the model's variables at random values, with Adam slots beside them."""
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(1)
        tf.compat.v1.train.create_global_step()
        features = {F.HISTORY_IDX: tf.constant([[1, 2]], tf.int64)}
        spec = model_lib.model_fn(
            features, tf.constant([3], tf.int64), tf.estimator.ModeKeys.TRAIN, params
        )
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            # Non-zero biases, so "carried over" is not "still at the zero initializer".
            bias = [v for v in tf.compat.v1.global_variables() if v.op.name == F.SOFTMAX_BIAS][0]
            session.run(bias.assign(np.arange(1, bias.shape[0] + 1, dtype=np.float32)[:, None]))
            session.run(spec.train_op)
            prefix = str(tmp_path / "ckpt" / "model.ckpt")
            return tf.compat.v1.train.Saver().save(session, prefix)


@pytest.fixture()
def yesterday(tmp_path):
    """Yesterday's model over items a..e (index order = frequency order) and its source."""
    keys = ["a", "b", "c", "d", "e"]
    params = _params(len(keys))
    checkpoint = _trained_checkpoint(tmp_path, params)
    model_uri = str(tmp_path / "yesterday")
    vocab = _write_vocab(tmp_path / "old_vocab.txt", keys)
    warm_start.write_source(checkpoint, model_uri, vocab, params)
    return keys, checkpoint, model_uri


def test_rows_follow_their_item_new_items_start_fresh_and_slots_stay_behind(tmp_path, yesterday):
    old_keys, checkpoint, model_uri = yesterday
    # Today: frequencies reordered, "b" and "e" gone, "x" and "y" new.
    new_keys = ["d", "x", "a", "c", "y"]
    new_vocab = _write_vocab(tmp_path / "new_vocab.txt", new_keys)
    params = _params(len(new_keys))
    warm, facts = warm_start.settings(model_uri, new_vocab, len(new_keys), params)
    assert facts == {"used": True, "items_carried": 3, "items_new": 2, "items_dropped": 2}

    names = [model_lib.ITEM_EMBEDDINGS, F.SOFTMAX_BIAS, "empty_history"]
    start = warm_start.initial_values(warm, params, names, seed=5)
    old_rows = tf.train.load_variable(checkpoint, model_lib.ITEM_EMBEDDINGS)
    old_bias = tf.train.load_variable(checkpoint, F.SOFTMAX_BIAS)
    for new_index, key in enumerate(new_keys):
        if key in old_keys:
            old_index = old_keys.index(key)
            np.testing.assert_array_equal(
                start[model_lib.ITEM_EMBEDDINGS][new_index], old_rows[old_index]
            )
            assert start[F.SOFTMAX_BIAS][new_index] == old_bias[old_index]
        else:
            row = start[model_lib.ITEM_EMBEDDINGS][new_index]
            # Fresh: the model's own truncated normal (within 2 stddev), like no old row.
            assert np.all(np.abs(row) <= 2.0 / DIM**0.5) and np.any(row != 0)
            assert not any(np.array_equal(row, old) for old in old_rows)
            assert start[F.SOFTMAX_BIAS][new_index] == 0.0
    # "d" moved from index 3 to 0: the remap is by id, not by index.
    assert not np.array_equal(start[model_lib.ITEM_EMBEDDINGS][0], old_rows[0])
    # Other variables carry over by name.
    np.testing.assert_array_equal(
        start["empty_history"], tf.train.load_variable(checkpoint, "empty_history")
    )
    # The source holds the model's variables only: no Adam slots, no counters.
    saved = dict(tf.train.list_variables(os.path.join(model_uri, "warm_start", "model.ckpt")))
    assert model_lib.ITEM_EMBEDDINGS in saved
    assert not [n for n in saved if "Adam" in n or n in ("global_step", "beta1_power")]
    assert "Adam" in " ".join(n for n, _ in tf.train.list_variables(checkpoint))


def test_every_ensemble_members_rows_follow_their_item(tmp_path):
    config = TrainerConfig(embedding_dim=DIM, num_blocks=1, loss="full_softmax", ensemble_size=2)
    old_keys, new_keys = ["a", "b", "c"], ["c", "z", "a"]
    checkpoint = _trained_checkpoint(tmp_path, _params(len(old_keys), config))
    model_uri = str(tmp_path / "yesterday")
    old_vocab = _write_vocab(tmp_path / "old_vocab.txt", old_keys)
    warm_start.write_source(checkpoint, model_uri, old_vocab, _params(len(old_keys), config))
    params = _params(len(new_keys), config)
    warm, facts = warm_start.settings(
        model_uri, _write_vocab(tmp_path / "new.txt", new_keys), len(new_keys), params
    )
    assert facts["used"] and facts["items_carried"] == 2
    rows = [k for k, _ in model_lib.item_row_names(params)]
    assert rows == [model_lib.ITEM_EMBEDDINGS, "member_1/" + model_lib.ITEM_EMBEDDINGS]
    start = warm_start.initial_values(warm, params, rows, seed=5)
    for name in rows:
        old_rows = tf.train.load_variable(checkpoint, name)
        np.testing.assert_array_equal(start[name][0], old_rows[2])  # "c"
        np.testing.assert_array_equal(start[name][2], old_rows[0])  # "a"
    # The members are distinct models, not one table under two names.
    assert not np.array_equal(start[rows[0]], start[rows[1]])
    # A source written before ensemble_size existed is a one-member model: refused for two.
    info_path = os.path.join(model_uri, "warm_start", "warm_start.json")
    info = storage.read_json(info_path)
    del info["architecture"]["ensemble_size"]
    storage.write_json(info_path, info)
    warm, facts = warm_start.settings(model_uri, old_vocab, len(old_keys), _params(3, config))
    assert warm is None and facts["why_not"] == "the architecture changed (ensemble_size)"


def test_a_changed_architecture_is_refused_with_the_reason(tmp_path, yesterday):
    keys, _, model_uri = yesterday
    vocab = _write_vocab(tmp_path / "vocab.txt", keys)
    wider = TrainerConfig(embedding_dim=DIM * 2, num_blocks=1, loss="full_softmax")
    warm, facts = warm_start.settings(model_uri, vocab, len(keys), _params(len(keys), wider))
    assert warm is None and facts["why_not"] == "the architecture changed (embedding_dim)"
    mean_mlp = dataclasses.replace(wider, embedding_dim=DIM, encoder="mean_mlp")
    warm, facts = warm_start.settings(model_uri, vocab, len(keys), _params(len(keys), mean_mlp))
    assert warm is None and "encoder" in facts["why_not"]


def test_no_source_no_warm_start(tmp_path):
    vocab = _write_vocab(tmp_path / "vocab.txt", ["a"])
    warm, facts = warm_start.settings(str(tmp_path / "nothing"), vocab, 1, _params(1))
    assert warm is None and not facts["used"]
