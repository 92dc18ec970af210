"""Copies a schema this package ships into a Schema artifact's folder. Knows nothing of TFX."""

from __future__ import annotations

import importlib.resources
import os

import tensorflow as tf

# The file name TFX's schema readers look for in a Schema artifact.
SCHEMA_FILE = "schema.pbtxt"


def import_packaged_schema(name: str, schema_dir: str) -> str:
    """Writes the package's schema/<name> as <schema_dir>/schema.pbtxt; returns its path.

    Read from the installed package, not from a path: a compiled pipeline then names no file
    of the machine that compiled it, and every container finds the schema it was built with.
    """
    text = importlib.resources.files("offline_recall.schema").joinpath(name).read_text()
    tf.io.gfile.makedirs(schema_dir)
    path = os.path.join(schema_dir, SCHEMA_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
    return path
