"""Run config: typed sections, every key checked, and a broken value named before any stage."""

import json
import re
import time

import pytest

from offline_recall.core import config as cfg


def test_defaults_are_the_goal_settings():
    config = cfg.load()
    assert config.trainer.encoder == "self_attention"
    assert config.trainer.objective == "per_position"
    assert config.trainer.tie_embeddings and config.trainer.loss == "auto"


def test_sections_are_frozen():
    with pytest.raises(AttributeError):
        cfg.load().trainer.dropout = 0.5


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"trainer": {"loss": "hinge"}}, "trainer.loss"),
        ({"trainer": {"objective": "middle"}}, "trainer.objective"),
        ({"trainer": {"sampler": "zipf"}}, "trainer.sampler"),
        ({"trainer": {"encoder": "rnn"}}, "trainer.encoder"),
        ({"trainer": {"temperature": 0}}, "trainer.temperature"),
        ({"trainer": {"dropout": 1.0}}, "trainer.dropout"),
        ({"trainer": {"dropout": "high"}}, "trainer.dropout"),
        ({"trainer": {"num_heads": 3}}, "trainer.num_heads"),
        ({"trainer": {"early_stopping_patience": -1}}, "trainer.early_stopping_patience"),
        ({"trainer": {"max_train_seconds": "soon"}}, "trainer.max_train_seconds"),
        ({"trainer": {"nonsense": 1}}, "trainer.nonsense"),
        ({"evaluate": {"max_users": 0}}, "evaluate.max_users"),
        ({"evaluate": {"max_users": "all"}}, "evaluate.max_users"),
        ({"trainer": {"refit_epochs": 0}}, "trainer.refit_epochs"),
        ({"trainer": {"refit_min_steps": -1}}, "trainer.refit_min_steps"),
        ({"trainer": {"refit_on_holdout": "yes"}}, "trainer.refit_on_holdout"),
        ({"trainer": {"user_embedding": True}}, "trainer.user_embedding"),  # self_attention
        ({"trainer": {"encoder": "mean_mlp", "recency_feature": 1}}, "trainer.recency_feature"),
        ({"trainer": {"user_embedding_dim": 0}}, "trainer.user_embedding_dim"),
        # Wrong types: a string where a number goes, a bool where an int goes.
        ({"trainer": {"embedding_dim": "64"}}, "trainer.embedding_dim"),
        ({"trainer": {"batch_size": True}}, "trainer.batch_size"),
        ({"trainer": {"epochs": 2.5}}, "trainer.epochs"),
        # Keys the old validate() never checked.
        ({"trainer": {"hidden_units": [0]}}, "trainer.hidden_units"),
        ({"trainer": {"hidden_units": "128"}}, "trainer.hidden_units"),
        ({"trainer": {"l2": -1}}, "trainer.l2"),
        ({"trainer": {"seed": "x"}}, "trainer.seed"),
        ({"evaluate": {"ks": []}}, "evaluate.ks"),
        ({"evaluate": {"ks": [10, "50"]}}, "evaluate.ks[1]"),
        ({"evaluate": {"min_hr_at_50": 1.5}}, "evaluate.min_hr_at_50"),
        ({"evaluate": {"max_regression": -0.1}}, "evaluate.max_regression"),
        ({"trainer": {"item_item_weights": [0.0, 0.1]}}, "trainer.item_item_weights"),
        ({"trainer": {"item_item_l2": 0}}, "trainer.item_item_l2"),
        ({"trainer": {"item_item_rank": 0}}, "trainer.item_item_rank"),
        ({"trainer": {"future_targets": 0}}, "trainer.future_targets"),
        ({"trainer": {"future_target_weight": 0}}, "trainer.future_target_weight"),
        ({"recall": {"batch_size": 0}}, "recall.batch_size"),
        ({"recall": {"top_n": 20}}, "recall.top_n"),  # shorter than the blessing K
        ({"evaluate": {"ks": [200]}}, "recall.top_n"),  # shorter than a K evaluated
        ({"publish": {"keep_releases": -1}}, "publish.keep_releases"),
        ({"ingest": {"now": "today"}}, "ingest.now"),
        ({"ingest": {"max_spans": 0}}, "ingest.max_spans"),
        ({"ingest": {"max_bad_fraction": 2}}, "ingest.max_bad_fraction"),
        ({"sequences": {"min_events_for_holdout": 1}}, "sequences.min_events_for_holdout"),
        ({"transform": {"num_oov_buckets": 0}}, "transform.num_oov_buckets"),
        ({"synthetic": {"num_items": 0}}, "synthetic.num_items"),
        ({"pipeline_name": "Offline Recall"}, "pipeline_name"),
        ({"trainer": 5}, "trainer"),
        ({"nonsense": {}}, "nonsense"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(cfg.ConfigError, match="'" + re.escape(key) + "'"):
        cfg.load(None, overrides)


def test_a_file_merges_over_the_defaults_key_by_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  epochs: 3\nrecall:\n  top_n: 150\n")
    config = cfg.load(str(path))
    assert config.trainer.epochs == 3 and config.trainer.embedding_dim == 64
    assert config.recall.top_n == 150 and config.recall.batch_size == 1024


def test_a_component_gets_its_section_whole_or_not_at_all():
    section = cfg.load().recall
    assert cfg.RecallConfig.from_json(section.to_json()) == section
    partial = json.dumps({"top_n": 100})  # batch_size missing: no silent default
    with pytest.raises(cfg.ConfigError, match="'recall.batch_size' is missing"):
        cfg.RecallConfig.from_json(partial)
    params = cfg.load().trainer_params()
    assert cfg.TrainerParams.from_json(params.to_json()) == params


def test_cli_rejects_a_bad_config_fast_with_one_line(tmp_path, cli):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"trainer": {"embedding_dim": "64"}}))
    started = time.time()
    result = cli("run", "--output", str(tmp_path / "out"), "--config", str(path), timeout=60)
    assert time.time() - started < 30
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.embedding_dim" in lines[0], result.stderr
    assert not (tmp_path / "out" / "tfx").exists()


def test_cli_names_a_broken_config_file(tmp_path, cli):
    path = tmp_path / "broken.yaml"
    path.write_text("trainer: [unclosed\n")
    result = cli("run", "--output", str(tmp_path / "out"), "--config", str(path), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.yaml" in lines[0] and "YAML" in lines[0]


def test_the_readme_names_every_config_key_with_its_default():
    import dataclasses
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("### Configuration") :]
    config = cfg.Config()
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                assert f"| `{section.name}.{f.name}` |" in table, f"{section.name}.{f.name}"
        else:
            assert f"| `{section.name}` |" in table, section.name
