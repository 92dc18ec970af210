"""Run config: defaults are valid, overrides merge, and a broken value names its key."""

import pytest

from offline_recall.pipeline import config as cfg
from offline_recall.trainer import task


def test_defaults_validate_and_reach_the_goal_settings():
    config = cfg.load()
    tr = config["trainer"]
    assert tr["encoder"] == "self_attention" and tr["objective"] == "per_position"
    assert tr["tie_embeddings"] and tr["loss"] == "auto"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"trainer": {"loss": "hinge"}}, "trainer.loss"),
        ({"trainer": {"objective": "middle"}}, "trainer.objective"),
        ({"trainer": {"sampler": "zipf"}}, "trainer.sampler"),
        ({"trainer": {"temperature": 0}}, "trainer.temperature"),
        ({"trainer": {"dropout": 1.0}}, "trainer.dropout"),
        ({"trainer": {"num_heads": 3}}, "trainer.num_heads"),
        ({"trainer": {"early_stopping_patience": -1}}, "trainer.early_stopping_patience"),
        ({"trainer": {"max_train_seconds": "soon"}}, "trainer.max_train_seconds"),
        ({"trainer": {"nonsense": 1}}, "trainer.nonsense"),
        ({"trainer": {"refit_epochs": 0}}, "trainer.refit_epochs"),
        ({"trainer": {"refit_on_holdout": "yes"}}, "trainer.refit_on_holdout"),
        ({"trainer": {"user_embedding": True}}, "trainer.user_embedding"),  # self_attention
        ({"trainer": {"encoder": "mean_mlp", "recency_feature": 1}}, "trainer.recency_feature"),
        ({"trainer": {"user_embedding_dim": 0}}, "trainer.user_embedding_dim"),
    ],
)
def test_bad_trainer_values_name_the_key(overrides, key):
    with pytest.raises(cfg.ConfigError, match=key.replace(".", r"\.")):
        cfg.load(None, overrides)


def test_auto_loss_is_full_softmax_for_small_catalogs_only():
    tr = cfg.load()["trainer"]
    assert task.choose_loss(tr, 5000) == "full_softmax"
    assert task.choose_loss(tr, 5001) == "sampled_softmax"
    assert task.choose_loss({**tr, "loss": "nce"}, 10) == "nce"


def test_bucket_boundaries_cover_up_to_max_history():
    assert task.bucket_boundaries(50) == [9, 17, 33]
    assert task.bucket_boundaries(8) == []


def test_auto_epochs_scale_with_the_training_targets():
    tr = cfg.load()["trainer"]
    assert task.choose_epochs(tr, 98_000) == 33
    assert task.choose_epochs(tr, 220_000) == 15
    assert task.choose_epochs(tr, 10) == 200 and task.choose_epochs(tr, 10**9) == 5
    assert task.choose_epochs({**tr, "epochs": 7}, 98_000) == 7


def test_refit_epochs_auto_follows_the_refit_mode():
    tr = cfg.load()["trainer"]
    fit = {"best_epochs": 25}
    assert task.refit_epochs(tr, fit) == tr["eval_every_epochs"]  # warm start
    assert task.refit_epochs({**tr, "refit_warm_start": False}, fit) == 25
    assert task.refit_epochs({**tr, "refit_epochs": 3}, fit) == 3
