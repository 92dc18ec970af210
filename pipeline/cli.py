"""`offline-recall`: run the pipeline locally, or compile it for Kubeflow / Airflow.

offline-recall run --output DIR [--input PATH] [--date YYYY-MM-DD] [--config FILE] [-- beam args]
offline-recall compile --target kubeflow|airflow --output FILE [--input URI] [--output-dir URI]
    [--pipeline-root URI] [--image IMG] [--local] [--catchup] [--config FILE] [-- beam args]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import sys
import time
import traceback
import warnings

# TensorFlow reads this when it is first imported; its C++ start-up chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Library deprecation notices at import time are not for users; the log keeps later ones.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# After the TF settings above.
from offline_recall.core import contracts as C  # noqa: E402
from offline_recall.core import dates, records, storage  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_BLESSED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offline-recall",
        description="Daily TFX pipeline: click logs in, top-N recall candidates per user out.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        usage="offline-recall run --output DIR [--input PATH] [--date YYYY-MM-DD] "
        "[--config FILE] [-- BEAM_ARGS ...]",
        help="run the whole pipeline locally (LocalDagRunner, Beam DirectRunner)",
        description="Run the whole pipeline with LocalDagRunner. Arguments after `--` go to Beam.",
    )
    run.add_argument(
        "--output", required=True, help="output folder (published/, run_summary.json, report/)"
    )
    run.add_argument(
        "--input",
        help="click log: a CSV/Parquet/TFRecord file or a folder of daily YYYY-MM-DD/ spans; "
        "without it, a seeded synthetic click log is generated and used",
    )
    run.add_argument(
        "--date",
        help="the run date, YYYY-MM-DD: with daily YYYY-MM-DD/ folders, the newest day read "
        "(default: the newest folder); events after it are out of the window",
    )
    run.add_argument(
        "--config",
        help="YAML or JSON file overriding core/config.py's defaults ('-': standard input)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    compile_ = sub.add_parser(
        "compile",
        usage="offline-recall compile --target {kubeflow,airflow} --output FILE [options] "
        "[-- BEAM_ARGS ...]",
        help="write a Kubeflow Pipelines v2 package or an Airflow DAG file",
        description="Write the pipeline for a cluster: a KFP v2 package (pipeline spec IR; YAML "
        "for .yaml/.yml, JSON otherwise) whose every task runs --image, or an Airflow DAG file "
        "whose one task runs `offline-recall run` on a worker. Arguments after `--` go to every "
        "Beam stage. A missing or inapplicable option is exit 2.",
    )
    compile_.add_argument("--target", required=True, choices=["kubeflow", "airflow"])
    compile_.add_argument("--output", required=True, help="the file to write")
    compile_.add_argument("--input", help="input_base the compiled pipeline reads")
    compile_.add_argument("--config", help="YAML or JSON config file")
    compile_.add_argument("--pipeline-root", help="artifact root for the compiled pipeline")
    compile_.add_argument(
        "--output-dir",
        help="the output folder the compiled pipeline publishes to (airflow default: "
        "$AIRFLOW_HOME/offline-recall/output)",
    )
    compile_.add_argument(
        "--image",
        help="kubeflow (required): the container every task runs, with a tag or digest",
    )
    compile_.add_argument(
        "--local",
        action="store_true",
        help="kubeflow: allow local paths for --input/--output-dir/--pipeline-root (a package "
        "that runs on this machine); without it they must be object-store URIs",
    )
    compile_.add_argument(
        "--catchup",
        action="store_true",
        help="airflow: backfill every day since the DAG's start date",
    )
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("offline-recall")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _ProgressHandler(logging.Handler):
    """Turns TFX's per-component log lines into one progress line per stage, with timings."""

    def __init__(self, stages, out):
        super().__init__(logging.INFO)
        self._stages = list(stages)
        self._out = out
        self.timings: dict[str, float] = {}
        self.current: str | None = None
        self._last_finished: str | None = None
        self._started = 0.0

    def stage(self) -> str:
        """The stage running now, or where between stages the run is."""
        if self.current:
            return self.current
        return (
            f"between stages (after {self._last_finished})" if self._last_finished else "start-up"
        )

    def emit(self, record):
        if record.msg == "Component %s is running." and record.args:
            self.current = str(record.args[0])
            self._started = time.time()
        elif record.msg == "Component %s is finished." and record.args:
            name = str(record.args[0])
            seconds = time.time() - self._started
            self.timings[name] = round(seconds, 1)
            n = len(self.timings)
            self._out.write(f"[{n:2d}/{len(self._stages)}] {name:<20s} done in {seconds:6.1f}s\n")
            self._out.flush()
            self.current = None
            self._last_finished = name


def _setup_logging(log_path: str, stages) -> _ProgressHandler:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    progress = _ProgressHandler(stages, sys.stdout)
    root.addHandler(progress)
    root.setLevel(logging.INFO)
    # TensorFlow's logger prints to stderr on its own; send it to the log file like the rest.
    tf_logger = logging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):
        tf_logger.removeHandler(handler)
    tf_logger.propagate = True
    logging.captureWarnings(True)
    return progress


def _our_error(exc: BaseException):
    from offline_recall.components.errors import OfflineRecallError
    from offline_recall.core.config import ConfigError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (OfflineRecallError, ConfigError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _write_failure(
    output_dir: str,
    run_id: str,
    stage: str | None,
    message: str,
    timings: dict,
    status: str = C.STATUS_FAILED,
) -> None:
    records.FailedRun(
        status=status,
        run_id=run_id,
        failed_stage=stage,
        error=message,
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(),
        timings_seconds=timings,
    ).write(records.RunSummary.path_in(output_dir))


def _print_summary(summary: records.FinishedRun, out) -> None:
    """Prints a finished run's summary. Report wrote every section, read strictly, so a missing
    one is an error here, never a blank or a 0 in the output."""
    ingest, seq, evaluation = summary.ingest, summary.sequences, summary.evaluate
    model, popular = evaluation.model, evaluation.popularity
    out.write(
        f"ingest: {ingest.rows_read} rows read, {ingest.rows_valid} valid, "
        f"{ingest.rows_quarantined} quarantined, "
        f"{ingest.duplicates_dropped} duplicates dropped\n"
    )
    out.write(
        f"users: {seq.users}, eval users: {seq.users_with_holdout}, "
        f"catalog: {evaluation.catalog_size} items\n"
    )
    for k in evaluation.ks:
        hr, ndcg, coverage = (C.metric_key(name, k) for name in ("hr", "ndcg", "coverage"))
        popular_hr = f"{popular[hr]:.4f}" if popular["users"] else "-"
        out.write(
            f"@{k:<4d} HR {model[hr]:.4f}  NDCG {model[ndcg]:.4f}  "
            f"coverage {model[coverage]:.4f}   (popularity HR {popular_hr})\n"
        )
    health = evaluation.health
    if health is not None:
        k = C.BLESSING_K
        out.write(
            f"health: coverage@{k} {health.coverage:.4f}, gini@{k} {health.gini:.4f}, "
            f"short lists {health.short_list_share:.2%}, serving OOV "
            f"{health.serving_oov_rate:.2%}\n"
        )
    warm = summary.trainer.warm_start
    if warm["used"]:
        source = warm["source"]
        out.write(
            f"warm start: from release {source['run_id']} (date {source['run_date']}): "
            f"{warm['items_carried']} items carried over by id, {warm['items_new']} new\n"
        )
    else:
        out.write(f"trained from scratch: {warm['why_not']}\n")
    compared = summary.compare
    if compared.compared:
        hr = compared.metrics[C.BLESSING_METRIC]
        before = "not scored" if hr["previous"] is None else f"{hr['previous']:.4f}"
        out.write(
            f"vs previous release {compared.previous.run_id} (date {compared.previous.run_date}) "
            f"on today's holdout: {C.BLESSING_METRIC} {hr['today']:.4f} vs {before}; lists "
            f"changed for {compared.users_changed} of {compared.users_compared} users; "
            f"{compared.new_items} new items, {compared.new_items_recalled} recalled\n"
        )
    blend = summary.trainer.item_item
    if blend.get("used"):
        out.write(
            f"item-item blend: {blend['why']}; EASE rank {blend['rank']} adds {blend['rank']} "
            f"dimensions to the vectors\n"
        )
    elif "why_not" in blend or "why" in blend:
        out.write(f"item-item blend: not used: {blend.get('why_not') or blend['why']}\n")
    refit = summary.trainer.refit
    if refit is not None:
        out.write(
            f"refit: the metrics above are the fit's; the vectors come from a refit on every "
            f"event ({refit.epochs} epochs, "
            f"{'warm start' if refit.warm_start else 'from scratch'})\n"
        )
    publish = summary.publish
    if publish.published:
        out.write(
            f"published: {publish.release} "
            f"(pointer: {os.path.join(summary.output, C.LATEST_FILE)})\n"
        )
        for replaced in publish.replaced:
            out.write(f"replaced the earlier release of the same date: {replaced}\n")
        if not publish.pointed:
            out.write(f"LATEST stays on {publish.current}: it is of a later date than this run's\n")
    else:
        out.write(
            "NOT published (previous set kept): " + "; ".join(publish.not_blessed_because) + "\n"
        )


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so no library's `except Exception` eats it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame) -> None:
    del frame
    raise Interrupted(signum)


def _one_line(message: str) -> str:
    """The first line of an error, without what Beam appends when it re-raises."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return first.split(" [while running")[0]


def _bad(message: str) -> int:
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_run(args, beam_args: list[str]) -> int:
    from offline_recall.core import config as config_lib

    if not storage.is_local(args.output):
        # The ML Metadata store, the lock, the log and TMPDIR of a local run live in the output
        # folder; on an object store a compiled pipeline (Kubeflow, Airflow) is the way.
        return _bad(
            f"--output {args.output}: `run` writes to a local folder; for an object store, "
            "compile the pipeline (offline-recall compile --target kubeflow|airflow)"
        )
    output_dir = os.path.abspath(args.output)
    try:
        config = config_lib.load(args.config)
    except config_lib.ConfigError as e:
        return _bad(str(e))
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        return _bad(f"--output {output_dir} is a file, not a folder")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        return _bad(f"--output {output_dir}: cannot create the folder: {e.strerror}")

    from offline_recall.pipeline import housekeeping

    run_id = dates.new_run_id()
    lock = housekeeping.OutputLock(output_dir)
    try:
        lock.acquire(run_id)
    except housekeeping.OutputBusyError as e:
        return _bad(str(e))
    except OSError as e:
        return _bad(f"--output {output_dir}: cannot lock the folder: {e.strerror}")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _raise_interrupted)
    try:
        with housekeeping.run_temp_dir(output_dir, run_id):
            return _run_locked(args, beam_args, config, output_dir, run_id, lock)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lock.release()


def _run_locked(args, beam_args, config, output_dir: str, run_id: str, lock) -> int:
    from offline_recall.pipeline import housekeeping, local_runner

    started = time.time()
    log_path = os.path.join(output_dir, C.LOGS_DIR, f"run-{run_id}.log")
    from offline_recall.pipeline.pipeline import stages

    progress = _setup_logging(log_path, stages(config))
    log = logging.getLogger(__name__)
    print(f"offline-recall run {run_id}: output {output_dir} (log: {log_path})", flush=True)
    if lock.stale:
        note = f"took over a stale lock of {housekeeping.OutputLock.describe(lock.stale)}"
        print(note, flush=True)
        log.warning(note)
    paths = local_runner.paths(output_dir)
    cancelled = 0
    from offline_recall.components.publish import logic as publish

    if publish.sync_published_link(output_dir):
        print("pointed the `published` link at LATEST's release again", flush=True)
    try:
        cancelled = housekeeping.cancel_stale_executions(paths["metadata"])
        if cancelled:
            note = f"marked {cancelled} execution(s) of an interrupted run CANCELED in ML Metadata"
            print(note, flush=True)
            log.warning(note)

        input_note = ""
        if args.input:
            input_base = args.input if "://" in args.input else os.path.abspath(args.input)
        else:
            from offline_recall.components.ingest import sources
            from offline_recall.pipeline import synthetic

            last_day = synthetic.DEFAULT_LAST_DAY
            if args.date:
                try:
                    last_day = sources.parse_run_date(args.date)
                except sources.IngestError as e:
                    return _bad(str(e))
            input_base = os.path.join(output_dir, "input", "synthetic")
            facts = synthetic.generate_days(input_base, config.synthetic, last_day)
            input_note = (
                f"the built-in synthetic click log (synthetic.seed {config.synthetic.seed}: "
                f"{facts['rows']} rows, {facts['users']} users, {facts['items']} items, "
                f"{config.synthetic.days} daily folders {facts['days'][0]}..{facts['days'][1]}, "
                f"{facts['new_items']} items released after the first day)"
            )
            print(f"no --input: generated {input_note} at {input_base}", flush=True)

        from offline_recall.components.ingest import sources

        try:
            files, window = sources.preflight(input_base, config.ingest, args.date)
        except Exception as e:  # noqa: BLE001 - only our own errors are printed as one line
            ours = _our_error(e)
            if ours is None:
                raise
            _write_failure(output_dir, run_id, "IngestExampleGen", str(ours), {})
            return _bad(str(ours))
        if window.run_date:
            spans = sorted({f.span for f in files})
            how = "given" if args.date else "the newest day folder"
            days = f"from {window.first_day}" if window.first_day else "all history"
            first, last = (dates.date_of_span(s).isoformat() for s in (spans[0], spans[-1]))
            print(
                f"run date {window.run_date} ({how}); window: {days}; "
                f"{len(spans)} span(s) {spans[0]}..{spans[-1]} ({first}..{last})",
                flush=True,
            )
            # Span 0 is a file outside any day folder: only day folders can miss the date.
            if spans[-1] and last != window.run_date:
                print(
                    f"the run date {window.run_date} has no day folder with data: "
                    f"ingest.allow_missing_run_date lets the run cover the days before it",
                    flush=True,
                )

        try:
            local_runner.run(
                input_base,
                output_dir,
                config,
                beam_args,
                run_id=run_id,
                input_note=input_note,
                run_date=window.run_date or "",
            )
        except Exception as e:  # noqa: BLE001 - reported as one line; the traceback goes to the log
            log.error("run failed:\n%s", traceback.format_exc())
            ours = _our_error(e)
            stage = progress.current
            message = _one_line(str(ours)) if ours else f"{type(e).__name__}: {e}"
            _write_failure(output_dir, run_id, stage, message, progress.timings)
            if ours:
                return _bad(message)
            print(f"error: stage {stage} failed: {message}", file=sys.stderr)
            print(
                f"(full traceback in {log_path}; the published set was not changed)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    except Interrupted as e:
        stage = progress.stage()
        log.error("run %s interrupted by %s during %s", run_id, e, stage)
        _write_failure(
            output_dir,
            run_id,
            stage,
            f"interrupted by {e}",
            progress.timings,
            status=C.STATUS_INTERRUPTED,
        )
        housekeeping.cancel_stale_executions(paths["metadata"])
        print(
            f"interrupted by {e} during {stage}; the published set was not changed",
            file=sys.stderr,
        )
        return 128 + e.signum

    summary_path = records.RunSummary.path_in(output_dir)
    report = records.RunSummary.read(summary_path)
    removed = housekeeping.prune_pipeline_root(
        paths["pipeline_root"], paths["metadata"], config.publish.keep_runs
    )
    summary = records.FinishedRun(
        **report.field_values(),
        housekeeping=records.Housekeeping(
            artifact_folders_removed=len(removed),
            keep_runs=config.publish.keep_runs,
            stale_executions_cancelled=cancelled,
            output_bytes=housekeeping.folder_size(output_dir),
        ),
        timings_seconds={**progress.timings, "total": round(time.time() - started, 1)},
    )
    summary.write(summary_path)
    _print_summary(summary, sys.stdout)
    if input_note and summary.status == C.STATUS_PUBLISHED:
        print(f"(these recalls are for {input_note}; pass --input for your own log)")
    print(
        f"done in {time.time() - started:.1f}s; output folder "
        f"{summary.housekeeping.output_bytes / 2**20:.1f} MiB; summary {summary_path}, "
        f"report {os.path.join(output_dir, C.REPORT_DIR, C.REPORT_PAGE)}"
    )
    return EXIT_OK if summary.status == C.STATUS_PUBLISHED else EXIT_NOT_BLESSED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args, beam_args)
    from offline_recall.pipeline import compile as compile_lib

    return compile_lib.cmd_compile(args, beam_args)


if __name__ == "__main__":
    sys.exit(main())
