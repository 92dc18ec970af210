"""Run configuration: one typed, frozen section per component, built once from defaults + file.

A config file (YAML or JSON) overrides any subset of the defaults below. `load` checks every key,
type and range, and raises `ConfigError` naming the key, before any stage runs. Each component then
receives only its own section (or, for the few facts it needs from another section, a params
object that names them, built here), serialized as JSON and parsed back strictly: every key must
be present, so no component falls back to a default of its own.

TF-free: the CLI checks a config without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from typing import Any, ClassVar, Literal

import yaml

from offline_recall.core import options
from offline_recall.core.contracts import BLESSING_K, EARLY_STOPPING_METRICS


class ConfigError(ValueError):
    """A config file or value breaks a rule; the message names the key."""


def _require(cond: bool, key: str, rule: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}' {rule}, got {value!r}")


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, Section):
        return "a mapping"
    return str(hint)


def _coerce(value: Any, hint, key: str, partial: bool) -> Any:
    """Returns `value` as the annotated type; ConfigError naming `key` when it is not one."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key, partial)
            except ConfigError:
                continue
    elif hint is type(None):
        if value is None:
            return None
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            item = typing.get_args(hint)[0]
            return tuple(_coerce(v, item, f"{key}[{i}]", partial) for i, v in enumerate(value))
    elif isinstance(hint, type) and issubclass(hint, Section):
        if isinstance(value, dict):
            return hint.from_mapping(value, partial=partial, where=key)
    raise ConfigError(f"config key '{key}' must be {_describe(hint)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Section:
    """A frozen config section. Subclasses declare typed fields and check ranges in `check`."""

    SECTION: ClassVar[str] = ""

    def key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name

    def check(self) -> None:
        """Raises ConfigError naming the key whose value is out of range."""

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def from_mapping(cls, data: dict, *, partial: bool = False, where: str | None = None):
        """Builds the section from a mapping.

        Args:
            data: {field: value}.
            partial: True for a user's file (missing keys take the defaults); False for what a
                component receives, which must hold every key.
            where: the key prefix errors name (default: the section's name).
        """
        where = cls.SECTION if where is None else where
        prefix = f"{where}." if where else ""
        if not isinstance(data, dict):
            raise ConfigError(f"config key '{where}' must be a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        for name in data:
            if name not in names:
                raise ConfigError(f"unknown config key '{prefix}{name}'")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name, partial)
            elif not partial or (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ):
                raise ConfigError(f"config key '{prefix}{f.name}' is missing")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str):
        """Parses what a component receives: every key present, checked as `load` checks."""
        return cls.from_mapping(json.loads(text), partial=False)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _positive_int(section: Section, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(value >= 1, section.key(name), "must be an integer >= 1", value)


Encoder = Literal[options.ENCODERS]  # type: ignore[valid-type]
Loss = Literal[options.LOSS_CHOICES]  # type: ignore[valid-type]
Sampler = Literal[options.SAMPLERS]  # type: ignore[valid-type]
Optimizer = Literal[options.OPTIMIZERS]  # type: ignore[valid-type]
Objective = Literal[options.OBJECTIVES]  # type: ignore[valid-type]
Auto = Literal[options.AUTO]  # type: ignore[valid-type]
TimestampUnit = Literal["auto", "s", "ms", "us"]
EarlyStoppingMetric = Literal[tuple(EARLY_STOPPING_METRICS)]  # type: ignore[valid-type]


@dataclasses.dataclass(frozen=True)
class IngestConfig(Section):
    SECTION: ClassVar[str] = "ingest"
    # Ids longer than this many UTF-8 bytes are quarantined.
    max_id_bytes: int = 256
    # The run fails when quarantined / read rows exceeds this.
    max_bad_fraction: float = 0.01
    # Timestamps later than "now" plus this many seconds are quarantined as future.
    future_tolerance_seconds: int = 0
    # "now" for the future check, epoch seconds; null means the wall clock at run start.
    now: int | None = None
    # For a folder of daily YYYY-MM-DD/ spans: read only the newest N spans up to the run date
    # (null = all): how far back users' histories reach.
    max_spans: int | None = None
    # The days, ending at the run date, a run trains on (null = all history): earlier events are
    # history only (histories, visited items, serving), never a training target. Events after
    # the run date are out of the window.
    window_days: int | None = None
    # A run date whose day folder is missing or empty is exit 2 and publishes nothing; true: the
    # run covers the earlier days of its window instead (and says so).
    allow_missing_run_date: bool = False
    # The unit of epoch timestamps: "s", "ms", "us", or "auto" = from each value's magnitude
    # (below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds); the summary counts
    # the units found. ISO 8601 strings are read as such whatever this says.
    timestamp_unit: TimestampUnit = "auto"
    # One large file is read by several workers in parts of about this many bytes (plain CSV:
    # at lines that certainly start a record; Parquet: between row groups). Line and row
    # numbers stay the whole file's. Gzipped CSV and TFRecord files are read whole.
    split_bytes: int = 64 * 2**20

    def check(self) -> None:
        _positive_int(self, "max_id_bytes", "split_bytes")
        _require(
            0 <= self.max_bad_fraction <= 1,
            self.key("max_bad_fraction"),
            "must be in [0, 1]",
            self.max_bad_fraction,
        )
        _require(
            self.future_tolerance_seconds >= 0,
            self.key("future_tolerance_seconds"),
            "must be >= 0",
            self.future_tolerance_seconds,
        )
        _require(self.now is None or self.now >= 0, self.key("now"), "must be >= 0", self.now)
        for name in ("max_spans", "window_days"):
            value = getattr(self, name)
            _require(
                value is None or value >= 1,
                self.key(name),
                "must be null or an integer >= 1",
                value,
            )


@dataclasses.dataclass(frozen=True)
class ValidationConfig(Section):
    SECTION: ClassVar[str] = "validation"
    # Fail the run when ExampleValidator reports anomalies against schema/.
    fail_on_anomalies: bool = True


@dataclasses.dataclass(frozen=True)
class SequencesConfig(Section):
    SECTION: ClassVar[str] = "sequences"
    # The most recent items a history (and a training sequence piece) keeps.
    max_history: int = 50
    # Users with at least this many events have their last event held out for evaluation.
    min_events_for_holdout: int = 3

    def check(self) -> None:
        _positive_int(self, "max_history")
        _require(
            self.min_events_for_holdout >= 2,
            self.key("min_events_for_holdout"),
            "must be an integer >= 2",
            self.min_events_for_holdout,
        )


@dataclasses.dataclass(frozen=True)
class TransformConfig(Section):
    SECTION: ClassVar[str] = "transform"
    # Items seen fewer times than this in training map to OOV buckets.
    min_count: int = 1
    num_oov_buckets: int = 1

    def check(self) -> None:
        _positive_int(self, "min_count", "num_oov_buckets")


@dataclasses.dataclass(frozen=True)
class TrainerConfig(Section):
    SECTION: ClassVar[str] = "trainer"
    # "self_attention" (SASRec-style) or "mean_mlp" (YouTube DNN).
    encoder: Encoder = options.SELF_ATTENTION
    # "per_position": every history slot predicts the next item (one example per user sequence
    # piece); "last_position": one example per training event (sliding windows).
    objective: Objective = options.PER_POSITION
    # "auto" = full_softmax up to full_softmax_max_classes items, else sampled_softmax; or one of
    # full_softmax, sampled_softmax, nce, in_batch.
    loss: Loss = options.AUTO_LOSS
    # Up to 50k items the exact softmax is cheap on CPU ([positions in a batch, items] floats)
    # and beats sampling: on Amazon Beauty (12k items) NDCG@10 +0.0047 +- 0.0008 on the
    # validation target (bench/quality.py; 0.0490 against 0.0443 with 1,000 unigram negatives).
    full_softmax_max_classes: int = 50_000
    # Negatives per batch (sampled_softmax, nce), or the most in-batch candidates (in_batch).
    num_sampled: int = 1000
    # sampled_softmax / nce: "unigram" (TFT vocabulary counts) or "log_uniform".
    sampler: Sampler = "unigram"
    sampler_distortion: float = 1.0
    # in_batch only.
    temperature: float = 1.0
    logq_correction: bool = True
    # Score items with the input embedding table (then it is what is exported). Tying halves the
    # item parameters; on MovieLens-100K it lifted HR@50 from 0.41 to 0.46.
    tie_embeddings: bool = True
    embedding_dim: int = 64
    # Independently initialised copies of the model trained side by side on the same batches,
    # each on its own loss; the published vectors put theirs side by side (dimension
    # ensemble_size x embedding_dim + 1), so a recall's score is the sum of their logits. Two
    # members against one, on the validation target (bench/quality.py, paired): MovieLens-100K
    # NDCG@10 +0.0111 +- 0.0023 (0.1006 -> 0.1116, 3 seeds), Amazon Beauty +0.0067 +- 0.0006
    # (0.0557 -> 0.0623); HR@50 +0.012 and +0.020. A training step computes two softmaxes.
    ensemble_size: int = 2
    # mean_mlp's ReLU tower.
    hidden_units: tuple[int, ...] = (128,)
    # mean_mlp extras (YouTube DNN): a user-id embedding of this size fed to the tower ...
    user_embedding: bool = False
    user_embedding_dim: int = 32
    # ... and the example age (log1p days before the newest training event) of each target;
    # serving predicts for "now", age 0.
    recency_feature: bool = False
    batch_size: int = 64
    # The most epochs: an integer, or "auto" = enough epochs for the model to see
    # `auto_epoch_positions` training targets (a position is one next-item prediction), kept in
    # [5, 200]. MovieLens-100K (95k targets) gets 25 epochs, a 250k-event log 10. Early stopping
    # on the holdout may end training sooner.
    epochs: int | Auto = options.AUTO
    # 2.4M rather than 3.2M: with one attention block the fit is at its best by ~25 epochs on
    # MovieLens-100K and ~10 on Amazon Beauty (validation target): with 3.2M two of three
    # MovieLens-100K seeds kept the same checkpoint after 9 epochs more.
    auto_epoch_positions: int = 2_400_000
    eval_every_epochs: int = 5
    # Early stopping scores at most this many holdout users (null = all): a uniform sample, the
    # same in every run. Each costs a pass over the catalog: 600k users x 424k items took 20 min.
    eval_max_users: int | None = 50_000
    # Stop after this many evaluations without a better holdout metric (0 = never stop early).
    # One: an evaluation is 5 epochs apart, and a second chance trained 5 more epochs (~2 min on
    # Amazon Beauty) that chose the same checkpoint on both shared logs but for one seed.
    early_stopping_patience: int = 1
    # A holdout score counts as better only if it beats the best by more than this (Keras's
    # min_delta), so a plateau's wiggles do not restart the patience: Amazon Beauty's fit once
    # trained 10 epochs more for a best 0.0002 HR@50 above the one before.
    early_stopping_min_delta: float = 0.002
    # The holdout metric early stopping maximises: "hr@50" (the blessing metric) or "ndcg@10".
    early_stopping_metric: EarlyStoppingMetric = "hr@50"
    # Stop after the evaluation that passes this many seconds of training (null = no limit).
    max_train_seconds: float | None = None
    learning_rate: float = 0.003
    # "lazy_adam" (slots and rows of the touched items only; a step costs O(batch)) or "adam"
    # (tf.compat.v1's: every step decays both slots and moves every row of a sparse table,
    # touched or not, so a step costs O(items x dim): 381 ms at 424k items against 5 ms). They
    # differ wherever a table's gradient reaches Adam as sparse rows (the default full-softmax
    # synthetic week too: HR@50 0.4432 -> 0.4453). On the 100k-event scale log (sampled
    # softmax) HR@50 0.5879 against 0.5896, NDCG@10 0.1724 against 0.1699.
    optimizer: Optimizer = "lazy_adam"
    # Decay the fit's learning rate linearly to learning_rate * lr_decay_floor over `epochs`
    # (and a warm refit's over its steps where `refit_lr_decay` says so).
    lr_decay: bool = False
    lr_decay_floor: float = 0.1
    # Dropout rate on embeddings, attention and feed-forward outputs (self_attention) or after
    # each hidden layer (mean_mlp): a number in [0, 1), or "auto" = 0.3 for long histories and
    # 0.4 for sparse logs, whose training examples hold fewer than 20 history items on average
    # (`trainer/hparams.choose_dropout`; SASRec chose 0.2 on MovieLens-1M and 0.5 on the Amazon
    # logs for the same reason).
    dropout: float | Auto = options.AUTO
    l2: float = 0.0
    seed: int = 42
    # Start from the last blessed model of an earlier date (the newest release before the run
    # date): items keep their vectors by id, new items start fresh, Adam starts afresh. Off by
    # default: on the synthetic week (bench/warm_start.py) it matches a cold start's HR@50
    # (0.4500 against 0.4489) with a fifth of the steps, but saves only 8% of the wall time on a
    # log that small (see README).
    warm_start: bool = False
    # A warm-started model is near its best within a few epochs: evaluate (and stop early) at
    # this finer granularity then.
    warm_start_eval_every_epochs: int = 1
    # After Evaluate blesses the fit, train once more on every event, the held-out one included,
    # and publish that model (the blessing and metrics stay the fit's). The held-out event is each
    # user's newest: on the validation target (bench/quality.py) it lifted NDCG@10 on Amazon
    # Beauty by 0.0072 +- 0.0010 (0.0494 -> 0.0566) and on MovieLens-100K by 0.0032 +- 0.0031
    # (0.1016 -> 0.1047, 3 seeds), HR@50 +0.021 and +0.010.
    refit_on_holdout: bool = True
    # true: continue from the fit's best checkpoint; false: train anew from scratch.
    refit_warm_start: bool = True
    # "auto" when warm-starting: eval_every_epochs, or more (up to twice that) where those
    # epochs would be fewer than refit_min_steps optimizer steps; from scratch: the fit's best
    # epoch count.
    refit_epochs: int | Auto = options.AUTO
    # A warm refit's learning rate: true = decays linearly from learning_rate to learning_rate
    # * lr_decay_floor over the refit's steps, false = constant; or "auto" = true on a sparse
    # log, whose refit split holds fewer than 20 history items per training example on average
    # (`trainer/hparams.choose_refit_lr_decay`, which gives the measurements).
    refit_lr_decay: bool | Auto = options.AUTO
    # A warm refit moves the weights toward each user's newest event step by step, so it needs
    # steps, not epochs: MovieLens-100K's 5 refit epochs were 185 steps (Amazon Beauty's 1,760).
    # 10 epochs there, on the validation target (bench/quality.py, paired, 3 seeds): NDCG@10
    # +0.0035 +- 0.0023 (0.1176 -> 0.1211), HR@50 +0.0099 +- 0.0046; Beauty (5 epochs either
    # way under this rule) measured at 10 anyway: NDCG@10 -0.0003 +- 0.0008, HR@50 +0.0020 +-
    # 0.0016, for 100 s more.
    refit_min_steps: int = 350
    # per_position only: each history slot predicts the next `future_targets` items of the
    # user's sequence, the first with weight 1 and each later one with `future_target_weight`
    # (1 = the next item only); or "auto" = 5 on a log of long histories and 1 on a sparse log,
    # whose training examples hold fewer than 20 history items on average
    # (`trainer/hparams.choose_future_targets`, which gives the measurements).
    future_targets: int | Auto = options.AUTO
    future_target_weight: float = 0.3
    # self_attention only. One block against two (two members each), on the validation target
    # (bench/quality.py, paired): MovieLens-100K NDCG@10 +0.0012 +- 0.0029 (3 seeds), Amazon
    # Beauty +0.0013 +- 0.0007, HR@10 +0.008 and +0.003; and a quarter less training per epoch.
    num_blocks: int = 1
    num_heads: int = 1
    # self_attention only: apply the dropout rate to the attention probabilities as well, as
    # SASRec does. On the validation target (bench/quality.py, paired): MovieLens-100K NDCG@10
    # +0.0062 +- 0.0027 (3 seeds; HR@10 +0.0106 +- 0.0054, HR@100 +0.0124 +- 0.0052); Amazon
    # Beauty HR@50 +0.0063 +- 0.0017, HR@100 +0.0080 +- 0.0018, NDCG@10 +0.0005 +- 0.0007.
    dropout_attention: bool = True
    # Blend an item-item model (EASE) into the published vectors, inner products kept
    # (`trainer/item_item.py`): the candidate weights, in units of the model's score spread; the
    # fit picks the best of them and 0 on the holdout's NDCG@10 (a weight only where its gain
    # beats its standard error), the refit keeps it. Empty = never: off by default. With
    # [0.05, 0.1, 0.2, 0.3], bench/quality.py, paired per user, 3 seeds: MovieLens-100K's
    # validation target NDCG@10 +0.0116 +- 0.0039, but its test target -0.0049 +- 0.0053 (the
    # holdout chose 0.2-0.3 there, where 0.05-0.1 would have served); Amazon Beauty's holdout
    # chose 0 (the same vectors) after ~20 s of EASE.
    item_item_weights: tuple[float, ...] = ()
    # The rank of the EASE matrix's factorisation: the dimensions the blend adds to the vectors.
    item_item_rank: int = 128
    # EASE's lambda (MovieLens-100K's EASE peer picks 200 on validation; 500 scored as well).
    item_item_l2: float = 200.0
    # EASE inverts an items x items matrix (O(items^3) time, 3 x 4 x items^2 bytes): a larger
    # catalog skips the blend.
    item_item_max_items: int = 20_000

    def check(self) -> None:
        _positive_int(
            self,
            "full_softmax_max_classes",
            "num_sampled",
            "embedding_dim",
            "ensemble_size",
            "user_embedding_dim",
            "batch_size",
            "auto_epoch_positions",
            "num_blocks",
            "num_heads",
            "item_item_rank",
            "item_item_max_items",
        )
        _require(
            all(w > 0 for w in self.item_item_weights),
            self.key("item_item_weights"),
            "must hold numbers > 0 (the model alone, weight 0, is always a candidate)",
            list(self.item_item_weights),
        )
        _require(self.item_item_l2 > 0, self.key("item_item_l2"), "must be > 0", self.item_item_l2)
        for name in ("epochs", "refit_epochs", "future_targets"):
            value = getattr(self, name)
            _require(
                value == options.AUTO or value >= 1,
                self.key(name),
                'must be "auto" or an integer >= 1',
                value,
            )
        _positive_int(self, "warm_start_eval_every_epochs")
        _require(
            self.refit_min_steps >= 0,
            self.key("refit_min_steps"),
            "must be an integer >= 0",
            self.refit_min_steps,
        )
        for name in ("eval_every_epochs", "early_stopping_patience"):
            value = getattr(self, name)
            _require(value >= 0, self.key(name), "must be an integer >= 0", value)
        for name in ("sampler_distortion", "temperature", "learning_rate", "future_target_weight"):
            value = getattr(self, name)
            _require(value > 0, self.key(name), "must be a number > 0", value)
        _require(
            self.dropout == options.AUTO or 0 <= self.dropout < 1,
            self.key("dropout"),
            'must be "auto" or a number in [0, 1)',
            self.dropout,
        )
        _require(self.l2 >= 0, self.key("l2"), "must be >= 0", self.l2)
        _require(
            0 <= self.early_stopping_min_delta < 1,
            self.key("early_stopping_min_delta"),
            "must be in [0, 1)",
            self.early_stopping_min_delta,
        )
        _require(
            0 < self.lr_decay_floor <= 1,
            self.key("lr_decay_floor"),
            "must be in (0, 1]",
            self.lr_decay_floor,
        )
        _require(
            self.eval_max_users is None or self.eval_max_users >= 1,
            self.key("eval_max_users"),
            "must be null or an integer >= 1",
            self.eval_max_users,
        )
        _require(
            self.max_train_seconds is None or self.max_train_seconds > 0,
            self.key("max_train_seconds"),
            "must be null or a number > 0",
            self.max_train_seconds,
        )
        _require(
            all(units >= 1 for units in self.hidden_units),
            self.key("hidden_units"),
            "must hold integers >= 1",
            list(self.hidden_units),
        )
        _require(
            self.encoder != options.MEAN_MLP or len(self.hidden_units) >= 1,
            self.key("hidden_units"),
            "must name at least one layer for mean_mlp",
            list(self.hidden_units),
        )
        for name in ("user_embedding", "recency_feature"):
            _require(
                not getattr(self, name) or self.encoder == options.MEAN_MLP,
                self.key(name),
                "is a mean_mlp extra; it needs trainer.encoder mean_mlp",
                getattr(self, name),
            )
        _require(
            self.encoder != options.SELF_ATTENTION or self.embedding_dim % self.num_heads == 0,
            self.key("num_heads"),
            "must divide trainer.embedding_dim",
            self.num_heads,
        )


@dataclasses.dataclass(frozen=True)
class RecallConfig(Section):
    SECTION: ClassVar[str] = "recall"
    # List length per user; at least the blessing K and every evaluate.ks.
    top_n: int = 100
    # Users scored together: one SGEMM of batch_size x block_items per block of the catalog.
    batch_size: int = 1024
    # Items per block; batch_size x block_items x 4 bytes is the score buffer of one batch. 8 MiB
    # fits a server's L3 cache between the SGEMM that writes it and the selection that reads it
    # (4,096 users of the 5M-event scale model: 1.94 s against 2.43 s with 8,192; README "Scale").
    block_items: int = 2048
    # Splits the catalog into this many contiguous shards, searched apart (each worker holds one
    # shard's vectors at a time) and merged to the exact top_n. 1 = the whole catalog at once.
    item_shards: int = 1

    def check(self) -> None:
        _positive_int(self, "top_n", "batch_size", "block_items", "item_shards")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Section):
    SECTION: ClassVar[str] = "evaluate"
    # Metrics are reported at these K (and always at the blessing K, 50).
    ks: tuple[int, ...] = (10, 50, 100)
    # Blessing: the model must reach this HR@50 ...
    min_hr_at_50: float = 0.0
    # ... and at least this fraction of the popularity baseline's HR@50 ...
    min_ratio_to_popularity: float = 1.0
    # ... and lose no more than this fraction of the last published run's HR@50.
    max_regression: float = 0.10
    # Output health (on the sampled eval users' lists, at the blessing K; more users recall more
    # distinct items, so coverage grows with max_users): at least this share of the catalog
    # recalled for someone ...
    min_coverage_at_50: float = 0.0
    # ... a Gini index of how often items are recalled of at most this (1 = one item for all) ...
    max_gini_at_50: float = 1.0
    # ... at most this share of users with a list shorter than the largest K (the catalog ran
    # out of unvisited items) ...
    max_short_list_share: float = 1.0
    # ... and at most this share of serving-history events on items the model has no vector for
    # (far above the usual few percent: ids changed format, or the vocabulary broke).
    max_serving_oov_rate: float = 0.5
    # Score at most this many holdout users (null = all): a uniform sample by a hash of the user
    # id, the same users every day. RecallEval recalls only them (each costs a pass over the
    # catalog), and every metric above, baselines and health included, is theirs. 50,000 users
    # put HR@50 within about +-0.0045 (95%); at 5M events RecallEval took 401 s for 600k users.
    max_users: int | None = 50_000

    def check(self) -> None:
        _require(
            self.max_users is None or self.max_users >= 1,
            self.key("max_users"),
            "must be null or an integer >= 1",
            self.max_users,
        )
        for name in (
            "min_coverage_at_50",
            "max_gini_at_50",
            "max_short_list_share",
            "max_serving_oov_rate",
        ):
            value = getattr(self, name)
            _require(0 <= value <= 1, self.key(name), "must be in [0, 1]", value)
        _require(
            len(self.ks) >= 1 and all(k >= 1 for k in self.ks),
            self.key("ks"),
            "must be a non-empty list of integers >= 1",
            list(self.ks),
        )
        _require(
            0 <= self.min_hr_at_50 <= 1,
            self.key("min_hr_at_50"),
            "must be in [0, 1]",
            self.min_hr_at_50,
        )
        _require(
            self.min_ratio_to_popularity >= 0,
            self.key("min_ratio_to_popularity"),
            "must be >= 0",
            self.min_ratio_to_popularity,
        )
        _require(
            0 <= self.max_regression <= 1,
            self.key("max_regression"),
            "must be in [0, 1]",
            self.max_regression,
        )

    def metric_ks(self) -> tuple[int, ...]:
        """Every K metrics are computed at: `ks` plus the blessing K, ascending."""
        return tuple(sorted(set(self.ks) | {BLESSING_K}))


@dataclasses.dataclass(frozen=True)
class PublishConfig(Section):
    SECTION: ClassVar[str] = "publish"
    # Releases kept beside the one `published` points to.
    keep_releases: int = 2
    # A local run keeps the TFX artifacts (tfx/pipeline_root) of this many latest runs; older
    # ones are removed after the run and marked DELETED in ML Metadata.
    keep_runs: int = 3

    def check(self) -> None:
        _require(
            self.keep_releases >= 0,
            self.key("keep_releases"),
            "must be an integer >= 0",
            self.keep_releases,
        )
        _positive_int(self, "keep_runs")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(Section):
    SECTION: ClassVar[str] = "synthetic"
    seed: int = 7
    num_users: int = 1500
    num_items: int = 800
    num_clusters: int = 20
    mean_events_per_user: int = 30
    # The default input is this many daily folders, ending at the run date (--date) ...
    days: int = 7
    # ... with this many new items released each day after the first ...
    new_items_per_day: int = 15
    # ... and every user's taste moving this far towards a fresh mix each day (0 = fixed).
    drift: float = 0.3

    def check(self) -> None:
        _positive_int(
            self, "num_users", "num_items", "num_clusters", "mean_events_per_user", "days"
        )
        _require(
            isinstance(self.new_items_per_day, int) and self.new_items_per_day >= 0,
            self.key("new_items_per_day"),
            "must be an integer >= 0",
            self.new_items_per_day,
        )
        _require(0.0 <= self.drift <= 1.0, self.key("drift"), "must be in [0, 1]", self.drift)


_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclasses.dataclass(frozen=True)
class Config(Section):
    """The whole run config: one section per component."""

    # ML-Metadata's pipeline name; Kubeflow needs [a-z0-9][a-z0-9-]*.
    pipeline_name: str = "offline-recall"
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    sequences: SequencesConfig = SequencesConfig()
    transform: TransformConfig = TransformConfig()
    trainer: TrainerConfig = TrainerConfig()
    recall: RecallConfig = RecallConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    publish: PublishConfig = PublishConfig()
    synthetic: SyntheticConfig = SyntheticConfig()

    def check(self) -> None:
        _require(
            bool(_PIPELINE_NAME.match(self.pipeline_name)),
            "pipeline_name",
            "must match [a-z0-9][a-z0-9-]*",
            self.pipeline_name,
        )
        longest = max(self.evaluate.metric_ks())
        _require(
            self.recall.top_n >= longest,
            "recall.top_n",
            f"must be >= {longest}, the largest K evaluated (evaluate.ks and the blessing K "
            f"{BLESSING_K})",
            self.recall.top_n,
        )

    # --- What the components that need a fact from another section receive. ---

    def sequences_params(self) -> SequencesParams:
        return SequencesParams(
            sequences=self.sequences,
            objective=self.trainer.objective,
            write_refit_split=self.trainer.refit_on_holdout,
            fail_on_anomalies=self.validation.fail_on_anomalies,
        )

    def preprocessing_params(self) -> PreprocessingParams:
        return PreprocessingParams(
            transform=self.transform,
            objective=self.trainer.objective,
            user_vocabulary=self.trainer.user_embedding,
            example_age=self.trainer.recency_feature,
        )

    def trainer_params(self) -> TrainerParams:
        return TrainerParams(
            trainer=self.trainer,
            max_history=self.sequences.max_history,
            num_oov_buckets=self.transform.num_oov_buckets,
        )


@dataclasses.dataclass(frozen=True)
class SequencesParams(Section):
    """What Sequences receives: its section, plus what the trainer and validation decide."""

    sequences: SequencesConfig
    # The trainer's objective decides the shape of the train examples.
    objective: Objective
    # trainer.refit_on_holdout: the Refit trainer needs the `refit` split.
    write_refit_split: bool
    # validation.fail_on_anomalies: Sequences is the first stage that reads ingest's output.
    fail_on_anomalies: bool


@dataclasses.dataclass(frozen=True)
class PreprocessingParams(Section):
    """What Transform's preprocessing_fn receives (as its custom_config)."""

    transform: TransformConfig
    # per_position counts history items too in the vocabulary (see preprocessing_fn).
    objective: Objective
    # trainer.user_embedding: a user vocabulary and `user_idx`.
    user_vocabulary: bool
    # trainer.recency_feature: `history_age` and `label_age`.
    example_age: bool


@dataclasses.dataclass(frozen=True)
class TrainerParams(Section):
    """What the Trainer and Refit components receive (as their custom_config)."""

    trainer: TrainerConfig
    # sequences.max_history: the longest history, for the length buckets.
    max_history: int
    # transform.num_oov_buckets: the softmax has vocabulary + OOV rows.
    num_oov_buckets: int


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    if "://" not in path:
        # Not isfile: a shell's <(...) is a pipe, and a fine config.
        if not os.path.exists(path) or os.path.isdir(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            return f.read()
    # Only a config on an object store needs TFX's filesystems (and so TensorFlow); a local one
    # is checked without importing either, in well under a second.
    from tfx.dsl.io import fileio

    if not fileio.exists(path) or fileio.isdir(path):
        raise ConfigError(f"config file not found: {path}")
    with fileio.open(path, "r") as f:
        return f.read()


def _read_file(path: str) -> dict:
    try:
        text = _read_text(path)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from e
    # Standard input and .yaml files are read as YAML, which holds JSON too.
    kind = "JSON" if path.endswith(".json") else "YAML"
    try:
        loaded = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        first = " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid {kind}: {first}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Returns the defaults, overlaid with the YAML/JSON file at `path` and then `overrides`.

    Raises:
        ConfigError: naming the key of the first unknown key, wrong type or value out of range.
    """
    data: dict = _read_file(path) if path else {}
    if overrides:
        data = _deep_merge(data, overrides)
    return Config.from_mapping(data, partial=True, where="")
