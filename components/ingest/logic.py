"""Ingest as one function: preflight, the `IngestClicks` Beam steps, the summary, the bad limit.

Knows nothing of TFX: the executor hands it plain folders and a pipeline factory.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import apache_beam as beam

from offline_recall.components import common
from offline_recall.components.ingest import rows, sources
from offline_recall.core import records
from offline_recall.core.config import IngestConfig
from offline_recall.core.contracts import QUARANTINE_PREFIX

# With a run date, nothing is "future": events after the run date are out of the window.
NO_FUTURE_LIMIT = 2**62


def latest_allowed_timestamp(config: IngestConfig, window: sources.Window) -> int:
    """The newest timestamp a row may have: "now" (or the wall clock) plus the tolerance."""
    if window.run_date:
        return NO_FUTURE_LIMIT
    now = config.now if config.now is not None else int(time.time())
    return now + config.future_tolerance_seconds


def ingest_clicks(
    make_pipeline: Callable[[], beam.Pipeline],
    files: list[sources.InputFile],
    window: sources.Window,
    config: IngestConfig,
    examples_dir: str,
    quarantine_dir: str,
    summary_path: str,
) -> dict:
    """Reads, validates and deduplicates the click files into tf.Example TFRecords.

    Args:
        make_pipeline: returns the Beam pipeline to run the steps in.
        files: what `sources.preflight` found.
        window: the run's days (from `sources.preflight`): valid rows outside are counted as
            out of the window and not written.
        config: the `ingest` section.
        examples_dir: the folder of the clicks split (GZIP TFRecords of tf.Example).
        quarantine_dir: the folder of the quarantined rows (JSON lines).
        summary_path: where the counts go (`summary.json`).

    Returns:
        The summary: rows read, valid, quarantined (by reason), duplicates, per file.

    Raises:
        IngestError: a file broke off mid-way (the line names it and where), more than
            `max_bad_fraction` of the rows are bad, or none is valid.
    """
    with make_pipeline() as pipeline:
        result = (
            pipeline
            | "ListInputFiles" >> beam.Create(files)
            | "PlanSplits" >> beam.FlatMap(sources.plan_splits, config.split_bytes)
            | "Reshuffle" >> beam.Reshuffle()
            | "IngestClicks"
            >> rows.IngestClicks(
                config.max_id_bytes,
                latest_allowed_timestamp(config, window),
                config.timestamp_unit,
                window.bounds_micros(),
            )
        )
        _ = result["examples"] | "WriteExamples" >> beam.io.WriteToTFRecord(
            os.path.join(examples_dir, "data_tfrecord"), file_name_suffix=".gz"
        )
        _ = (
            result["quarantine"]
            | "QuarantineToJson" >> beam.Map(rows.to_json_line)
            | "WriteQuarantine"
            >> beam.io.WriteToText(
                os.path.join(quarantine_dir, QUARANTINE_PREFIX), file_name_suffix=".jsonl"
            )
        )
        _ = pipeline | "WriteSummary" >> common.WriteJsonOnce(
            summary_path,
            functools.partial(rows.summarize, files, window=window),
            valid_per_file=beam.pvalue.AsDict(result["valid_per_file"]),
            quarantined_per_file=beam.pvalue.AsDict(result["quarantined_per_file"]),
            reasons=beam.pvalue.AsDict(result["reasons"]),
            duplicates=beam.pvalue.AsSingleton(result["duplicates"]),
            blank=beam.pvalue.AsSingleton(result["blank"]),
            file_tallies=beam.pvalue.AsList(result["file_tallies"]),
        )
    # Read back as the stages after it read it: every field there, of its type.
    summary = records.IngestSummary.read(summary_path).to_dict()
    rows.check_counts(summary, config.max_bad_fraction, quarantine_dir)
    return summary
