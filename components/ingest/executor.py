"""IngestExampleGen executor: preflight, run `IngestClicks`, write counts, enforce the bad limit."""

from __future__ import annotations

import os
import time

import apache_beam as beam
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.ingest import rows, sources
from offline_recall.trainer import features as F


def run_ingest(pipeline, files, config, examples_uri, quarantine_uri, summary_path) -> None:
    """Adds the ingest steps to `pipeline`; the summary is written when it runs."""
    now = config.get("now")
    latest_allowed = int(now if now is not None else time.time()) + int(
        config.get("future_tolerance_seconds", 0)
    )
    result = (
        pipeline
        | "ListInputFiles" >> beam.Create(files)
        | "Reshuffle" >> beam.Reshuffle()
        | "IngestClicks" >> rows.IngestClicks(int(config.get("max_id_bytes", 256)), latest_allowed)
    )
    _ = result["examples"] | "WriteExamples" >> beam.io.WriteToTFRecord(
        os.path.join(common.split_uri(examples_uri, F.INGEST_SPLIT), "data_tfrecord"),
        file_name_suffix=".gz",
    )
    _ = (
        result["quarantine"]
        | "QuarantineToJson" >> beam.Map(rows.to_json_line)
        | "WriteQuarantine"
        >> beam.io.WriteToText(
            os.path.join(quarantine_uri, "quarantine"), file_name_suffix=".jsonl"
        )
    )
    _ = (
        pipeline
        | "Once" >> beam.Create([None])
        | "WriteSummary"
        >> beam.Map(
            _write_summary,
            files,
            summary_path,
            beam.pvalue.AsDict(result["valid_per_file"]),
            beam.pvalue.AsDict(result["quarantined_per_file"]),
            beam.pvalue.AsDict(result["reasons"]),
            beam.pvalue.AsSingleton(result["duplicates"]),
            beam.pvalue.AsSingleton(result["blank"]),
        )
    )


def _write_summary(_, files, path, valid, quarantined, reasons, duplicates, blank):
    common.write_json(path, rows.summarize(files, valid, quarantined, reasons, duplicates, blank))


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        config = common.parse_config(exec_properties["custom_config"])
        input_base = exec_properties["input_base"]
        files = sources.preflight(input_base, config)
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        examples.split_names = artifact_utils.encode_split_names([F.INGEST_SPLIT])
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples.set_string_custom_property("file_format", "tfrecords_gzip")
        examples.set_string_custom_property("input_base", input_base)
        examples.span = max(f.span for f in files)
        quarantine_uri = artifact_utils.get_single_uri(output_dict["quarantine"])
        report_uri = artifact_utils.get_single_uri(output_dict["report"])
        summary_path = os.path.join(report_uri, common.SUMMARY_FILE)

        with self._make_beam_pipeline() as pipeline:
            run_ingest(pipeline, files, config, examples.uri, quarantine_uri, summary_path)

        summary = common.read_json(summary_path)
        rows.check_bad_fraction(
            summary, float(config.get("max_bad_fraction", 0.01)), quarantine_uri
        )
