"""The contracts between stages: channel keys, artifact file names, table schemas, the blessing K.

Whoever reads or writes one of these imports it from here; no stage spells another's file name.
Feature, split and vocabulary names are `trainer/features.py`'s. Imports without TFX or TF.
"""

from __future__ import annotations

import pyarrow as pa

# --- Channel keys (component inputs and outputs), as TFX keeps its `*_KEY` constants. ---
# Those a standard TFX component shares (examples, anomalies, schema, model, blessing, and the
# custom_config and input_base parameters) are spelled as `tfx.types.standard_component_specs`
# spells them, which this module cannot import; tests/test_contracts.py checks they agree.
EXAMPLES_KEY = "examples"
ANOMALIES_KEY = "anomalies"
QUARANTINE_KEY = "quarantine"
REPORT_KEY = "report"
SEQUENCES_KEY = "sequences"
MODEL_KEY = "model"
RECALLS_KEY = "recalls"
METRICS_KEY = "metrics"
SCALAR_METRICS_KEY = "scalar_metrics"
BLESSING_KEY = "blessing"
RELEASE_KEY = "release"
# The last blessed release of an earlier date, as a Model artifact: warm start, baseline, churn.
PREVIOUS_KEY = "previous"
COMPARISON_KEY = "comparison"
SCHEMA_KEY = "schema"
# The Report component's inputs: one stage report each.
INGEST_REPORT_KEY = "ingest_report"
INPUT_NOTE_KEY = "input_note"
SEQUENCES_REPORT_KEY = "sequences_report"
SERVING_RECALL_REPORT_KEY = "serving_recall_report"
EVAL_RECALL_REPORT_KEY = "eval_recall_report"

# --- Execution parameter keys. ---
CONFIG_KEY = "custom_config"  # a component's own config section, as JSON
INPUT_BASE_KEY = "input_base"
OUTPUT_DIR_KEY = "output_dir"
SPLIT_KEY = "split"
# Recall: score only a stable sample of this many users (RecallEval gets evaluate.max_users).
MAX_USERS_KEY = "max_users"
OBJECTIVE_KEY = "objective"
WRITE_REFIT_SPLIT_KEY = "write_refit_split"
FAIL_ON_ANOMALIES_KEY = "fail_on_anomalies"
SCHEMA_NAME_KEY = "schema_name"
RUN_ID_KEY = "run_id"
RUN_DATE_KEY = "run_date"
WINDOW_FIRST_DAY_KEY = "window_first_day"  # the Examples artifact's: training starts that day
RUN_CONFIG_KEY = "run_config"  # the whole run config, recorded in the manifest, never read

# --- Files inside artifacts. ---
SUMMARY_FILE = "summary.json"  # a StageReport's counts
RAW_METRICS_FILE = "raw.json"  # Evaluate's Beam output, before blessing
METRICS_FILE = "metrics.json"  # RecallMetrics, and a release's copy
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"  # inside ModelBlessing
BLESSED_PROPERTY = "blessed"  # ModelBlessing's int custom property
TRAIN_SUMMARY_FILE = "train_summary.json"  # inside the Model artifact
# TFX's serving SavedModel folder in a Model artifact (`path_utils.serving_model_dir`).
SERVING_MODEL_DIR = "Format-Serving"
ITEM_VECTORS_DIR = "item_vectors"  # Model artifact and release
ITEM_VECTORS_FILE = "item_vectors.parquet"
CHECKPOINT_DIR = "checkpoint"  # Model artifact: the exported checkpoint, for Refit
CHECKPOINT_NAME = "model.ckpt"
# Model artifact and release: the trained variables (no optimizer slots), their item vocabulary
# and architecture, for a later date's warm start.
WARM_START_DIR = "warm_start"
WARM_START_VOCAB_FILE = "item_vocab.txt"
WARM_START_INFO_FILE = "warm_start.json"
# The PreviousRelease component's Model artifact: which release it holds, or why none.
PREVIOUS_FILE = "previous.json"
RECALLS_DIR = "recalls"  # Recalls artifact and release
USER_VECTORS_DIR = "user_vectors"  # Recalls artifact and release
QUARANTINE_PREFIX = "quarantine"  # Quarantine artifact: quarantine-*.jsonl
PARQUET_SUFFIX = ".parquet"

# --- The output folder. ---
RUN_SUMMARY_FILE = "run_summary.json"
REPORT_DIR = "report"
REPORT_PAGE = "index.html"
RELEASES_DIR = "releases"
# The pointer to the current release: JSON {run_id, release, published_at}, written in one object
# write after the release is whole. Consumers read it; `published` is a local convenience link.
LATEST_FILE = "LATEST"
PUBLISHED_LINK = "published"
MANIFEST_FILE = "manifest.json"
# A release's item vectors as a faiss IndexFlatIP (row i = row i of ITEM_INDEX_IDS_FILE), for
# online serving that searches the same index Recall's exact search implements.
ITEM_INDEX_DIR = "item_index"
ITEM_INDEX_FILE = "index.faiss"
ITEM_INDEX_IDS_FILE = "item_ids.parquet"
RELEASE_MODEL_DIR = "user_model"  # the serving SavedModel, in a release
LOGS_DIR = "logs"
# run_summary.json's `status`.
STATUS_PUBLISHED, STATUS_NOT_BLESSED = "published", "not_blessed"
STATUS_FAILED, STATUS_INTERRUPTED = "failed", "interrupted"

# --- Table columns and schemas. ---
USER_ID_COLUMN = "user_id"
ITEM_ID_COLUMN = "item_id"
ITEM_IDS_COLUMN = "item_ids"
SCORES_COLUMN = "scores"
VECTOR_COLUMN = "vector"
COUNT_COLUMN = "count"
ITEM_INDEX_COLUMN = "item_index"
HELD_OUT_COLUMN = "held_out_item"  # the eval split's held-out item ("" when serving)

# What Recall writes: a recall list per user, best first, and the user's vector.
RECALLS_SCHEMA = pa.schema(
    [
        (USER_ID_COLUMN, pa.string()),
        (ITEM_IDS_COLUMN, pa.list_(pa.string())),
        (SCORES_COLUMN, pa.list_(pa.float32())),
        (HELD_OUT_COLUMN, pa.string()),
    ]
)
USER_VECTORS_SCHEMA = pa.schema(
    [(USER_ID_COLUMN, pa.string()), (VECTOR_COLUMN, pa.list_(pa.float32()))]
)
# What the trainer writes into its Model artifact.
ITEM_VECTORS_SCHEMA = pa.schema(
    [
        (ITEM_INDEX_COLUMN, pa.int64()),
        (ITEM_ID_COLUMN, pa.string()),
        (VECTOR_COLUMN, pa.list_(pa.float32())),
        (COUNT_COLUMN, pa.int64()),
    ]
)
# The product's public output: the columns of each published table, in order.
PUBLISHED_COLUMNS = {
    RECALLS_DIR: (USER_ID_COLUMN, ITEM_IDS_COLUMN, SCORES_COLUMN),
    USER_VECTORS_DIR: (USER_ID_COLUMN, VECTOR_COLUMN),
    ITEM_VECTORS_DIR: (ITEM_ID_COLUMN, VECTOR_COLUMN, COUNT_COLUMN),
}

# --- Metrics and the blessing. ---
# The K that blessing and early stopping judge a model at: Evaluate always computes it, whatever
# `evaluate.ks` lists, and recall lists must be at least this long.
BLESSING_K = 50


def metric_key(name: str, k: int) -> str:
    """The key of a metric at K in metrics.json: `hr@50`, `ndcg@10`, `coverage@100`."""
    return f"{name}@{k}"


BLESSING_METRIC = metric_key("hr", BLESSING_K)
# The trainer's holdout metrics for early stopping (`trainer.early_stopping_metric`), by their
# metrics.json key: the name each has in the Estimator's evaluation and the train summary.
EARLY_STOPPING_NDCG_K = 10
EARLY_STOPPING_NDCG = metric_key("ndcg", EARLY_STOPPING_NDCG_K)
EARLY_STOPPING_METRICS = {
    BLESSING_METRIC: f"hit_rate_at_{BLESSING_K}",
    EARLY_STOPPING_NDCG: f"ndcg_at_{EARLY_STOPPING_NDCG_K}",
}
