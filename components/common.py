"""Small helpers every custom component shares: artifact paths, summaries, tf.Example parsing.

Imports without TFX so that the pure logic beside each component stays testable with plain files.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import tensorflow as tf

from offline_recall.core.contracts import SUMMARY_FILE
from offline_recall.core.records import Record
from offline_recall.core.storage import write_json


def split_files(split_dir: str) -> str:
    """A glob matching every data file of one split, given its folder (an executor gets that
    from `artifact_utils.get_split_uri`)."""
    return os.path.join(split_dir, "*")


def make_output_dirs(output_dict: dict[str, list]) -> None:
    """Creates every output artifact's folder. LocalDagRunner makes them before `Do`; a KFP
    launcher does not (on a mounted or local path a file written into one would fail)."""
    for artifacts in output_dict.values():
        for artifact in artifacts:
            tf.io.gfile.makedirs(artifact.uri)


# Tests kill a run at a named point to show that no moment leaves a broken published set.
FAILPOINT_ENV = "OFFLINE_RECALL_FAILPOINT"


def failpoint(name: str) -> None:
    """Kills this process with SIGKILL when FAILPOINT_ENV names `name`; otherwise nothing."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def summary_path(report_uri: str) -> str:
    """Where a stage keeps its record (`core/records.py`) in its StageReport artifact folder."""
    return os.path.join(report_uri, SUMMARY_FILE)


def _write_built(_, path: str, build: Callable[..., Any], **values) -> None:
    built = build(**values)
    if isinstance(built, Record):
        built.write(path)
    else:
        write_json(path, built)


@beam.ptransform_fn
def WriteJsonOnce(pbegin, path: str, build: Callable[..., Any], **side_inputs):  # noqa: N802
    """Writes `build(**values)` as JSON to `path` once, when every side input is computed.

    A stage's summary is made of several aggregates (counts, histograms) of one pipeline; this
    joins them without collecting anything to the driver.

    Args:
        pbegin: the pipeline.
        path: the JSON file to write.
        build: a picklable function of the side inputs' values (module-level, not a lambda)
            that returns a stage record, written by its `write`, or any JSON-ready value.
        **side_inputs: `beam.pvalue.AsSingleton(...)`, `AsDict(...)` etc., by keyword.
    """
    return (
        pbegin
        | "Once" >> beam.Create([None])
        | "Write" >> beam.Map(_write_built, path, build, **side_inputs)
    )


def bytes_values(example: tf.train.Example, name: str) -> list[bytes]:
    """Returns a bytes feature's values ([] when absent)."""
    feature = example.features.feature.get(name)
    return list(feature.bytes_list.value) if feature is not None else []


def int_values(example: tf.train.Example, name: str) -> list[int]:
    """Returns an int64 feature's values ([] when absent)."""
    feature = example.features.feature.get(name)
    return list(feature.int64_list.value) if feature is not None else []


def make_example(
    bytes_features: dict[str, list[bytes]], int_features: dict[str, list[int]] | None = None
) -> tf.train.Example:
    """Builds a tf.train.Example from lists of values per feature."""
    feature = {
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        for name, values in bytes_features.items()
    }
    for name, values in (int_features or {}).items():
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class SumDictsFn(beam.CombineFn):
    """Sums dicts of numbers key by key (counts a stage adds up over its elements)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, values):
        for key, value in values.items():
            acc[key] = acc.get(key, 0) + value
        return acc

    def merge_accumulators(self, accs):
        total = {}
        for acc in accs:
            self.add_input(total, acc)
        return total

    def extract_output(self, acc):
        return acc
