"""The run report: one self-contained HTML page with PNG plots, written into OUTPUT/report/."""

from __future__ import annotations

import html
import io
import os
import shutil

import matplotlib
import tensorflow as tf

from offline_recall.core import contracts as C
from offline_recall.core import records
from offline_recall.core.contracts import REPORT_PAGE
from offline_recall.core.storage import is_local

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, files: dict[str, bytes], name: str) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    files[name] = buffer.getvalue()
    return name


def _plots(folder, item_counts, history_lengths, metrics_at_k, popularity_metrics_at_k, top1):
    plots, notes = [], []
    if len(item_counts):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        counts = np.sort(np.asarray(item_counts))[::-1]
        ax.loglog(np.arange(1, len(counts) + 1), np.maximum(counts, 1))
        ax.set(xlabel="item rank", ylabel="training clicks", title="Item popularity")
        plots.append(_save(fig, folder, "item_popularity.png"))
    else:
        notes.append("item popularity: no items")
    if len(history_lengths):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(history_lengths, bins=50, log=True)
        ax.set(xlabel="events per user", ylabel="users", title="User history length")
        plots.append(_save(fig, folder, "history_length.png"))
    else:
        notes.append("history length: no users")
    if metrics_at_k:
        ks = sorted(metrics_at_k)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, style in (("hr", "-o"), ("ndcg", "-s")):
            ax.plot(ks, [metrics_at_k[k][name] for k in ks], style, label=f"model {name}")
            ax.plot(
                ks,
                [popularity_metrics_at_k[k][name] for k in ks],
                "--",
                label=f"popularity {name}",
            )
        ax.set(xlabel="K", ylabel="metric", title="Holdout metrics at K")
        ax.legend()
        plots.append(_save(fig, folder, "metrics_at_k.png"))
    if top1 is not None and len(top1):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(top1, bins=50)
        ax.set(xlabel="score", ylabel="users", title="Top-1 recall score")
        plots.append(_save(fig, folder, "top1_scores.png"))
    elif top1 is not None:
        notes.append("top-1 scores: no recalls")
    return plots, notes


def _table(data: dict) -> str:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            cell = _table(value) if value else "{}"
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            cell = "".join(_table(v) for v in value[:20])
        else:
            cell = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def comparison_section(comparison: dict) -> str:
    """ "Compared with the previous release": both models on today's holdout, list churn, new
    items. Says why not when there is nothing to compare with."""
    head = "<h2>Compared with the previous release</h2>"
    if not comparison["compared"]:
        return head + f"<p>Nothing to compare with: {html.escape(comparison['why_not'])}"
    previous = comparison["previous"]
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{_number(v['today'])}</td>"
        f"<td>{_number(v['previous'])}</td></tr>"
        for key, v in comparison["metrics"].items()
    )
    facts = [
        ("users compared (in both releases)", comparison["users_compared"]),
        (
            "users whose top-N changed",
            f"{comparison['users_changed']} ({_pct(comparison['share_changed'])})",
        ),
        ("mean Jaccard similarity of a user's two lists", _number(comparison["mean_jaccard"])),
        ("users new today / gone since", f"{comparison['users_new']} / {comparison['users_gone']}"),
        ("catalog items today", comparison["catalog_items"]),
        (
            "new items (not in the previous catalog) / recalled for someone",
            f"{comparison['new_items']} / {comparison['new_items_recalled']}",
        ),
        ("items dropped from the catalog", comparison["dropped_items"]),
    ]
    fact_rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in facts
    )
    return (
        head + f"<p>Previous release: run {html.escape(str(previous['run_id']))}, date "
        f"{html.escape(str(previous['run_date']))}. Both models are scored on today's "
        "holdout, through the same recall code.</p>"
        f"<table><tr><th>metric</th><th>today</th><th>previous release</th></tr>{rows}</table>"
        f"<p></p><table>{fact_rows}</table>"
    )


def health_section(health: dict | None) -> str:
    """ "Output health": what the lists look like, beyond whether they hit."""
    if not health:
        return ""
    facts = [
        (
            f"share of the catalog recalled in someone's top {C.BLESSING_K}",
            _pct(health[C.metric_key("coverage", C.BLESSING_K)]),
        ),
        (
            f"Gini index of how often items are recalled (top {C.BLESSING_K})",
            _number(health[C.metric_key("gini", C.BLESSING_K)]),
        ),
        ("users with a short list (the catalog ran out)", _pct(health["short_list_share"])),
        (
            "serving-history events on items without a vector (OOV)",
            _pct(health["serving_oov_rate"]),
        ),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in facts
    )
    deciles = health[f"{C.BLESSING_METRIC}_by_popularity_decile"]
    decile_rows = "".join(
        f"<tr><td>{'OOV' if d == '0' else d}</td><td>{v['users']}</td>"
        f"<td>{_number(v[C.BLESSING_METRIC])}</td></tr>"
        for d, v in deciles.items()
    )
    return (
        "<h2>Output health</h2>"
        f"<table>{rows}</table><p>HR@{C.BLESSING_K} by the held-out item's popularity decile (1 = the most "
        "clicked tenth of the catalog):</p><table><tr><th>decile</th><th>eval users</th>"
        f"<th>HR@{C.BLESSING_K}</th></tr>{decile_rows}</table>"
    )


def holdout_note(summary: dict) -> str:
    """How many holdout users the metrics are of, and of how many when they are a sample."""
    scored = summary["evaluate"]["model"]["users"]
    # RecallEval writes sampled_from_users only when it sampled (`evaluate.max_users`).
    split_users = records.RecallSummary.from_dict(summary["recall"]["eval"]).sampled_from_users
    if split_users is None or scored >= split_users:
        return f"<p>Scored on every holdout user: {scored}.</p>"
    return (
        f"<p>Scored on {scored} of {split_users} holdout users: a stable sample by a hash of the "
        "user id (evaluate.max_users); health too is the sample's.</p>"
    )


def write_report(
    report_dir: str,
    summary: dict,
    *,
    item_counts: np.ndarray,
    history_lengths: np.ndarray,
    metrics_at_k: dict[int, dict[str, float]],
    popularity_metrics_at_k: dict[int, dict[str, float]],
    top1_scores: np.ndarray | None = None,
) -> str:
    """Writes index.html and its PNGs into `report_dir` (replaced whole); returns the page path."""
    files: dict[str, bytes] = {}
    plots, notes = _plots(
        files, item_counts, history_lengths, metrics_at_k, popularity_metrics_at_k, top1_scores
    )
    metric_rows = "".join(
        f"<tr><td>{k}</td>"
        + "".join(f"<td>{m[name]:.4f}</td>" for name in ("hr", "ndcg", "coverage"))
        + f"<td>{popularity_metrics_at_k[k]['hr']:.4f}</td></tr>"
        for k, m in sorted(metrics_at_k.items())
    )
    sections = "".join(
        f"<h2>{html.escape(str(name))}</h2>{_table(value)}"
        for name, value in summary.items()
        if isinstance(value, dict)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>offline-recall run</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}}</style></head>
<body><h1>offline-recall run: {html.escape(str(summary["status"]))}</h1>
<p>finished {html.escape(str(summary["finished_at"]))}</p>
<h2>Holdout metrics</h2><table><tr><th>K</th><th>HR</th><th>NDCG</th><th>coverage</th>
<th>popularity HR</th></tr>{metric_rows}</table>{holdout_note(summary)}
{comparison_section(summary["compare"])}
{health_section(summary["evaluate"]["health"])}
{"".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots)}
{"".join(f"<p>{html.escape(n)}</p>" for n in notes)}
{sections}</body></html>"""
    files[REPORT_PAGE] = page.encode("utf-8")
    _write_folder(report_dir, files)
    return os.path.join(report_dir, REPORT_PAGE)


def _write_folder(folder: str, files: dict[str, bytes]) -> None:
    """Replaces `folder` with exactly `files`: locally in one rename, elsewhere file by file."""
    if not is_local(folder):
        tf.io.gfile.makedirs(folder)
        for name, data in files.items():
            with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
                f.write(data)
        for name in tf.io.gfile.listdir(folder):
            if name not in files:
                tf.io.gfile.remove(os.path.join(folder, name))
        return
    staging = f"{folder.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name, data in files.items():
        with open(os.path.join(staging, name), "wb") as f:
            f.write(data)
    old = f"{folder.rstrip('/')}.old-{os.getpid()}"
    if os.path.exists(folder):
        os.rename(folder, old)
    os.rename(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
