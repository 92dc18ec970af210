"""From the trainer config to the model's params: auto loss, auto epochs, refit epochs, buckets."""

import dataclasses

from offline_recall.core.config import TrainerConfig
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


def test_refit_epochs_auto_follows_the_refit_mode():
    assert hparams.refit_epochs(DEFAULTS, 25) == DEFAULTS.eval_every_epochs  # warm start
    assert hparams.refit_epochs(dataclasses.replace(DEFAULTS, refit_warm_start=False), 25) == 25
    assert hparams.refit_epochs(dataclasses.replace(DEFAULTS, refit_epochs=3), 25) == 3


def test_params_come_from_the_config_alone():
    counts = [3.0, 2.0, 1.0]
    params = hparams.build_params(DEFAULTS, 2, 3, counts)
    assert params["dropout"] == DEFAULTS.dropout and params["encoder"] == "self_attention"
    assert params["loss_context"].num_sampled == DEFAULTS.num_sampled
    assert params["learning_rate"] == DEFAULTS.learning_rate and params["decay_steps"] == 0
    assert params["encoder_options"] == {"num_blocks": DEFAULTS.num_blocks, "num_heads": 1}
    decayed = hparams.with_lr_decay(params, dataclasses.replace(DEFAULTS, lr_decay=True), 4, 10)
    assert decayed["decay_steps"] == 40 and params["decay_steps"] == 0
    assert hparams.with_lr_decay(params, DEFAULTS, 4, 10) is params
