"""Exact top-N recall over the item vectors, never returning an item the user has visited.

Exactness: for a user with v visited catalog items, the best `top_n` unvisited items are always
inside the best `top_n + v` items overall (at most v of those are visited), so one exact faiss
search of depth k = top_n + max(v in batch) followed by dropping visited items is exact, not a
heuristic over-fetch. When the catalog holds fewer than top_n unvisited items, the user gets them
all and is counted as short.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence

import apache_beam as beam
import faiss
import numpy as np
import tensorflow as tf

from offline_recall.components import common
from offline_recall.components import contracts as C
from offline_recall.pipeline.config import RecallConfig
from offline_recall.trainer import export
from offline_recall.trainer import features as F


def build_index(item_vectors: np.ndarray) -> faiss.IndexFlatIP:
    """Returns an exact inner-product index over [num_items, dim] float32 vectors."""
    index = faiss.IndexFlatIP(item_vectors.shape[1])
    index.add(np.ascontiguousarray(item_vectors, dtype=np.float32))
    return index


# Items searched beyond top_n in the first pass; users with more visited items among their best
# come back for a deeper search of their own.
OVERFETCH = 32


def _search_rows(index, user_vectors, rows, visited_sets, top_n, depth):
    """Searches `rows` to `depth`; returns {row: (ids, scores)} with visited items dropped."""
    scores, ids = index.search(np.ascontiguousarray(user_vectors[rows]), depth)
    found = {}
    for row, row_ids, row_scores in zip(rows, ids, scores, strict=True):
        seen = visited_sets[row]
        keep = np.fromiter((i >= 0 and i not in seen for i in row_ids), bool, len(row_ids))
        found[row] = (row_ids[keep][:top_n].astype(np.int64), row_scores[keep][:top_n])
    return found


def exact_top_n(
    index: faiss.Index,
    user_vectors: np.ndarray,
    visited: Sequence[np.ndarray],
    top_n: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Returns each user's best `top_n` items by inner product, excluding their visited items.

    Exactness: the best `top_n` unvisited items of a user lie within their best
    `top_n + v` items, v = their visited items in the catalog. One pass searches every user to
    depth `top_n + OVERFETCH`; a user who still has `top_n` unvisited items there is done, and
    only the others (those with many visited items among their best, such as heavy users) are
    searched again, to their own depth. So one heavy user no longer drags a whole batch into a
    near-full-catalog search.

    Args:
        index: an exact inner-product faiss index over the catalog.
        user_vectors: [batch, dim] float32.
        visited: per user, the catalog indices they visited (any order, duplicates allowed).
        top_n: list length wanted.

    Returns:
        Per user (item indices [<=top_n] int64, scores [<=top_n] float32), best first; shorter
        only when the catalog holds fewer unvisited items.
    """
    if len(visited) != user_vectors.shape[0]:
        raise ValueError(f"visited has {len(visited)} users, user_vectors {user_vectors.shape[0]}")
    if index.ntotal == 0 or user_vectors.shape[0] == 0:
        return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in visited]
    user_vectors = np.asarray(user_vectors, dtype=np.float32)
    visited_sets = [set(np.asarray(v, dtype=np.int64).tolist()) for v in visited]
    total = index.ntotal
    first_depth = min(total, top_n + OVERFETCH)
    found = _search_rows(
        index, user_vectors, list(range(len(visited_sets))), visited_sets, top_n, first_depth
    )
    # Short after the first pass, though the user's own depth goes further: search again.
    redo = [
        row
        for row, (ids, _) in found.items()
        if len(ids) < top_n and first_depth < min(total, top_n + len(visited_sets[row]))
    ]
    # Users of similar depth together: a heavy user is searched deep, alone or with its kind.
    redo.sort(key=lambda row: len(visited_sets[row]))
    for start in range(0, len(redo), 64):
        group = redo[start : start + 64]
        depth = min(total, top_n + max(len(visited_sets[row]) for row in group))
        found.update(_search_rows(index, user_vectors, group, visited_sets, top_n, depth))
    return [found[row] for row in range(len(visited_sets))]


class RecallFn(beam.DoFn):
    """Predicts user vectors with the serving SavedModel and searches the item index.

    The SavedModel and the faiss index are per-worker state, loaded once in `setup`.
    Main output: recall rows; tagged `user_vectors`: one row per user.
    """

    USER_VECTORS = "user_vectors"

    def __init__(self, model_uri: str, top_n: int):
        self._model_uri = model_uri
        self._top_n = top_n
        self._users = beam.metrics.Metrics.counter("recall", "users")
        self._short = beam.metrics.Metrics.counter("recall", "users_short")

    def setup(self):
        self._item_ids, vectors, _ = export.read_item_vectors(self._model_uri)
        self._index_of = {item: i for i, item in enumerate(self._item_ids)}
        self._index = build_index(vectors)
        loaded = tf.saved_model.load(export.serving_model_path(self._model_uri))
        self._loaded = loaded  # keeps the signature's variables alive
        self._predict = loaded.signatures["serving_default"]

    def _visited_indices(self, visited: Iterable[bytes]) -> np.ndarray:
        found = (self._index_of.get(v.decode("utf-8")) for v in visited)
        return np.fromiter((i for i in found if i is not None), np.int64)

    def process(self, batch: list[bytes]):
        examples = [tf.train.Example.FromString(s) for s in batch]
        raw = self._predict(examples=tf.constant(batch))[F.USER_VECTOR].numpy()
        user_vectors = export.augment_user_vectors(raw)
        visited = [self._visited_indices(common.bytes_values(e, F.VISITED)) for e in examples]
        results = exact_top_n(self._index, user_vectors, visited, self._top_n)
        for example, vector, (ids, scores) in zip(examples, user_vectors, results, strict=True):
            user_id = common.bytes_values(example, F.USER_ID)[0].decode("utf-8")
            label = common.bytes_values(example, F.LABEL)
            self._users.inc()
            if len(ids) < self._top_n:
                self._short.inc()
            yield {
                C.USER_ID_COLUMN: user_id,
                C.ITEM_IDS_COLUMN: [self._item_ids[i] for i in ids],
                C.SCORES_COLUMN: [float(s) for s in scores],
                C.HELD_OUT_COLUMN: label[0].decode("utf-8") if label else "",
            }
            yield beam.pvalue.TaggedOutput(
                self.USER_VECTORS, {C.USER_ID_COLUMN: user_id, C.VECTOR_COLUMN: vector.tolist()}
            )


def list_length(row: dict) -> int:
    return len(row[C.ITEM_IDS_COLUMN])


@beam.ptransform_fn
def RecallUsers(histories, model_uri: str, top_n: int, batch_size: int):  # noqa: N802
    """Serialized history examples -> {"recalls": rows, "user_vectors": rows}."""
    batches = histories | "BatchUsers" >> beam.BatchElements(
        min_batch_size=min(64, batch_size), max_batch_size=batch_size
    )
    outputs = batches | "PredictAndSearch" >> beam.ParDo(RecallFn(model_uri, top_n)).with_outputs(
        RecallFn.USER_VECTORS, main="recalls"
    )
    return {"recalls": outputs.recalls, "user_vectors": outputs[RecallFn.USER_VECTORS]}


def summarize(split: str, top_n: int, users: int, lengths: dict[int, int]) -> dict:
    """The recall stage's summary: users, and how many got a full or a short list."""
    return {
        "split": split,
        "top_n": top_n,
        "users": users,
        "users_full": sum(v for k, v in lengths.items() if k >= top_n),
        "users_short": sum(v for k, v in lengths.items() if k < top_n),
        "list_length_histogram": {str(k): v for k, v in sorted(lengths.items())},
    }


def recall(
    make_pipeline: Callable[[], beam.Pipeline],
    histories_pattern: str,
    model_uri: str,
    recalls_dir: str,
    summary_path: str,
    split: str,
    config: RecallConfig,
) -> None:
    """Writes every user's top-N (`recalls/`) and vector (`user_vectors/`) as Parquet.

    Args:
        make_pipeline: returns the Beam pipeline to run the steps in.
        histories_pattern: glob of one split's serialized history examples.
        model_uri: the Model artifact (serving SavedModel and item vectors).
        recalls_dir: the Recalls artifact's folder.
        summary_path: where the counts go.
        split: the split's name, recorded in the summary.
        config: the `recall` section.
    """
    with make_pipeline() as pipeline:
        histories = pipeline | "ReadHistories" >> beam.io.ReadFromTFRecord(histories_pattern)
        result = histories | "RecallUsers" >> RecallUsers(
            model_uri, config.top_n, config.batch_size
        )
        _ = result["recalls"] | "WriteRecalls" >> beam.io.WriteToParquet(
            os.path.join(recalls_dir, C.RECALLS_DIR, "part"),
            C.RECALLS_SCHEMA,
            file_name_suffix=C.PARQUET_SUFFIX,
        )
        _ = result["user_vectors"] | "WriteUserVectors" >> beam.io.WriteToParquet(
            os.path.join(recalls_dir, C.USER_VECTORS_DIR, "part"),
            C.USER_VECTORS_SCHEMA,
            file_name_suffix=C.PARQUET_SUFFIX,
        )
        users = result["recalls"] | "CountUsers" >> beam.combiners.Count.Globally()
        lengths = (
            result["recalls"]
            | "ListLength" >> beam.Map(list_length)
            | "CountPerLength" >> beam.combiners.Count.PerElement()
        )
        _ = pipeline | "WriteSummary" >> common.WriteJsonOnce(
            summary_path,
            functools.partial(summarize, split, config.top_n),
            users=beam.pvalue.AsSingleton(users),
            lengths=beam.pvalue.AsDict(lengths),
        )
