"""The typed records stages hand each other: written and read back equal, read strictly."""

import pytest
from conftest import make_evaluation, make_provenance, make_train_summary

from offline_recall.core import records, storage


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


def _sequences(refit_examples: int | None = 7) -> records.SequencesSummary:
    return records.SequencesSummary(
        users=3,
        events=9,
        distinct_items=4,
        users_with_holdout=2,
        train_examples=5,
        eval_examples=2,
        serving_examples=3,
        events_per_user_histogram={"2": 1, "3": 1, "4": 1},
        max_history=50,
        min_events_for_holdout=3,
        objective="last_position",
        refit_examples=refit_examples,
    )


def _recall(sampled_from_users: int | None = None) -> records.RecallSummary:
    return records.RecallSummary(
        split="eval",
        top_n=100,
        users=2,
        sampled_from_users=sampled_from_users,
        users_full=1,
        users_short=1,
        list_length_histogram={"3": 1, "100": 1},
    )


def _ingest() -> records.IngestSummary:
    counts = dict.fromkeys(
        ("rows_read", "rows_valid", "rows_quarantined", "duplicates_dropped"), 0
    ) | dict.fromkeys(
        ("rows_out_of_window", "rows_before_window", "rows_written", "blank_lines_skipped"), 0
    )
    lines = dict.fromkeys(("lines_read", "lines_valid", "lines_quarantined", "blank_lines"), 0)
    return records.IngestSummary(
        **counts,
        **lines,
        timestamp_units={"seconds": 0},
        reasons={},
        files=({"path": "/in/a.csv", "format": "csv", "span": 0, "rows_read": 0, "lines_read": 0},),
        file_errors=(),
        spans=(0,),
        run_date=None,
        window_first_day=None,
    )


def _run(sampled: int | None = 2) -> records.RunSummary:
    train = make_train_summary(refit=True)
    return records.RunSummary(
        status="published",
        run_id="r1",
        finished_at="2024-01-02T00:00:00+00:00",
        input="/in",
        output="/out",
        ingest=records.IngestReport(**_ingest().field_values(), quarantine_path="/q"),
        sequences=_sequences(),
        transform=records.TransformSizes(train.vocab_size, train.num_classes),
        trainer=train,
        recall=records.RecallReports(serving=_recall(), eval=_recall(sampled)),
        evaluate=make_evaluation(),
        compare=records.CompareSummary.not_compared("nothing published yet"),
        publish=records.PublishSummary(
            True, "r1", "/out/releases/r1", True, None, (), (), (), None
        ),
    )


def test_the_stage_summaries_and_the_run_summary_round_trip(tmp_path):
    run = _run()
    finished = records.FinishedRun(
        **run.field_values(),
        housekeeping=records.Housekeeping(3, 5, 0, 1024),
        timings_seconds={"Trainer": 12.5, "total": 30.0},
    )
    failed = records.FailedRun("failed", "r2", None, "no input", "2024-01-03T00:00:00", {})
    for record in (
        _sequences(),
        _sequences(None),
        _recall(),
        _recall(200),
        make_train_summary(),
        make_train_summary(refit=True),
        run,
        finished,
        failed,
    ):
        path = str(tmp_path / "record.json")
        record.write(path)
        assert type(record).read(path) == record, type(record).__name__
    assert records.RunSummary.path_in("/out") == "/out/run_summary.json"
    assert records.TrainSummary.path_in("/m") == "/m/train_summary.json"


def test_the_summaries_keep_the_keys_earlier_releases_wrote():
    # An optional count is left out, not written as null: readers test for the key.
    assert "refit_examples" not in _sequences(None).to_dict()
    assert _sequences().to_dict()["refit_examples"] == 7
    assert "sampled_from_users" not in _recall().to_dict()
    assert list(_recall(200).to_dict())[:4] == ["split", "top_n", "users", "sampled_from_users"]
    train = make_train_summary().to_dict()
    assert "refit" not in train and make_train_summary(refit=True).to_dict()["refit"]["epochs"]
    assert set(train["eval_history"][0]) == {
        "epochs",
        "seconds",
        "eval_loss",
        "hit_rate_at_50",
        "ndcg_at_10",
    }
    assert {"embeddings_tied", "ensemble_size", "item_vector", "user_vector"} <= set(train)
    run = _run().to_dict()
    assert run["ingest"]["quarantine_path"] == "/q" and run["ingest"]["rows_read"] == 0
    assert run["transform"] == {"vocab_size": 10, "num_classes": 12}
    assert run["recall"]["eval"]["sampled_from_users"] == 2
    assert "sampled_from_users" not in run["recall"]["serving"]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_sequences(), "users_with_holdout"),
        (_recall(), "users_full"),
        (make_train_summary(), "best_epochs"),
        (make_train_summary(), "warm_start"),
        (_run(), "sequences"),
        (records.FailedRun("failed", "r", "Trainer", "boom", "t", {}), "failed_stage"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, records.Record) else v,
)
def test_a_stage_summary_missing_a_field_or_with_an_unknown_one_is_refused(record, field):
    good = record.to_dict()
    where = f"/a/{type(record).__name__}.json"
    without = {k: v for k, v in good.items() if k != field}
    with pytest.raises(records.RecordError, match=f"{where} is missing the field '{field}'"):
        type(record).from_dict(without, where=where)
    with pytest.raises(records.RecordError, match=f"{where} has an unknown field 'extra'"):
        type(record).from_dict({**good, "extra": 1}, where=where)


def test_a_nested_record_names_the_field_inside_it(tmp_path):
    run = _run().to_dict()
    del run["trainer"]["eval_history"][1]["ndcg_at_10"]
    path = str(tmp_path / "run_summary.json")
    storage.write_json(path, run)
    with pytest.raises(
        records.RecordError, match=r"run_summary.json.trainer.eval_history\[1\] is missing "
    ):
        records.RunSummary.read(path)
    run = _run().to_dict()
    del run["recall"]["eval"]["users"]
    with pytest.raises(records.RecordError, match=r"\.recall\.eval is missing the field 'users'"):
        records.RunSummary.from_dict(run)
    # Only the declared optional keys may be absent; an optional one written as null reads too.
    assert records.RecallSummary.from_dict({**_recall().to_dict(), "sampled_from_users": None})
    train = make_train_summary().to_dict()
    del train["eval_loss"]
    with pytest.raises(records.RecordError, match="missing the field 'eval_loss'"):
        records.TrainSummary.from_dict(train)


def test_the_cli_prints_a_finished_run_from_its_record():
    import io

    from offline_recall.pipeline import cli

    finished = records.FinishedRun(
        **_run().field_values(),
        housekeeping=records.Housekeeping(0, 5, 0, 1024),
        timings_seconds={"total": 1.0},
    )
    out = io.StringIO()
    cli._print_summary(finished, out)  # noqa: SLF001 - the printing of a run, on its own
    text = out.getvalue()
    assert "ingest: 0 rows read" in text and "users: 3, eval users: 2" in text
    assert "trained from scratch: a test" in text and "refit: " in text and "(1 epochs" in text
    assert "published: /out/releases/r1 (pointer: /out/LATEST)" in text
