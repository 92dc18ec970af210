"""The contracts core spells without TFX agree with TFX's own constants and helpers."""

import os

import pytest
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import path_utils

from offline_recall.components import common
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact


@pytest.mark.parametrize(
    ("ours", "tfx_name"),
    [
        ("EXAMPLES_KEY", "EXAMPLES_KEY"),
        ("ANOMALIES_KEY", "ANOMALIES_KEY"),
        ("SCHEMA_KEY", "SCHEMA_KEY"),
        ("MODEL_KEY", "MODEL_KEY"),
        ("BLESSING_KEY", "BLESSING_KEY"),
        ("CONFIG_KEY", "CUSTOM_CONFIG_KEY"),
        ("INPUT_BASE_KEY", "INPUT_BASE_KEY"),
    ],
)
def test_a_standard_channel_key_is_spelled_as_tfx_spells_it(ours, tfx_name):
    assert getattr(C, ours) == getattr(standard_component_specs, tfx_name)


def test_the_serving_model_folder_is_tfx_s():
    uri = os.path.join("pipeline_root", "Trainer", "model", "7")
    assert model_artifact.serving_model_dir(uri) == path_utils.serving_model_dir(uri)


def test_a_split_s_files_are_in_the_folder_tfx_gives_it():
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join("root", "examples", "1")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    folder = artifact_utils.get_split_uri([examples], "eval")
    assert common.split_files(folder) == os.path.join(examples.uri, "Split-eval", "*")
    with pytest.raises(ValueError, match="serving"):
        artifact_utils.get_split_uri([examples], "serving")
