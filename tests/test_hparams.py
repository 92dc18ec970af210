"""From the trainer config to the model's params: auto loss, auto epochs, refit epochs, buckets."""

import dataclasses
import json

import pytest
import tensorflow as tf

from offline_recall.core import options
from offline_recall.core.config import TrainerConfig
from offline_recall.trainer import features as F
from offline_recall.trainer import hparams, inputs

DEFAULTS = TrainerConfig()


def test_auto_loss_is_full_softmax_for_small_catalogs_only():
    assert DEFAULTS.full_softmax_max_classes == 50_000
    assert hparams.choose_loss(DEFAULTS, 50_000) == "full_softmax"
    assert hparams.choose_loss(DEFAULTS, 50_001) == "sampled_softmax"
    assert hparams.choose_loss(dataclasses.replace(DEFAULTS, loss="nce"), 10) == "nce"


def test_bucket_boundaries_cover_up_to_max_history():
    assert inputs.bucket_boundaries(50) == [9, 17, 33]
    assert inputs.bucket_boundaries(8) == []


def test_auto_epochs_scale_with_the_training_targets():
    assert hparams.choose_epochs(DEFAULTS, 95_000) == 25  # MovieLens-100K
    assert hparams.choose_epochs(DEFAULTS, 220_000) == 11
    assert hparams.choose_epochs(DEFAULTS, 10) == 200
    assert hparams.choose_epochs(DEFAULTS, 10**9) == 5
    assert hparams.choose_epochs(dataclasses.replace(DEFAULTS, epochs=7), 98_000) == 7


@pytest.mark.parametrize(
    "name, value, mean_history, chosen",
    [
        ("dropout", "auto", 5.9, hparams.AUTO_DROPOUT_SPARSE),  # Amazon Beauty
        ("dropout", "auto", 19.99, hparams.AUTO_DROPOUT_SPARSE),
        ("dropout", "auto", 20.0, hparams.AUTO_DROPOUT_DENSE),
        ("dropout", "auto", 40.0, hparams.AUTO_DROPOUT_DENSE),  # MovieLens-100K
        ("dropout", 0.1, 5.9, 0.1),  # a number is taken as it is
        ("dropout", 0.0, 38.0, 0.0),
        ("future_targets", "auto", 5.9, hparams.AUTO_FUTURE_TARGETS_SPARSE),
        ("future_targets", "auto", 19.99, hparams.AUTO_FUTURE_TARGETS_SPARSE),
        ("future_targets", "auto", 20.0, hparams.AUTO_FUTURE_TARGETS_DENSE),
        ("future_targets", "auto", 40.0, hparams.AUTO_FUTURE_TARGETS_DENSE),
        ("future_targets", 2, 5.9, 2),
        ("refit_lr_decay", "auto", 5.9, True),
        ("refit_lr_decay", "auto", 19.99, True),
        ("refit_lr_decay", "auto", 20.0, False),
        ("refit_lr_decay", "auto", 40.0, False),
        ("refit_lr_decay", True, 40.0, True),
        ("refit_lr_decay", False, 5.9, False),
    ],
)
def test_sparsity_rules_choose_by_history_length(name, value, mean_history, chosen):
    """dropout rises, future targets fall back to the next item alone and a warm refit's
    learning rate decays on sparse logs."""
    choose = {
        "dropout": hparams.choose_dropout,
        "future_targets": hparams.choose_future_targets,
        "refit_lr_decay": hparams.choose_refit_lr_decay,
    }
    got, why = choose[name](dataclasses.replace(DEFAULTS, **{name: value}), mean_history)
    assert got == chosen
    assert (f"{mean_history:.1f} history items" in why) == (value == "auto")
    assert (
        why.endswith(f"so {json.dumps(chosen)}") or why == f"trainer.{name} is {json.dumps(value)}"
    )
    assert hparams.AUTO_DROPOUT_SPARSE > hparams.AUTO_DROPOUT_DENSE
    assert hparams.AUTO_FUTURE_TARGETS_SPARSE == 1 < hparams.AUTO_FUTURE_TARGETS_DENSE


def test_history_stats_count_examples_and_history_items(tmp_path):
    path = str(tmp_path / "train.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for history in ([4, 5, 6], [], [1, 2, 3, 4, 5]):
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=history))
            example = tf.train.Example(features=tf.train.Features(feature={F.HISTORY_IDX: feature}))
            writer.write(example.SerializeToString())
    stats = inputs.history_stats([path], {F.HISTORY_IDX: tf.io.VarLenFeature(tf.int64)})
    # The empty history still predicts one target.
    assert (stats.examples, stats.slots) == (3, 9)
    assert stats.positions(options.PER_POSITION) == 9
    assert stats.positions(options.LAST_POSITION) == 3
    assert stats.mean_history == 3.0


def test_refit_epochs_auto_follows_the_refit_mode():
    # Warm: eval_every_epochs (5) when those make refit_min_steps (350) steps ...
    assert hparams.refit_epochs(DEFAULTS, 25, 352)[0] == 5
    assert hparams.refit_epochs(DEFAULTS, 25, 70)[0] == 5
    # ... more when they do not (37 batches: 350 steps take 10 epochs) ...
    epochs, rule = hparams.refit_epochs(DEFAULTS, 25, 37)
    assert epochs == 10 and "wants 10 epochs" in rule
    assert hparams.refit_epochs(DEFAULTS, 25, 50)[0] == 7
    # ... but never more than twice as many.
    assert hparams.refit_epochs(DEFAULTS, 25, 2)[0] == 10
    assert hparams.refit_epochs(dataclasses.replace(DEFAULTS, refit_min_steps=0), 25, 2)[0] == 5
    from_scratch = dataclasses.replace(DEFAULTS, refit_warm_start=False)
    assert hparams.refit_epochs(from_scratch, 25, 2)[0] == 25
    assert hparams.refit_epochs(dataclasses.replace(DEFAULTS, refit_epochs=3), 25, 2) == (
        3,
        "refit_epochs",
    )


def test_params_come_from_the_config_alone():
    counts = [3.0, 2.0, 1.0]
    params = hparams.build_params(DEFAULTS, 2, 3, counts)
    assert "dropout" not in params and params["encoder"] == "self_attention"
    chosen = hparams.with_data_rules(params, dropout=0.25, future_targets=3)
    assert chosen["dropout"] == 0.25 and chosen["future_targets"] == 3
    assert "dropout" not in params and "future_targets" not in params
    assert params["loss_context"].num_sampled == DEFAULTS.num_sampled
    assert params["learning_rate"] == DEFAULTS.learning_rate and params["decay_steps"] == 0
    assert params["encoder_options"] == {"num_blocks": DEFAULTS.num_blocks, "num_heads": 1}
    decayed = hparams.with_lr_decay(params, True, 4, 10, start_step=7)
    assert decayed["decay_steps"] == 40 and decayed["decay_start_step"] == 7
    assert params["decay_steps"] == 0 and params["decay_start_step"] == 0
    assert hparams.with_lr_decay(params, False, 4, 10) is params
