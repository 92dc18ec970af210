"""Custom artifact types of the pipeline.

Standard types (Examples, Model, ModelBlessing, Metrics...) are used wherever one fits; these
cover what TFX has no type for. Each `TYPE_NAME` is `offline_recall.<Type>`: the Kubeflow v2
compiler needs `<namespace>.<Type>` as the schema title, and TFX's Kubeflow entrypoint imports the
title as a class path, which `offline_recall/__init__.py` resolves to the class here.
"""

from tfx.types.artifact import Artifact


class Quarantine(Artifact):
    """Rows that failed ingest validation: JSON lines with source file, row, field and reason."""

    TYPE_NAME = "offline_recall.Quarantine"


class StageReport(Artifact):
    """A folder holding `summary.json`: one stage's counts, read by Publish for run_summary."""

    TYPE_NAME = "offline_recall.StageReport"


class Recalls(Artifact):
    """Top-N recalls and user vectors as Parquet (`recalls/`, `user_vectors/`)."""

    TYPE_NAME = "offline_recall.Recalls"


class RecallMetrics(Artifact):
    """HR / Recall / NDCG / coverage at K on the holdout, as `metrics.json`."""

    TYPE_NAME = "offline_recall.Metrics"


CUSTOM_TYPES = (Quarantine, StageReport, Recalls, RecallMetrics)
