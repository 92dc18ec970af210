"""Run configuration: defaults, a YAML/JSON file on top, then validation.

Every hyperparameter a component needs reaches it through `custom_config`, as the section of this
config that belongs to it, so the same values drive LocalDagRunner, Kubeflow and Airflow runs.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "pipeline_name": "offline-recall",
    "ingest": {
        # Ids longer than this many UTF-8 bytes are quarantined.
        "max_id_bytes": 256,
        # The run fails when quarantined / read rows exceeds this.
        "max_bad_fraction": 0.01,
        # Timestamps later than "now" plus this many seconds are quarantined as future.
        "future_tolerance_seconds": 0,
        # "now" for the future check, epoch seconds; null means the wall clock at run start.
        "now": None,
        # For a folder of daily YYYY-MM-DD/ spans: read only the newest N spans (null = all).
        "max_spans": None,
    },
    "validation": {
        # Fail the run when ExampleValidator reports anomalies against schema/.
        "fail_on_anomalies": True,
    },
    "sequences": {
        # The most recent items a history (and a training sequence piece) keeps.
        "max_history": 50,
        # Users with at least this many events have their last event held out for evaluation.
        "min_events_for_holdout": 3,
    },
    "transform": {
        # Items seen fewer times than this in training map to OOV buckets.
        "min_count": 1,
        "num_oov_buckets": 1,
    },
    "trainer": {
        # "self_attention" (SASRec-style) or "mean_mlp" (YouTube DNN).
        "encoder": "self_attention",
        # "per_position": every history slot predicts the next item (one example per user
        # sequence piece); "last_position": one example per training event (sliding windows).
        "objective": "per_position",
        # "auto" = full_softmax up to full_softmax_max_classes items, else sampled_softmax;
        # or one of full_softmax, sampled_softmax, nce, in_batch.
        "loss": "auto",
        "full_softmax_max_classes": 5000,
        # Negatives per batch (sampled_softmax, nce), or the most in-batch candidates (in_batch).
        "num_sampled": 1000,
        # sampled_softmax / nce: "unigram" (TFT vocabulary counts) or "log_uniform".
        "sampler": "unigram",
        "sampler_distortion": 1.0,
        # in_batch only.
        "temperature": 1.0,
        "logq_correction": True,
        # Score items with the input embedding table (then it is what is exported). Tying halves
        # the item parameters; on MovieLens-100K it lifted HR@50 from 0.41 to 0.46.
        "tie_embeddings": True,
        "embedding_dim": 64,
        # mean_mlp's ReLU tower.
        "hidden_units": [128],
        # mean_mlp extras (YouTube DNN): a user-id embedding of this size fed to the tower ...
        "user_embedding": False,
        "user_embedding_dim": 32,
        # ... and the example age (log1p days before the newest training event) of each
        # target; serving predicts for "now", age 0.
        "recency_feature": False,
        "batch_size": 64,
        # The most epochs: an integer, or "auto" = enough epochs for the model to see
        # `auto_epoch_positions` training targets (a position is one next-item prediction), kept
        # in [5, 200]. That scales training with the data: MovieLens-100K (98k targets) gets 33
        # epochs, a 250k-event log 15. Early stopping on the holdout may end training sooner.
        "epochs": "auto",
        "auto_epoch_positions": 3_200_000,
        "eval_every_epochs": 5,
        # Stop after this many evaluations without a better holdout HR@50 (0 = never stop early).
        "early_stopping_patience": 2,
        # Stop after the evaluation that passes this many seconds of training (null = no limit).
        "max_train_seconds": None,
        "learning_rate": 0.003,
        # Decay the learning rate linearly to learning_rate * lr_decay_floor over `epochs`.
        "lr_decay": False,
        "lr_decay_floor": 0.1,
        "dropout": 0.3,
        "l2": 0.0,
        "seed": 42,
        # After Evaluate blesses the fit, train once more on every event, the held-out one
        # included, and publish that model (the blessing and metrics stay the fit's).
        "refit_on_holdout": False,
        # true: continue from the fit's best checkpoint; false: train anew from scratch.
        "refit_warm_start": True,
        # "auto" = eval_every_epochs when warm-starting, the fit's best epoch count from scratch.
        "refit_epochs": "auto",
        # self_attention only.
        "num_blocks": 2,
        "num_heads": 1,
    },
    "recall": {
        "top_n": 100,
        "batch_size": 512,
    },
    "evaluate": {
        "ks": [10, 50, 100],
        # Blessing: the model must reach this HR@50 ...
        "min_hr_at_50": 0.0,
        # ... and at least this fraction of the popularity baseline's HR@50 ...
        "min_ratio_to_popularity": 1.0,
        # ... and lose no more than this fraction of the last published run's HR@50.
        "max_regression": 0.10,
    },
    "publish": {
        # Releases kept beside the one `published` points to.
        "keep_releases": 2,
    },
    "synthetic": {
        "seed": 7,
        "num_users": 1500,
        "num_items": 800,
        "num_clusters": 20,
        "mean_events_per_user": 30,
    },
}


class ConfigError(ValueError):
    """A config file or value breaks a rule; the message names the key."""


def _merge(base: dict, override: dict, where: str) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown config key '{path}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
            merged[key] = _merge(base[key], value, path)
        else:
            merged[key] = value
    return merged


def _require(cond: bool, key: str, rule: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}' {rule}, got {value!r}")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Checks the values that later stages rely on; raises ConfigError naming the key."""
    ing, seq, tr = config["ingest"], config["sequences"], config["trainer"]
    _require(
        isinstance(ing["max_id_bytes"], int) and ing["max_id_bytes"] > 0,
        "ingest.max_id_bytes",
        "must be a positive integer",
        ing["max_id_bytes"],
    )
    _require(
        isinstance(ing["max_bad_fraction"], (int, float)) and 0 <= ing["max_bad_fraction"] <= 1,
        "ingest.max_bad_fraction",
        "must be in [0, 1]",
        ing["max_bad_fraction"],
    )
    _require(
        isinstance(seq["max_history"], int) and seq["max_history"] >= 1,
        "sequences.max_history",
        "must be an integer >= 1",
        seq["max_history"],
    )
    _require(
        isinstance(seq["min_events_for_holdout"], int) and seq["min_events_for_holdout"] >= 2,
        "sequences.min_events_for_holdout",
        "must be an integer >= 2",
        seq["min_events_for_holdout"],
    )
    _require(
        config["transform"]["min_count"] >= 1,
        "transform.min_count",
        "must be >= 1",
        config["transform"]["min_count"],
    )
    _require(
        config["transform"]["num_oov_buckets"] >= 1,
        "transform.num_oov_buckets",
        "must be >= 1",
        config["transform"]["num_oov_buckets"],
    )
    _require(
        tr["encoder"] in ("mean_mlp", "self_attention"),
        "trainer.encoder",
        "must be one of ['mean_mlp', 'self_attention']",
        tr["encoder"],
    )
    for key, allowed in (
        ("loss", ["auto", "full_softmax", "sampled_softmax", "nce", "in_batch"]),
        ("objective", ["per_position", "last_position"]),
        ("sampler", ["unigram", "log_uniform"]),
    ):
        _require(tr[key] in allowed, f"trainer.{key}", f"must be one of {allowed}", tr[key])
    for key in ("temperature", "sampler_distortion", "learning_rate"):
        _require(
            isinstance(tr[key], (int, float)) and tr[key] > 0,
            f"trainer.{key}",
            "must be a number > 0",
            tr[key],
        )
    _require(
        isinstance(tr["dropout"], (int, float)) and 0 <= tr["dropout"] < 1,
        "trainer.dropout",
        "must be in [0, 1)",
        tr["dropout"],
    )
    _require(
        tr["epochs"] == "auto" or (isinstance(tr["epochs"], int) and tr["epochs"] >= 1),
        "trainer.epochs",
        'must be "auto" or an integer >= 1',
        tr["epochs"],
    )
    _require(
        tr["refit_epochs"] == "auto"
        or (isinstance(tr["refit_epochs"], int) and tr["refit_epochs"] >= 1),
        "trainer.refit_epochs",
        'must be "auto" or an integer >= 1',
        tr["refit_epochs"],
    )
    for key in ("user_embedding", "recency_feature"):
        _require(
            not tr[key] or tr["encoder"] == "mean_mlp",
            f"trainer.{key}",
            "is a mean_mlp extra; it needs trainer.encoder mean_mlp",
            tr[key],
        )
    for key in (
        "refit_on_holdout",
        "refit_warm_start",
        "tie_embeddings",
        "lr_decay",
        "user_embedding",
        "recency_feature",
    ):
        _require(isinstance(tr[key], bool), f"trainer.{key}", "must be true or false", tr[key])
    for key in ("early_stopping_patience", "eval_every_epochs"):
        _require(
            isinstance(tr[key], int) and tr[key] >= 0,
            f"trainer.{key}",
            "must be an integer >= 0",
            tr[key],
        )
    _require(
        tr["max_train_seconds"] is None
        or (isinstance(tr["max_train_seconds"], (int, float)) and tr["max_train_seconds"] > 0),
        "trainer.max_train_seconds",
        "must be null or a number > 0",
        tr["max_train_seconds"],
    )
    _require(
        tr["encoder"] != "self_attention" or tr["embedding_dim"] % max(tr["num_heads"], 1) == 0,
        "trainer.num_heads",
        "must divide trainer.embedding_dim",
        tr["num_heads"],
    )
    for key in (
        "embedding_dim",
        "num_sampled",
        "batch_size",
        "auto_epoch_positions",
        "num_blocks",
        "num_heads",
        "full_softmax_max_classes",
        "user_embedding_dim",
    ):
        _require(
            isinstance(tr[key], int) and tr[key] >= 1,
            f"trainer.{key}",
            "must be an integer >= 1",
            tr[key],
        )
    _require(
        isinstance(config["recall"]["top_n"], int) and config["recall"]["top_n"] >= 1,
        "recall.top_n",
        "must be an integer >= 1",
        config["recall"]["top_n"],
    )
    return config


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Returns DEFAULTS, overlaid with the YAML/JSON file at `path` and then `overrides`."""
    config = copy.deepcopy(DEFAULTS)
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError(
                f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}"
            ) from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        config = _merge(config, loaded, "")
    if overrides:
        config = _merge(config, overrides, "")
    return validate(config)
