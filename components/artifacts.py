"""Custom artifact types of the pipeline.

Standard types (Examples, Model, ModelBlessing...) are used wherever one fits; these cover what
TFX has no type for.
"""

from tfx.types.artifact import Artifact


class Quarantine(Artifact):
    """Rows that failed ingest validation: JSON lines with source file, row, field and reason."""

    TYPE_NAME = "OfflineRecallQuarantine"


class StageReport(Artifact):
    """A folder holding `summary.json`: one stage's counts, read by Publish for run_summary."""

    TYPE_NAME = "OfflineRecallStageReport"


class Recalls(Artifact):
    """Top-N recalls and user vectors as Parquet (`recalls/`, `user_vectors/`)."""

    TYPE_NAME = "OfflineRecallRecalls"


class RecallMetrics(Artifact):
    """HR / Recall / NDCG / coverage at K on the holdout, as `metrics.json`."""

    TYPE_NAME = "OfflineRecallMetrics"


SUMMARY_FILE = "summary.json"
