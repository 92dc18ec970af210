"""The typed records stages hand each other: written and read back equal, read strictly."""

import pytest
from conftest import make_evaluation, make_provenance

from offline_recall.core import records


def test_every_record_round_trips_through_its_file(tmp_path):
    evaluation = make_evaluation(0.5, ks=(10, 50), baseline_hr=0.4)
    previous = records.PreviousRelease(
        True, "the newest", None, "r1", None, "/out/releases/r1", evaluation.release_metrics()
    )
    manifest = records.Manifest.from_dict(
        {
            **make_provenance("r2", "2024-01-02"),
            "input_spans": [19723, 19724],
            "input_span_dates": ["2024-01-01", "2024-01-02"],
            "metrics": evaluation.release_metrics().to_dict(),
            "rows": {"recalls": 3},
            "files": {"recalls/part-00000.parquet": {"bytes": 10, "sha256": "ab", "rows": 3}},
            "model_fingerprint": None,
        }
    )
    published = records.PublishSummary(True, "r2", "/out/releases/r2", True, "/x", (), (), (), None)
    for record in (
        evaluation,
        previous,
        records.PreviousRelease.none_found("nothing published yet"),
        manifest,
        records.CompareSummary.not_compared("nothing published yet"),
        published,
    ):
        path = str(tmp_path / f"{type(record).__name__}.json")
        record.write(path)
        assert type(record).read(path) == record
    assert manifest.input_spans == (19723, 19724)
    assert evaluation.to_dict()["baseline"]["model"]["hr@50"] == 0.4


def test_a_missing_unknown_null_or_mistyped_field_is_an_error_naming_file_and_field():
    good = records.PreviousRelease.none_found("x").to_dict()
    with pytest.raises(records.RecordError, match="previous.json is missing the field 'why_not'"):
        records.PreviousRelease.from_dict(
            {k: v for k, v in good.items() if k != "why_not"}, where="previous.json"
        )
    with pytest.raises(records.RecordError, match="unknown field 'extra'"):
        records.PreviousRelease.from_dict({**good, "extra": 1})
    with pytest.raises(records.RecordError, match=r"\.found must be bool, got None"):
        records.PreviousRelease.from_dict({**good, "found": None})
    with pytest.raises(records.RecordError, match=r"\.found must be bool, got 'no'"):
        records.PreviousRelease.from_dict({**good, "found": "no"})
    summary = records.PublishSummary(False, "r", None, None, None, (), (), ("why",), None)
    with pytest.raises(records.RecordError, match=r"\.run_id must be str, got 7"):
        records.PublishSummary.from_dict({**summary.to_dict(), "run_id": 7})


def test_metric_keys_of_an_evaluation_follow_its_ks():
    evaluation = make_evaluation(ks=(5, 50))
    assert set(records.metric_names((5, 50))) <= set(evaluation.model)
    assert "hr@5" in records.metric_names((5,)) and "coverage@50" in records.metric_names((50,))
    health = records.Health(0.3, 0.9, 0.0, {"1": {"hr@50": 0.5, "users": 2}}, 10, 0.0)
    assert set(health.to_dict()) >= {"gini@50", "coverage@50", "hr@50_by_popularity_decile"}
