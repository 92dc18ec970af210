"""Custom artifact types of the pipeline.

Standard types (Examples, Model, ModelBlessing...) are used wherever one fits; these cover what
TFX has no type for. Names are `<namespace>.<Type>`, the form the Kubeflow v2 compiler requires.
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


class ScalarMetrics(Artifact):
    """The headline metrics as the artifact's float custom properties (hr@50, ndcg@10 ...).

    Its type is KFP's `system.Metrics`, so the Kubeflow UI shows them as scalar metrics; ML
    Metadata shows the same properties on the artifact.
    """

    TYPE_NAME = "system.Metrics"
