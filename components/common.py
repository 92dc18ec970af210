"""Small helpers every custom component shares: artifact paths, summaries, tf.Example parsing.

Imports without TFX so that the pure logic beside each component stays testable with plain files.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

SUMMARY_FILE = "summary.json"


def split_uri(examples_uri: str, split: str) -> str:
    """Returns the folder TFX keeps one split of an Examples artifact in."""
    return os.path.join(examples_uri, f"Split-{split}")


def split_pattern(examples_uri: str, split: str) -> str:
    """Returns a glob matching every data file of one split."""
    return os.path.join(split_uri(examples_uri, split), "*")


def write_json(path: str, payload: Any) -> None:
    """Writes JSON through a temporary file and a rename, so readers never see half a file."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_json(path: str) -> Any:
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def write_summary(report_uri: str, summary: dict[str, Any]) -> None:
    """Writes a stage's counts as `summary.json` in its StageReport artifact folder."""
    write_json(os.path.join(report_uri, SUMMARY_FILE), summary)


def read_summary(report_uri: str) -> dict[str, Any]:
    return read_json(os.path.join(report_uri, SUMMARY_FILE))


def parse_config(custom_config: str | dict | None) -> dict[str, Any]:
    """Returns a component's config section from the JSON string TFX carries it in."""
    if custom_config is None or custom_config == "":
        return {}
    if isinstance(custom_config, dict):
        return custom_config
    return json.loads(custom_config)


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
