"""Recall: every user's exact top-N items by inner product, never an item they visited.

The search itself is `exact.top_n_excluding` (faiss's exact blocked search with per-user
exclusion and early exit); this module runs it in Beam. With `recall.item_shards > 1` the
catalog is split into contiguous shards: each batch of users is predicted once, sent to every
shard (grouped by shard, so a DoFn instance reads one shard's vectors once per work unit and
holds one at a time), and the per-shard lists are merged into the same exact top-N as an
unsharded search, ties included.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import zlib
from collections.abc import Callable, Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from offline_recall.components import common
from offline_recall.components.recall import exact
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records
from offline_recall.core.config import RecallConfig
from offline_recall.trainer import features as F


@dataclasses.dataclass(frozen=True)
class Search:
    """How users are searched: list length, users per batch, items per block, item shards."""

    top_n: int
    batch_size: int
    block_items: int
    item_shards: int

    @classmethod
    def of(cls, config: RecallConfig) -> Search:
        return cls(config.top_n, config.batch_size, config.block_items, config.item_shards)


def shard_bounds(num_items: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) catalog ranges of `shards` near-equal shards."""
    edges = np.linspace(0, num_items, shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@dataclasses.dataclass
class UserBatch:
    """Users predicted together and searched together.

    Attributes:
        key: a key unique to the batch (its first user's id), for the merge after shards.
        user_ids: [batch] original user ids.
        labels: [batch] held-out item ids ("" for serving histories).
        vectors: [batch, dim + 1] float32 user vectors (the 1 that meets the bias appended).
        visited: per user, int64 catalog indices of the visited items the catalog holds.
    """

    key: str
    user_ids: list[str]
    labels: list[str]
    vectors: np.ndarray
    visited: list[np.ndarray]


class _Items:
    """Per-worker item ids and the id -> catalog index map (no vectors)."""

    def __init__(self, model_uri: str):
        self.ids = model_artifact.read_item_ids(model_uri)
        self.index_of = {item: i for i, item in enumerate(self.ids)}

    def visited_indices(self, visited: Iterable[bytes]) -> np.ndarray:
        found = (self.index_of.get(v.decode("utf-8")) for v in visited)
        return np.fromiter((i for i in found if i is not None), np.int64)


# What one call of the serving signature costs beyond its [users, history length] cells, in
# cells: `length_chunks` opens a new chunk only when padding would cost more than this. Measured
# on the 1M-event scale run's model, batches of 1,024 serving users: 79 us per user at 1,024,
# 81 at 2,048, 98 at 8,192, and 304 with one call per batch (132 with one call per length).
CALL_CELLS = 1024


def length_chunks(lengths: np.ndarray, call_cells: int = CALL_CELLS) -> list[np.ndarray]:
    """Cuts a batch into chunks of similar history length, for the model's padded calls.

    The serving model pads a call's histories to its longest one, and its cost grows with
    users x that length. Logs are long-tailed (most users have a few clicks, a few have the
    longest history), so one call per batch pads almost every user to the longest. The users are
    sorted by length and cut where it minimizes the padded cells plus `call_cells` per call
    (exactly, by dynamic programming over the distinct lengths).

    Args:
        lengths: [batch] history lengths.
        call_cells: the per-call cost in cells.

    Returns:
        Index arrays into `lengths`, each sorted by length, together a permutation of the batch.
    """
    order = np.argsort(lengths, kind="stable")
    if not order.size:
        return []
    values, counts = np.unique(lengths[order], return_counts=True)
    ends = np.cumsum(counts)
    # best[j]: the cheapest cost of the users with the j smallest distinct lengths.
    best = [0.0] + [float("inf")] * len(values)
    cut = [0] * (len(values) + 1)
    for j in range(1, len(values) + 1):
        for i in range(j):
            users = ends[j - 1] - (ends[i - 1] if i else 0)
            cost = best[i] + call_cells + users * (int(values[j - 1]) + 1)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds = []
    j = len(values)
    while j:
        bounds.append((int(ends[cut[j] - 1]) if cut[j] else 0, int(ends[j - 1])))
        j = cut[j]
    return [order[a:b] for a, b in reversed(bounds)]


def traced_signature(signature) -> Callable[[tf.Tensor], dict]:
    """The serving signature behind a traced `tf.function` with its input signature.

    In TF 2.15 a loaded signature's structured inputs are empty, so every call by keyword first
    fails to bind them, formats that error with the repr of the whole input batch, and only then
    takes the flat signature. Traced once, the wrapper binds its own input signature and calls the
    graph directly (the 1M-event run's model, 30,720 users: 1.73 s against 1.91 s, same vectors).

    Args:
        signature: a loaded `serving_default` signature, serialized examples [users] in.

    Returns:
        A function of serialized examples [users] (tf.string) to the signature's outputs.
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict(examples):
        return signature(examples=examples)

    return predict


class PredictFn(beam.DoFn):
    """Serialized history examples (a batch) -> one `UserBatch`, with the serving SavedModel.

    The SavedModel and the item id map are per-worker state, loaded once in `setup`. The batch is
    predicted in chunks of similar history length (`length_chunks`); the `UserBatch` keeps that
    order, each user with their own vector.
    """

    def __init__(self, model_uri: str, call_cells: int = CALL_CELLS):
        self._model_uri = model_uri
        self._call_cells = call_cells

    def setup(self):
        self._items = _Items(self._model_uri)
        loaded = tf.saved_model.load(model_artifact.serving_model_path(self._model_uri))
        self._loaded = loaded  # keeps the signature's variables alive
        self._predict = traced_signature(loaded.signatures["serving_default"])

    def process(self, batch: list[bytes]):
        examples = [tf.train.Example.FromString(s) for s in batch]
        lengths = np.fromiter(
            (len(common.bytes_values(e, F.HISTORY)) for e in examples), np.int64, len(examples)
        )
        chunks = length_chunks(lengths, self._call_cells)
        order = np.concatenate(chunks) if chunks else np.empty(0, np.int64)
        raw = [
            self._predict(examples=tf.constant([batch[i] for i in chunk]))[F.USER_VECTOR].numpy()
            for chunk in chunks
        ]
        examples = [examples[i] for i in order]
        labels = [common.bytes_values(e, F.LABEL) for e in examples]
        user_ids = [common.bytes_values(e, F.USER_ID)[0].decode("utf-8") for e in examples]
        yield UserBatch(
            key=user_ids[0],
            user_ids=user_ids,
            labels=[label[0].decode("utf-8") if label else "" for label in labels],
            vectors=model_artifact.augment_user_vectors(np.concatenate(raw)),
            visited=[
                self._items.visited_indices(common.bytes_values(e, F.VISITED)) for e in examples
            ],
        )


def _list_offsets(lengths: np.ndarray) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())


def batch_tables(batch: UserBatch, index: np.ndarray, scores: np.ndarray, item_ids: pa.Array):
    """The recall rows and the user-vector rows of one searched batch, as Arrow tables built from
    the NumPy results (no Python object per item or per float).

    Args:
        batch: the users.
        index: [batch, top_n] catalog indices, -1 padded at the end; scores: [batch, top_n],
            best first.
        item_ids: [items] string array, catalog index -> item id.

    Returns:
        (recalls, user_vectors): tables of `C.RECALLS_SCHEMA` and `C.USER_VECTORS_SCHEMA`.
    """
    found = index >= 0
    offsets = _list_offsets(found.sum(axis=1))
    users = pa.array(batch.user_ids, pa.string())
    recalls = pa.Table.from_arrays(
        [
            users,
            pa.ListArray.from_arrays(offsets, item_ids.take(pa.array(index[found]))),
            pa.ListArray.from_arrays(offsets, pa.array(scores[found], pa.float32())),
            pa.array(batch.labels, pa.string()),
        ],
        schema=C.RECALLS_SCHEMA,
    )
    vectors = np.ascontiguousarray(batch.vectors, np.float32)
    rows, width = vectors.shape
    user_vectors = pa.Table.from_arrays(
        [users, pa.ListArray.from_arrays(_list_offsets(np.full(rows, width)), vectors.ravel())],
        schema=C.USER_VECTORS_SCHEMA,
    )
    return recalls, user_vectors


def _tagged_tables(batch, index, scores, item_ids, counters):
    """`batch_tables` as a DoFn's outputs (recalls main, user vectors tagged), counted."""
    users, short = counters
    recalls, user_vectors = batch_tables(batch, index, scores, item_ids)
    users.inc(len(batch.user_ids))
    short.inc(int((index < 0).any(axis=1).sum()))
    yield recalls
    yield beam.pvalue.TaggedOutput(USER_VECTORS, user_vectors)


def table_rows(table: pa.Table) -> list[dict]:
    """A recall or user-vector table's rows as dicts, for steps that score users one by one."""
    return table.to_pylist()


def _id_array(ids: list[str]) -> pa.Array:
    """Catalog index -> item id, as the string array `batch_tables` takes ids from."""
    return pa.array(ids, pa.string())


USER_VECTORS = "user_vectors"


def _counters():
    return (
        beam.metrics.Metrics.counter("recall", "users"),
        beam.metrics.Metrics.counter("recall", "users_short"),
    )


class SearchFn(beam.DoFn):
    """A `UserBatch` -> its recall rows, searched over the whole catalog (one shard).

    Main output: recall rows; tagged `user_vectors`: one row per user.
    """

    def __init__(self, model_uri: str, search: Search):
        self._model_uri = model_uri
        self._search = search
        self._counters = _counters()

    def setup(self):
        ids, vectors, _ = model_artifact.read_item_vectors(self._model_uri)
        self._ids = _id_array(ids)
        self._catalog = exact.build_catalog(vectors, self._search.block_items)

    def process(self, batch: UserBatch):
        index, scores = exact.top_n_excluding(
            self._catalog, batch.vectors, batch.visited, self._search.top_n
        )
        yield from _tagged_tables(batch, index, scores, self._ids, self._counters)


# Batches of one shard are grouped into this many work units per shard: each unit reads its
# shard once and searches all its batches, and there are item_shards x SHARD_UNITS units to
# spread over workers.
SHARD_UNITS = 16


def to_shards(batch: UserBatch, shards: int):
    """Sends a batch to every item shard: ((shard, unit), batch)."""
    unit = zlib.crc32(batch.key.encode("utf-8")) % SHARD_UNITS
    for shard in range(shards):
        yield (shard, unit), batch


class ShardSearchFn(beam.DoFn):
    """((shard, unit), `UserBatch`es) -> (batch key, (shard's index, shard's scores)).

    A DoFn instance holds one shard's item vectors at a time, items / shards x (dim + 1) x 4
    bytes, read from that shard's rows of the item table only.
    """

    def __init__(self, model_uri: str, search: Search):
        self._model_uri = model_uri
        self._search = search
        self._loaded = beam.metrics.Metrics.counter("recall", "shard_loads")

    def setup(self):
        self._num_items = len(model_artifact.read_item_ids(self._model_uri))
        self._shard = None
        self._catalog = None

    def _catalog_of(self, shard: int) -> exact.Catalog:
        if shard != self._shard:
            self._catalog = None  # frees the previous shard before the next is read
            start, stop = shard_bounds(self._num_items, self._search.item_shards)[shard]
            self._catalog = exact.build_catalog(
                model_artifact.read_item_vector_rows(self._model_uri, start, stop),
                self._search.block_items,
                first_index=start,
            )
            self._shard = shard
            self._loaded.inc()
        return self._catalog

    def process(self, element):
        (shard, _), batches = element
        catalog = self._catalog_of(shard)
        for batch in batches:
            index, scores = exact.top_n_excluding(
                catalog, batch.vectors, batch.visited, self._search.top_n
            )
            yield batch.key, (index, scores)


def keyed_for_merge(batch: UserBatch):
    """(batch key, the batch without its visited items): what the merge needs besides the
    shards' lists, sent once rather than back from every shard."""
    return batch.key, dataclasses.replace(batch, visited=[])


class MergeShardsFn(beam.DoFn):
    """(batch key, [the batch, each shard's (index, scores)]) -> the batch's recall rows, merged
    to the exact top-N."""

    def __init__(self, model_uri: str, search: Search):
        self._model_uri = model_uri
        self._search = search
        self._counters = _counters()

    def setup(self):
        self._ids = _id_array(model_artifact.read_item_ids(self._model_uri))

    def process(self, element):
        key, values = element
        batches = [v for v in values if isinstance(v, UserBatch)]
        parts = [v for v in values if not isinstance(v, UserBatch)]
        if len(batches) != 1 or len(parts) != self._search.item_shards:
            raise ValueError(
                f"batch {key!r}: {len(batches)} batches and {len(parts)} shard results, "
                f"expected 1 and {self._search.item_shards}"
            )
        index, scores = exact.merge_top_n(parts, self._search.top_n)
        yield from _tagged_tables(batches[0], index, scores, self._ids, self._counters)


def num_rows(table: pa.Table) -> int:
    return table.num_rows


def list_lengths(recalls: pa.Table):
    """(list length, users with it) pairs of one recall table."""
    lengths = pc.list_value_length(recalls.column(C.ITEM_IDS_COLUMN)).to_numpy()
    values, counts = np.unique(lengths, return_counts=True)
    return zip(values.tolist(), counts.tolist(), strict=True)


@beam.ptransform_fn
def SearchBatches(batches, model_uri: str, search: Search):  # noqa: N802
    """`UserBatch`es -> {"recalls": tables, "user_vectors": tables} (one pair of Arrow tables per
    batch), over one or many item shards."""
    if search.item_shards == 1:
        outputs = batches | "SearchCatalog" >> beam.ParDo(SearchFn(model_uri, search)).with_outputs(
            USER_VECTORS, main="recalls"
        )
    else:
        shard_lists = (
            batches
            | "ToItemShards" >> beam.FlatMap(to_shards, search.item_shards)
            | "GroupByShard" >> beam.GroupByKey()
            | "SearchShards" >> beam.ParDo(ShardSearchFn(model_uri, search))
        )
        users = batches | "KeyedForMerge" >> beam.Map(keyed_for_merge)
        outputs = (
            (users, shard_lists)
            | "FlattenForMerge" >> beam.Flatten()
            | "GroupShardLists" >> beam.GroupByKey()
            | "MergeShards"
            >> beam.ParDo(MergeShardsFn(model_uri, search)).with_outputs(
                USER_VECTORS, main="recalls"
            )
        )
    return {"recalls": outputs.recalls, "user_vectors": outputs[USER_VECTORS]}


@beam.ptransform_fn
def RecallUsers(histories, model_uri: str, search: Search):  # noqa: N802
    """Serialized history examples -> {"recalls": tables, "user_vectors": tables}, Arrow tables of
    `C.RECALLS_SCHEMA` and `C.USER_VECTORS_SCHEMA` (`table_rows` turns them into rows)."""
    return (
        histories
        | "BatchUsers"
        >> beam.BatchElements(
            min_batch_size=min(64, search.batch_size), max_batch_size=search.batch_size
        )
        | "PredictUsers" >> beam.ParDo(PredictFn(model_uri))
        | "SearchUsers" >> SearchBatches(model_uri, search)
    )


def user_sample_key(serialized: bytes) -> tuple[int, bytes]:
    """(a 64-bit blake2b hash of the history example's user id, the example).

    The hash of the id, not of the example, so a user stays in or out of the sample from day to
    day while their history grows.
    """
    user = common.bytes_values(tf.train.Example.FromString(serialized), F.USER_ID)[0]
    return int.from_bytes(hashlib.blake2b(user, digest_size=8).digest(), "big"), serialized


def _hash_of(keyed: tuple[int, bytes]) -> int:
    return keyed[0]


def _largest_kept(smallest: list[int]) -> int | None:
    return smallest[-1] if smallest else None


def _within(keyed: tuple[int, bytes], largest: int | None) -> bool:
    return largest is not None and keyed[0] <= largest


def _example_of(keyed: tuple[int, bytes]) -> bytes:
    return keyed[1]


@beam.ptransform_fn
def SampleUsers(examples, max_users: int | None):  # noqa: N802
    """History examples (one per user) -> those of the `max_users` users of smallest id hash.

    A uniform sample that is the same for the same users in every run, in RecallEval and in
    Evaluate alike (both draw it from the eval split), so the metrics, the popularity baseline and
    the previous release's baseline are all scored on the same users. None keeps everyone.
    """
    if max_users is None:
        return examples
    keyed = examples | "KeyByUserHash" >> beam.Map(user_sample_key)
    largest = (
        keyed
        | "UserHashes" >> beam.Map(_hash_of)
        | "SmallestHashes" >> beam.combiners.Top.Smallest(max_users)
        | "LargestKept" >> beam.Map(_largest_kept)
    )
    return (
        keyed
        | "InSample" >> beam.Filter(_within, beam.pvalue.AsSingleton(largest))
        | "SampledExamples" >> beam.Map(_example_of)
    )


def summarize(
    split: str,
    top_n: int,
    users: int,
    lengths: dict[int, int],
    split_users: int | None = None,
) -> records.RecallSummary:
    """The recall stage's summary: users, how many got a full or a short list, and (when the
    users were sampled) how many the split held."""
    return records.RecallSummary(
        split=split,
        top_n=top_n,
        users=users,
        sampled_from_users=split_users,
        users_full=sum(v for k, v in lengths.items() if k >= top_n),
        users_short=sum(v for k, v in lengths.items() if k < top_n),
        list_length_histogram={str(k): v for k, v in sorted(lengths.items())},
    )


def recall(
    make_pipeline: Callable[[], beam.Pipeline],
    histories_pattern: str,
    model_uri: str,
    recalls_dir: str,
    summary_path: str,
    split: str,
    config: RecallConfig,
    max_users: int | None = None,
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
        max_users: recall only `SampleUsers`' sample of this many users (None = every user).
    """
    with make_pipeline() as pipeline:
        histories = pipeline | "ReadHistories" >> beam.io.ReadFromTFRecord(histories_pattern)
        sampled = histories | "SampleUsers" >> SampleUsers(max_users)
        result = sampled | "RecallUsers" >> RecallUsers(model_uri, Search.of(config))
        _ = result["recalls"] | "WriteRecalls" >> beam.io.WriteToParquetBatched(
            os.path.join(recalls_dir, C.RECALLS_DIR, "part"),
            C.RECALLS_SCHEMA,
            file_name_suffix=C.PARQUET_SUFFIX,
        )
        _ = result["user_vectors"] | "WriteUserVectors" >> beam.io.WriteToParquetBatched(
            os.path.join(recalls_dir, C.USER_VECTORS_DIR, "part"),
            C.USER_VECTORS_SCHEMA,
            file_name_suffix=C.PARQUET_SUFFIX,
        )
        users = (
            result["recalls"]
            | "UsersPerTable" >> beam.Map(num_rows)
            | "CountUsers" >> beam.CombineGlobally(sum)
        )
        lengths = (
            result["recalls"]
            | "ListLengths" >> beam.FlatMap(list_lengths)
            | "CountPerLength" >> beam.CombinePerKey(sum)
        )
        split_users = {}
        if max_users is not None:
            split_users["split_users"] = beam.pvalue.AsSingleton(
                histories | "CountSplitUsers" >> beam.combiners.Count.Globally()
            )
        _ = pipeline | "WriteSummary" >> common.WriteJsonOnce(
            summary_path,
            functools.partial(summarize, split, config.top_n),
            users=beam.pvalue.AsSingleton(users),
            lengths=beam.pvalue.AsDict(lengths),
            **split_users,
        )
