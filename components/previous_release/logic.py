"""Copies the release a run starts from into a Model artifact laid out as the Trainer's.

The artifact holds `Format-Serving/1/` (the release's serving SavedModel), the item vector table,
the warm-start source when the release has one, and `previous.json`; or, when there is no earlier
release, only `previous.json` saying why. A copy, not a reference: the release may be pruned
later, and the artifact must still say what the run started from.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import tensorflow as tf

from offline_recall.components import releases
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records, storage

# The version folder the copied SavedModel gets under Format-Serving.
SERVING_VERSION = "1"


def item_vectors_from_release(release_dir: str) -> pa.Table:
    """A release's published item vectors as the Model artifact's table (indices in file order)."""
    parts = [
        storage.read_parquet(path)
        for path in storage.parquet_files(os.path.join(release_dir, C.ITEM_VECTORS_DIR))
    ]
    table = pa.concat_tables(parts) if parts else C.ITEM_VECTORS_SCHEMA.empty_table()
    return pa.table(
        [
            pa.array(np.arange(table.num_rows, dtype=np.int64)),
            table.column(C.ITEM_ID_COLUMN),
            table.column(C.VECTOR_COLUMN),
            table.column(C.COUNT_COLUMN),
        ],
        schema=C.ITEM_VECTORS_SCHEMA,
    )


def materialize(output_dir: str, run_date: str | None, model_uri: str) -> records.PreviousRelease:
    """Finds the previous release (`releases.previous_release`) and copies it into `model_uri`.

    Args:
        output_dir: the output folder.
        run_date: this run's date (YYYY-MM-DD), or None for an undated input.
        model_uri: the Model artifact to fill.

    Returns:
        What it wrote as previous.json.
    """
    release, why = releases.previous_release(output_dir, run_date)
    if release is None:
        found = records.PreviousRelease.none_found(why)
    else:
        storage.copy_tree(
            os.path.join(release.folder, C.RELEASE_MODEL_DIR),
            os.path.join(model_artifact.serving_model_dir(model_uri), SERVING_VERSION),
        )
        model_artifact.write_item_vectors(model_uri, item_vectors_from_release(release.folder))
        warm = os.path.join(release.folder, C.WARM_START_DIR)
        if tf.io.gfile.isdir(warm):
            storage.copy_tree(warm, os.path.join(model_uri, C.WARM_START_DIR))
        manifest = records.Manifest.read(records.Manifest.path_in(release.folder))
        found = records.PreviousRelease(
            found=True,
            why=why,
            why_not=None,
            run_id=release.run_id,
            run_date=release.run_date,
            release=release.folder,
            metrics=manifest.metrics,
        )
    found.write(records.PreviousRelease.path_in(model_uri))
    return found
