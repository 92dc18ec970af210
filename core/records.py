"""What one stage hands the next, as frozen typed records, each read and written in one place.

A record is read strictly, like a config section a component receives: every field must be in
the file and no other key may be, so a missing field is an error naming the file and the field,
never a default (the few optional keys files have always left out are declared, per record, in
`ABSENT_WHEN_NONE`). Metric names are built from K (`contracts.metric_key`), never spelled.

    previous.json   PreviousRelease   what PreviousRelease found (Trainer, Evaluate, Compare)
    metrics.json    Evaluation        Evaluate's metrics and blessing (Compare, Publish, Report)
    manifest.json   Manifest          a release: what it holds (files, rows, checksums) and
                                      what made it (input, run date, spans, config, metrics)
    summary.json    IngestSummary     Ingest's counts, run date and spans (PreviousRelease,
                                      Publish, Report, the CLI)
    summary.json    CompareSummary    Compare's report (Publish's manifest, Report, the CLI)
    summary.json    PublishSummary    what Publish did (Report, the CLI)
    summary.json    SequencesSummary  users, events and examples per split (Report, the CLI)
    summary.json    RecallSummary     RecallEval's and RecallServing's users and list lengths
                                      (Report, the report page)
    train_summary.json  TrainSummary  how the trainer trained and what it exported (Refit,
                                      Publish's manifest, Report, the CLI)
    summary.json    RunSummary        Report's: every record above of one run; also written
                                      as run_summary.json
    run_summary.json    FinishedRun   RunSummary with the CLI's housekeeping and timings
    run_summary.json    FailedRun     a failed or interrupted run: the stage and the error
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, ClassVar

from offline_recall.core import contracts as C
from offline_recall.core import storage


class RecordError(ValueError):
    """A stage record breaks its type: the message names the file and the field."""


def _convert(value: Any, hint, where: str) -> Any:
    """`value` read from JSON as `hint` says: nested records built, lists as tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise RecordError(f"{where} is null, which its type {hint} does not allow")
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(value, inner, where)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value, where=where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecordError(f"{where} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise RecordError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """A frozen record read and written as a JSON object with exactly its fields.

    `JSON_KEYS` maps a field to its key in the file where the two differ (metric names with an
    "@K" cannot be field names). `ABSENT_WHEN_NONE` names the fields a file leaves out, rather
    than writing null, when they are None: files of earlier releases are written so, and their
    readers test for the key. Only those fields may be missing; absent, they read as None.
    """

    JSON_KEYS: ClassVar[dict[str, str]] = {}
    ABSENT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _key(cls, name: str) -> str:
        return cls.JSON_KEYS.get(name, name)

    @classmethod
    def from_dict(cls, data: Any, *, where: str | None = None):
        """Builds the record from what `to_dict` wrote; RecordError names a wrong field."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where} must be a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        keys = {cls._key(f.name) for f in fields}
        if unknown := sorted(set(data) - keys):
            raise RecordError(f"{where} has an unknown field '{unknown[0]}'")
        values = {}
        for f in fields:
            key = cls._key(f.name)
            if key in data:
                values[f.name] = _convert(data[key], hints[f.name], f"{where}.{key}")
            elif f.name in cls.ABSENT_WHEN_NONE:
                values[f.name] = None
            else:
                raise RecordError(f"{where} is missing the field '{key}'")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            self._key(f.name): _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not (f.name in self.ABSENT_WHEN_NONE and getattr(self, f.name) is None)
        }

    def field_values(self) -> dict[str, Any]:
        """{field name: value}, not converted: to build a record that extends this one."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def read(cls, path: str):
        """Reads the record's JSON file; RecordError names the file and the field."""
        return cls.from_dict(storage.read_json(path), where=path)

    def write(self, path: str) -> None:
        storage.write_json(path, self.to_dict())


def metric_names(ks: tuple[int, ...]) -> tuple[str, ...]:
    """Every per-K holdout metric Evaluate writes for the model: hr, ndcg, recall, coverage."""
    return tuple(C.metric_key(name, k) for k in ks for name in ("hr", "ndcg", "recall", "coverage"))


@dataclasses.dataclass(frozen=True)
class ReleaseMetrics(Record):
    """What a release says of its own day's holdout: the model's metrics and its blessing."""

    model: dict[str, float]
    blessed: bool


@dataclasses.dataclass(frozen=True)
class PreviousRelease(Record):
    """previous.json: the release a run compares with and may warm-start from.

    `found` False: only `why_not` is set; True: every other field is, `why` saying why that one.
    """

    found: bool
    why: str | None
    why_not: str | None
    run_id: str | None
    run_date: str | None
    release: str | None
    metrics: ReleaseMetrics | None

    @classmethod
    def none_found(cls, why_not: str) -> PreviousRelease:
        return cls(False, None, why_not, None, None, None, None)

    @classmethod
    def path_in(cls, model_uri: str) -> str:
        return os.path.join(model_uri, C.PREVIOUS_FILE)


@dataclasses.dataclass(frozen=True)
class Baseline(Record):
    """The previous release's model scored on today's holdout (Evaluate's regression rule)."""

    model: dict[str, float]
    run_id: str
    run_date: str | None
    release: str
    # What that release scored on its own day's holdout, for reference only.
    own_holdout: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Health(Record):
    """The published lists' health at the blessing K, over every serving user."""

    JSON_KEYS: ClassVar[dict[str, str]] = {
        "gini": C.metric_key("gini", C.BLESSING_K),
        "coverage": C.metric_key("coverage", C.BLESSING_K),
        "hit_rate_by_popularity_decile": f"{C.BLESSING_METRIC}_by_popularity_decile",
    }

    gini: float
    coverage: float
    short_list_share: float
    # {decile of the held-out item's popularity: {hr@K, users}}.
    hit_rate_by_popularity_decile: dict[str, dict[str, float]]
    serving_history_items: int
    serving_oov_rate: float


@dataclasses.dataclass(frozen=True)
class Evaluation(Record):
    """metrics.json: Evaluate's holdout metrics at every K and the blessing."""

    # {metric_key(name, k): value} for `metric_names(ks)`, plus "users".
    model: dict[str, float]
    # The popularity baseline's hr@K and ndcg@K on the same holdout, plus "users".
    popularity: dict[str, float]
    baseline: Baseline | None
    health: Health | None
    catalog_size: int
    ks: tuple[int, ...]
    blessed: bool
    not_blessed_because: tuple[str, ...]

    def __post_init__(self) -> None:
        missing = [name for name in metric_names(self.ks) + ("users",) if name not in self.model]
        if missing:
            raise RecordError(f"metrics.json: the model's metrics lack '{missing[0]}'")

    @classmethod
    def path_in(cls, metrics_uri: str) -> str:
        return os.path.join(metrics_uri, C.METRICS_FILE)

    def release_metrics(self) -> ReleaseMetrics:
        return ReleaseMetrics(self.model, self.blessed)


@dataclasses.dataclass(frozen=True)
class Manifest(Record):
    """manifest.json: a release's files with their bytes, sha256 and rows, and its provenance."""

    run_id: str
    input: str
    input_note: str
    # The run date (YYYY-MM-DD) or None for an undated input; the TFX spans (days since
    # 1970-01-01) read, the dates of the first and last, and the training window's first day.
    run_date: str | None
    input_spans: tuple[int, ...]
    input_span_dates: tuple[str, ...] | None
    window_first_day: str | None
    # The trainer's warm-start facts and Compare's summary, as those stages wrote them.
    warm_start: dict[str, Any]
    compared_with_previous: dict[str, Any]
    config: dict[str, Any]
    metrics: ReleaseMetrics
    rows: dict[str, int]
    # {path relative to the release: {bytes, sha256, rows (Parquet only)}}.
    files: dict[str, dict[str, Any]]
    model_fingerprint: str | None

    @classmethod
    def path_in(cls, release: str) -> str:
        return os.path.join(release, C.MANIFEST_FILE)


@dataclasses.dataclass(frozen=True)
class ReleaseName(Record):
    run_id: str
    run_date: str | None
    release: str


@dataclasses.dataclass(frozen=True)
class CompareSummary(Record):
    """Compare's summary.json: today's serving lists against the previous release's.

    `compared` False: only `why_not` is set, every count is None.
    """

    compared: bool
    why_not: str | None
    previous: ReleaseName | None
    # {metric_key(name, k): {"today", "previous"}}: both models on today's holdout ("previous"
    # is None where the previous release's model was not scored).
    metrics: dict[str, dict[str, float | None]] | None
    catalog_items: int | None
    new_items: int | None
    dropped_items: int | None
    users_compared: int | None
    users_changed: int | None
    share_changed: float | None
    # None when no user has lists on both days.
    mean_jaccard: float | None
    users_new: int | None
    users_gone: int | None
    new_items_recalled: int | None

    @classmethod
    def not_compared(cls, why_not: str) -> CompareSummary:
        return cls(False, why_not, *([None] * 12))


@dataclasses.dataclass(frozen=True)
class PublishSummary(Record):
    """Publish's summary.json: the release it wrote and where LATEST points, or why it kept the
    current release. Fields of the other case are None (or empty)."""

    published: bool
    run_id: str
    release: str | None
    # Whether LATEST now names the release (False for a backfill of an older date).
    pointed: bool | None
    current: str | None
    replaced: tuple[str, ...]
    pruned: tuple[str, ...]
    not_blessed_because: tuple[str, ...]
    kept: str | None


@dataclasses.dataclass(frozen=True)
class IngestSummary(Record):
    """Ingest's summary.json: its counts in rows and in physical lines, and the days it read.

    rows_read = rows_valid + rows_quarantined; rows_written = rows_valid - rows_out_of_window -
    duplicates_dropped; lines_read = lines_valid + lines_quarantined + blank_lines.
    """

    rows_read: int
    rows_valid: int
    rows_quarantined: int
    duplicates_dropped: int
    rows_out_of_window: int
    rows_before_window: int
    rows_written: int
    blank_lines_skipped: int
    lines_read: int
    lines_valid: int
    lines_quarantined: int
    blank_lines: int
    # {unit: rows}: the epoch units (or ISO 8601) the timestamps were read in.
    timestamp_units: dict[str, int]
    # {quarantine reason: rows}.
    reasons: dict[str, int]
    # Per input file: {path, format, span, rows_read, lines_read}.
    files: tuple[dict[str, Any], ...]
    file_errors: tuple[str, ...]
    spans: tuple[int, ...]
    run_date: str | None
    window_first_day: str | None


@dataclasses.dataclass(frozen=True)
class IngestReport(IngestSummary):
    """Ingest's section of run_summary.json: its summary and where the quarantined rows are."""

    quarantine_path: str


@dataclasses.dataclass(frozen=True)
class SequencesSummary(Record):
    """Sequences' summary.json: the users and events it grouped, the examples of each split it
    wrote, and the settings that shaped them."""

    ABSENT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"refit_examples"})

    users: int
    events: int
    distinct_items: int
    users_with_holdout: int
    train_examples: int
    eval_examples: int
    serving_examples: int
    # {events per user: users}.
    events_per_user_histogram: dict[str, int]
    max_history: int
    min_events_for_holdout: int
    objective: str
    # Written only with the refit split (`trainer.refit_on_holdout`).
    refit_examples: int | None


@dataclasses.dataclass(frozen=True)
class RecallSummary(Record):
    """A Recall stage's summary.json (RecallEval's, RecallServing's): the users it scored and how
    many got a full or a short list."""

    ABSENT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"sampled_from_users"})

    split: str
    top_n: int
    users: int
    # The split's users, written only when `users` is a sample of them (`max_users`).
    sampled_from_users: int | None
    users_full: int
    users_short: int
    # {list length: users}.
    list_length_histogram: dict[str, int]


@dataclasses.dataclass(frozen=True)
class EvalPoint(Record):
    """One holdout evaluation of the fit's early stopping; the metrics by their Estimator names
    (`contracts.EARLY_STOPPING_METRICS`)."""

    JSON_KEYS: ClassVar[dict[str, str]] = {
        "hit_rate": C.EARLY_STOPPING_METRICS[C.BLESSING_METRIC],
        "ndcg": C.EARLY_STOPPING_METRICS[C.EARLY_STOPPING_NDCG],
    }

    epochs: int
    seconds: float
    eval_loss: float
    hit_rate: float
    ndcg: float


@dataclasses.dataclass(frozen=True)
class RefitFacts(Record):
    """What the Refit trainer did (`trainer.refit_on_holdout`)."""

    warm_start: bool
    epochs: int
    # Which setting or rule chose `epochs` (see trainer/hparams.refit_epochs).
    epochs_rule: str
    positions_per_epoch: int
    global_step: int
    seconds: float
    fit_train_seconds: float
    # Whether the learning rate decayed over the refit, and which setting or rule chose that
    # (`trainer/hparams.choose_refit_lr_decay`).
    lr_decay: bool
    lr_decay_rule: str


@dataclasses.dataclass(frozen=True)
class TrainSummary(Record):
    """train_summary.json in a Model artifact: how the trainer trained and what it exported.

    The Refit trainer's is the fit's with `refit` set and `train_seconds` the two's sum.
    """

    ABSENT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"refit"})

    vocab_size: int
    num_classes: int
    global_step: int
    epochs_trained: int
    max_epochs: int
    positions_per_epoch: int
    best_epochs: int
    train_seconds: float
    # None without a holdout (no user had enough events).
    eval_loss: float | None
    eval_users: int
    eval_history: tuple[EvalPoint, ...]
    # A mapping, not a record: its keys depend on what happened ({used, why_not} or {used,
    # items_carried, items_new, items_dropped, source}, `trainer/warm_start.py` and `task.py`).
    warm_start: dict[str, Any]
    # The model_fn's params (`hparams.printable`): a mapping, their keys follow the encoder.
    params: dict[str, Any]
    # How the dropout rate (in `params`) was chosen (`trainer/hparams.choose_dropout`).
    dropout_rule: str
    # How `params`' future_targets was chosen (`trainer/hparams.choose_future_targets`).
    future_targets_rule: str
    # The item-item blend (`trainer/item_item.py`): a mapping, its keys follow what happened
    # ({used: false, why_not} or {used, weight, why, scale, rank, l2, rows, holdout_ndcg10,
    # seconds}; the refit's says which weight the fit chose).
    item_item: dict[str, Any]
    # What the exported vectors are (`hparams.vector_notes`).
    embeddings_tied: bool
    ensemble_size: int
    item_vector: str
    user_vector: str
    refit: RefitFacts | None

    @classmethod
    def path_in(cls, model_uri: str) -> str:
        return os.path.join(model_uri, C.TRAIN_SUMMARY_FILE)


@dataclasses.dataclass(frozen=True)
class TransformSizes(Record):
    """The item vocabulary's size and the softmax classes (vocabulary plus OOV buckets)."""

    vocab_size: int
    num_classes: int


@dataclasses.dataclass(frozen=True)
class RecallReports(Record):
    serving: RecallSummary
    eval: RecallSummary


@dataclasses.dataclass(frozen=True)
class RunSummary(Record):
    """Report's summary.json: every stage's record of a finished run, published or not; Report
    writes it as OUTPUT/run_summary.json too, which the CLI then extends (FinishedRun)."""

    status: str
    run_id: str
    finished_at: str
    input: str
    output: str
    ingest: IngestReport
    sequences: SequencesSummary
    transform: TransformSizes
    trainer: TrainSummary
    recall: RecallReports
    evaluate: Evaluation
    compare: CompareSummary
    publish: PublishSummary

    @classmethod
    def path_in(cls, output_dir: str) -> str:
        return os.path.join(output_dir, C.RUN_SUMMARY_FILE)


@dataclasses.dataclass(frozen=True)
class Housekeeping(Record):
    """What the CLI cleaned up after a finished run."""

    artifact_folders_removed: int
    keep_runs: int
    stale_executions_cancelled: int
    output_bytes: int


@dataclasses.dataclass(frozen=True)
class FinishedRun(RunSummary):
    """OUTPUT/run_summary.json of a run that finished: Report's summary, then the CLI's
    housekeeping and timings."""

    housekeeping: Housekeeping
    # {stage: seconds} for the stages that ran, and "total".
    timings_seconds: dict[str, float]


@dataclasses.dataclass(frozen=True)
class FailedRun(Record):
    """OUTPUT/run_summary.json of a run that failed or was interrupted, instead of FinishedRun."""

    status: str
    run_id: str
    # None when the run failed before any stage started.
    failed_stage: str | None
    error: str
    finished_at: str
    # {stage: seconds} for the stages that finished.
    timings_seconds: dict[str, float]
