"""Per-user, time-ordered histories turned into train / eval / serving examples (pure Beam).

For a user with events e_0..e_{n-1}, ordered by (exact instant, input order):
- if n >= min_events_for_holdout, e_{n-1} is held out: it becomes the user's `eval` example
  (history e_0..e_{n-2}, visited = their items), and training sees only e_0..e_{n-2};
- `last_position` (the objective): every training event e_i becomes one `train` example,
  history e_{max(0,i-H)}..e_{i-1} -> e_i, including e_0 with an empty history, so the label
  counts are exactly the training item counts;
- `per_position` (the objective): the training events are cut, newest first, into
  disjoint pieces of at most H + 1 events; a piece is one `train` example, history = all its
  events but the last, label = the last. Every position of the piece predicts the next event, so
  one example carries up to H targets, and history plus label count each training event exactly
  once (the vocabulary counts rely on that). A user with a single training event gets a piece
  with an empty history;
- the `serving` example holds the full history (held-out event included) and every visited item;
- with `refit`, the `refit` split holds the same kind of training examples cut from every event,
  the held-out one included, for the Refit trainer that runs once the model is blessed.

Item ids stay raw bytes here; the Transform graph maps them to vocabulary keys.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from offline_recall.components import common
from offline_recall.components.errors import StageError
from offline_recall.core import dates, options, records
from offline_recall.core.config import SequencesParams
from offline_recall.trainer import features as F

Event = tuple[int, int, bytes]  # (timestamp in epoch microseconds, input_order, item_id)


def parse_click(serialized: bytes) -> tuple[bytes, Event]:
    """Returns (user_id, (timestamp_micros, input_order, item_id)) from an ingest tf.Example."""
    example = tf.train.Example.FromString(serialized)
    user = common.bytes_values(example, F.USER_ID)[0]
    item = common.bytes_values(example, F.ITEM_ID)[0]
    micros = common.int_values(example, F.TIMESTAMP_MICROS)[0]
    order = common.int_values(example, F.INPUT_ORDER)[0]
    return user, (micros, order, item)


def unique_in_order(items: Iterable[bytes]) -> list[bytes]:
    """Returns the distinct items in first-seen order (a stable visited set)."""
    return list(dict.fromkeys(items))


def training_pieces(
    train_items: list, max_history: int, objective: str
) -> Iterator[tuple[list, object]]:
    """Yields (history, label) training pairs for one user's time-ordered training items.

    Args:
        train_items: the user's training items (or their positions), oldest first.
        max_history: H, the most items a history holds.
        objective: "last_position" (one pair per event) or "per_position" (disjoint pieces of
            <= H + 1 events, cut from the newest event backwards, so the latest piece has the
            longest context).
    """
    if objective == options.LAST_POSITION:
        for i, label in enumerate(train_items):
            yield train_items[max(0, i - max_history) : i], label
    elif objective == options.PER_POSITION:
        end = len(train_items)
        while end > 0:
            start = max(0, end - max_history - 1)
            yield train_items[start : end - 1], train_items[end - 1]
            end = start
    else:
        raise ValueError(f"objective must be one of {options.OBJECTIVES}, got {objective!r}")


def build_user_examples(
    user: bytes,
    events: Iterable[Event],
    max_history: int,
    min_events_for_holdout: int,
    objective: str,
    refit: bool = False,
    train_from_micros: int | None = None,
) -> Iterator[tuple[str, tf.train.Example]]:
    """Yields (split, example) for one user.

    Args:
        user: the raw user id.
        events: the user's clicks, in any order.
        max_history: the most recent items a history keeps.
        min_events_for_holdout: users with at least this many events get an eval example.
        objective: "last_position" or "per_position" (see the module docstring).
        refit: also yield ("refit", ex) per training pair cut from every event.
        train_from_micros: the training window's start: an earlier event is history (in
            histories, visited items and the serving example) but never a training target or
            the held-out item. None = every event.

    Yields:
        ("train", ex) per training pair, ("eval", ex) at most once, ("serving", ex) once, and
        with `refit` ("refit", ex) per pair over all events.
    """
    ordered = sorted(events)
    items = [item for _, _, item in ordered]
    # Examples carry epoch seconds (the example age is in days); the order used the instant.
    times = [micros // dates.MICROS_PER_SECOND for micros, _, _ in ordered]
    first_target = 0
    if train_from_micros is not None:
        first_target = next(
            (i for i, (micros, _, _) in enumerate(ordered) if micros >= train_from_micros),
            len(items),
        )
    in_window = first_target < len(items)
    holdout = in_window and len(items) >= min_events_for_holdout
    n_train = len(items) - 1 if holdout else len(items)
    train_items = items[:n_train]

    def in_window_pieces(count: int):
        for positions, label in training_pieces(list(range(count)), max_history, objective):
            if label >= first_target:
                yield positions, label

    def train_example(positions: list[int], label: int) -> tf.train.Example:
        return common.make_example(
            {
                F.USER_ID: [user],
                F.HISTORY: [items[i] for i in positions],
                F.LABEL: [items[label]],
                F.VISITED: [],
            },
            {F.HISTORY_TIMES: [times[i] for i in positions], F.LABEL_TIME: [times[label]]},
        )

    for positions, label in in_window_pieces(n_train):
        yield F.TRAIN_SPLIT, train_example(positions, label)
    if refit:
        for positions, label in in_window_pieces(len(items)):
            yield F.REFIT_SPLIT, train_example(positions, label)
    if holdout:
        yield (
            F.EVAL_SPLIT,
            common.make_example(
                {
                    F.USER_ID: [user],
                    F.HISTORY: train_items[-max_history:],
                    F.LABEL: [items[-1]],
                    F.VISITED: unique_in_order(train_items),
                },
                {F.HISTORY_TIMES: times[:n_train][-max_history:], F.LABEL_TIME: [times[-1]]},
            ),
        )
    yield (
        F.SERVING_SPLIT,
        common.make_example(
            {
                F.USER_ID: [user],
                F.HISTORY: items[-max_history:],
                F.LABEL: [],
                F.VISITED: unique_in_order(items),
            },
            {F.HISTORY_TIMES: times[-max_history:], F.LABEL_TIME: []},
        ),
    )


class BuildUserExamplesFn(beam.DoFn):
    """Tags each user's examples by split and counts users, holdouts and examples."""

    def __init__(
        self,
        max_history: int,
        min_events_for_holdout: int,
        objective: str,
        refit: bool = False,
        train_from_micros: int | None = None,
    ):
        self._max_history = max_history
        self._min_events = min_events_for_holdout
        self._objective = objective
        self._refit = refit
        self._train_from = train_from_micros
        self._users = beam.metrics.Metrics.counter("sequences", "users")
        self._holdout_users = beam.metrics.Metrics.counter("sequences", "users_with_holdout")

    def process(self, user_events: tuple[bytes, Iterable[Event]]):
        user, events = user_events
        self._users.inc()
        for split, example in build_user_examples(
            user,
            list(events),
            self._max_history,
            self._min_events,
            self._objective,
            self._refit,
            self._train_from,
        ):
            if split == F.EVAL_SPLIT:
                self._holdout_users.inc()
            yield beam.pvalue.TaggedOutput(split, example.SerializeToString())


def count_events(user_events: tuple[bytes, Iterable[Event]]) -> int:
    return sum(1 for _ in user_events[1])


class _HistogramFn(beam.CombineFn):
    """Counts how many users have each number of events."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, n_events):
        acc[n_events] += 1
        return acc

    def merge_accumulators(self, accs):
        merged = collections.Counter()
        for acc in accs:
            merged.update(acc)
        return merged

    def extract_output(self, acc):
        return {str(k): v for k, v in sorted(acc.items())}


def summarize(
    histogram: dict[str, int],
    split_counts: dict[str, int],
    distinct_items: int,
    max_history: int,
    min_events_for_holdout: int,
    objective: str,
) -> records.SequencesSummary:
    """Returns the sequences stage's summary from its combined counts.

    `split_counts` has every split written (`F.sequence_splits`): the refit split's only when
    it was.
    """
    users = sum(histogram.values())
    events = sum(int(k) * v for k, v in histogram.items())
    return records.SequencesSummary(
        users=users,
        events=events,
        distinct_items=distinct_items,
        users_with_holdout=split_counts[F.EVAL_SPLIT],
        train_examples=split_counts[F.TRAIN_SPLIT],
        eval_examples=split_counts[F.EVAL_SPLIT],
        serving_examples=split_counts[F.SERVING_SPLIT],
        events_per_user_histogram=histogram,
        max_history=max_history,
        min_events_for_holdout=min_events_for_holdout,
        objective=objective,
        refit_examples=split_counts.get(F.REFIT_SPLIT),
    )


@beam.ptransform_fn
def BuildSequences(  # noqa: N802
    clicks,
    max_history: int,
    min_events_for_holdout: int,
    objective: str,
    refit: bool = False,
    train_from_micros: int | None = None,
):
    """Groups serialized ingest tf.Examples by user into split-tagged serialized examples.

    Args:
        clicks: PCollection of serialized ingest tf.Examples (one per click).
        max_history: the most recent items a history keeps.
        min_events_for_holdout: users with at least this many events get an eval example.
        objective: "last_position" or "per_position" (see the module docstring).
        refit: also build the `refit` split (training examples over every event).
        train_from_micros: the training window's start (earlier events are history only).

    Returns:
        A dict: one PCollection of serialized tf.Examples per split name, plus `histogram`
        (a singleton {events_per_user: users}) and `distinct_items` (a singleton count).
    """
    keyed = clicks | "ParseClick" >> beam.Map(parse_click)
    grouped = keyed | "GroupByUser" >> beam.GroupByKey()
    splits = F.sequence_splits(refit)
    tagged = grouped | "BuildUserExamples" >> beam.ParDo(
        BuildUserExamplesFn(
            max_history, min_events_for_holdout, objective, refit, train_from_micros
        )
    ).with_outputs(*splits)
    histogram = (
        grouped
        | "CountEventsPerUser" >> beam.Map(count_events)
        | "HistogramOfEvents" >> beam.CombineGlobally(_HistogramFn())
    )
    distinct_items = (
        keyed
        | "ItemOfClick" >> beam.Map(_item_of_click)
        | "DistinctItems" >> beam.Distinct()
        | "CountDistinctItems" >> beam.combiners.Count.Globally()
    )
    outputs = {split: tagged[split] for split in splits}
    outputs["histogram"] = histogram
    outputs["distinct_items"] = distinct_items
    return outputs


def _item_of_click(user_event: tuple[bytes, Event]) -> bytes:
    return user_event[1][2]


def check_anomalies(anomalies_dirs: dict[str, str]) -> None:
    """Raises StageError listing every anomaly ExampleValidator found in the click splits.

    Args:
        anomalies_dirs: {split: folder} of ExampleValidator's Anomalies artifact.
    """
    problems = []
    for split, folder in sorted(anomalies_dirs.items()):
        for root, _, files in tf.io.gfile.walk(folder):
            for name in sorted(files):
                if not name.endswith(".pb"):
                    continue
                anomalies = anomalies_pb2.Anomalies()
                with tf.io.gfile.GFile(os.path.join(root, name), "rb") as f:
                    anomalies.ParseFromString(f.read())
                for feature, info in anomalies.anomaly_info.items():
                    problems.append(
                        f"{split}/{feature}: {info.short_description or info.description}"
                    )
                if anomalies.HasField("dataset_anomaly_info"):
                    problems.append(f"{split}: {anomalies.dataset_anomaly_info.description}")
    if problems:
        raise StageError(
            "ingest output breaks schema/schema.pbtxt (ExampleValidator): " + "; ".join(problems)
        )


def summary_with_users(**counts) -> records.SequencesSummary:
    """`summarize`, refusing a log with no users (nothing downstream could run)."""
    split_counts = {split: counts.pop(split) for split in list(counts) if split in F.ALL_SPLITS}
    summary = summarize(split_counts=split_counts, **counts)
    if summary.users == 0:
        raise StageError("sequences: the click examples hold no users")
    return summary


def build_sequences(
    make_pipeline: Callable[[], beam.Pipeline],
    click_patterns: dict[str, str],
    split_dirs: dict[str, str],
    summary_path: str,
    params: SequencesParams,
    anomalies_dirs: dict[str, str] | None,
    window_first_day: str | None = None,
) -> None:
    """Checks the anomalies, then writes each split's examples and the stage's summary.

    Args:
        make_pipeline: returns the Beam pipeline to run the steps in.
        click_patterns: {split: glob} of ingest's click TFRecords.
        split_dirs: {split: folder} for every split to write (`F.sequence_splits`).
        summary_path: where the counts go.
        params: the `sequences` section and what the trainer and validation decide.
        anomalies_dirs: {split: folder} of ExampleValidator's output, checked when
            `fail_on_anomalies`.
        window_first_day: YYYY-MM-DD, the first day of the training window (Ingest's run
            window); earlier events are history only. None = every event trains.
    """
    train_from = None
    if window_first_day:
        train_from = dates.day_start_micros(window_first_day)
    if params.fail_on_anomalies and anomalies_dirs:
        check_anomalies(anomalies_dirs)
    config = params.sequences
    with make_pipeline() as pipeline:
        clicks = [
            pipeline | f"ReadClicks[{split}]" >> beam.io.ReadFromTFRecord(pattern)
            for split, pattern in click_patterns.items()
        ]
        built = (
            clicks
            | "FlattenClickSplits" >> beam.Flatten()
            | "BuildSequences"
            >> (
                BuildSequences(
                    config.max_history,
                    config.min_events_for_holdout,
                    params.objective,
                    params.write_refit_split,
                    train_from,
                )
            )
        )
        counts = {}
        for split, folder in split_dirs.items():
            _ = built[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                os.path.join(folder, "data_tfrecord"), file_name_suffix=".gz"
            )
            counts[split] = built[split] | f"Count[{split}]" >> beam.combiners.Count.Globally()
        _ = pipeline | "WriteSummary" >> common.WriteJsonOnce(
            summary_path,
            functools.partial(
                summary_with_users,
                max_history=config.max_history,
                min_events_for_holdout=config.min_events_for_holdout,
                objective=params.objective,
            ),
            histogram=beam.pvalue.AsSingleton(built["histogram"]),
            distinct_items=beam.pvalue.AsSingleton(built["distinct_items"]),
            **{split: beam.pvalue.AsSingleton(count) for split, count in counts.items()},
        )
