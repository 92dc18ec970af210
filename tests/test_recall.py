"""Exact top-N with visited exclusion, against numpy brute force; item shards against one catalog.

Most tests use small-integer vectors: float32 products of them are exact, so the brute force and
the blocked SGEMM agree bit for bit, and equal scores (ties) are everywhere.
"""

import hashlib
import itertools

import apache_beam as beam
import faiss
import numba
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from offline_recall.components import common
from offline_recall.components.recall import exact, logic
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact
from offline_recall.trainer import features as F


def brute_force(items, user, visited, top_n):
    """Best `top_n` unvisited indices by score, ties to the lower index, in float64."""
    scores = items.astype(np.float64) @ user.astype(np.float64)
    scores[np.asarray(list(visited), dtype=np.int64)] = -np.inf
    order = np.lexsort((np.arange(len(items)), -scores))
    order = order[np.isfinite(scores[order])][:top_n]
    return order, scores[order]


def integer_case(seed, num_items=300, num_users=40, dim=6, heavy=3):
    rng = np.random.default_rng(seed)
    items = rng.integers(-3, 4, size=(num_items, dim)).astype(np.float32)
    # Popular (low-index) items get longer vectors, as a softmax model gives them.
    items[: num_items // 10] *= 3
    users = rng.integers(-3, 4, size=(num_users, dim)).astype(np.float32)
    visited = [rng.choice(num_items, size=rng.integers(0, 30)) for _ in range(num_users)]
    for user in range(heavy):  # heavy users: most of the catalog, the best items first
        best = np.argsort(-(items @ users[user]), kind="stable")
        visited[user] = best[: num_items - 5 - user * 40]
    return items, users, visited


def check_exact(items, users, visited, top_n, index, scores):
    for user in range(len(users)):
        want, want_scores = brute_force(items, users[user], visited[user], top_n)
        got = index[user][index[user] >= 0]
        np.testing.assert_array_equal(got, want, err_msg=f"user {user}")
        np.testing.assert_array_equal(scores[user][: len(got)], want_scores.astype(np.float32))
        assert (index[user][len(got) :] == -1).all()
        assert np.isneginf(scores[user][len(got) :]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_items", [7, 64, 1000])
def test_matches_brute_force_with_ties_and_heavy_users(seed, block_items):
    items, users, visited = integer_case(seed)
    catalog = exact.build_catalog(items, block_items)
    index, scores = exact.top_n_excluding(catalog, users, visited, 20)
    assert index.shape == scores.shape == (len(users), 20)
    check_exact(items, users, visited, 20, index, scores)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("block_items", [50, 1000])
def test_every_thread_count_gives_the_exact_lists(threads, block_items):
    # 200 users: enough rows for up to 3 threads of `_MIN_ROWS_PER_THREAD`; blocks of 50 and
    # 1000 columns have 3 and 62 groups of 16 plus a tail.
    items, users, visited = integer_case(4, num_items=1000, num_users=200)
    assert len(users) >= threads * exact._MIN_ROWS_PER_THREAD
    catalog = exact.build_catalog(items, block_items)
    index, scores = exact.top_n_excluding(catalog, users, visited, 20, threads=threads)
    check_exact(items, users, visited, 20, index, scores)


def test_nan_scores_never_enter_and_never_hide_a_better_score():
    # 64 columns = 4 groups of 16: column 0 (NaN) shares its group with 4, 8, ..., 60, and
    # column 4 is the best score.
    scores = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (3, 1))
    scores[:, 0] = np.nan
    scores[:, 4] = 5.0
    heap_scores = np.full((3, 63), -np.inf, np.float32)
    heap_index = np.full((3, 63), -1, np.int64)
    exact.offer(scores, np.arange(3), 0, heap_scores, heap_index)
    index, best = exact.canonical_order(heap_index, heap_scores)
    assert (index[:, 0] == 4).all() and (best[:, 0] == 5.0).all()
    assert not (index == 0).any() and not np.isnan(best).any()
    assert sorted(index[0].tolist()) == list(range(1, 64))


def test_rejects_vectors_that_are_not_finite():
    items = np.ones((5, 3), np.float32)
    items[3, 1] = np.nan
    with pytest.raises(ValueError, match="1 item vector.*the first at row 13"):
        exact.build_catalog(items, 2, first_index=10)
    users = np.ones((2, 3), np.float32)
    users[1, 0] = np.inf
    with pytest.raises(ValueError, match="1 user vector.*the first at row 1"):
        exact.top_n_excluding(
            exact.build_catalog(np.ones((5, 3), np.float32), 2), users, [[]] * 2, 1
        )


def test_kernels_compile_without_a_cache_folder(monkeypatch):
    # What numba does when neither the module's folder nor a user cache folder is writable.
    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(_twice)

    compiled = exact._jit()(_twice)
    assert compiled(21) == 42
    assert isinstance(compiled._cache, caching.NullCache)


def test_warm_up_compiles_the_kernel_for_the_search_types():
    exact.warm_up()
    assert exact._offer_rows.signatures
    # The search's own call adds no second compilation.
    catalog = exact.build_catalog(np.eye(40, dtype=np.float32), 33)
    exact.top_n_excluding(catalog, np.ones((2, 40), np.float32), [[]] * 2, 3, threads=1)
    assert len(exact._offer_rows.signatures) == 1


def _twice(value):
    return value * 2


def test_matches_faiss_flat_ip_search_when_nothing_was_visited():
    # Continuous vectors (no ties): the same lists as faiss's exact inner-product search.
    rng = np.random.default_rng(11)
    items = rng.normal(size=(3000, 16)).astype(np.float32)
    users = rng.normal(size=(150, 16)).astype(np.float32)
    flat = faiss.IndexFlatIP(16)
    flat.add(items)
    want_scores, want_index = flat.search(users, 25)
    index, scores = exact.top_n_excluding(
        exact.build_catalog(items, 256), users, [[]] * len(users), 25
    )
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_early_exit_stays_exact_when_most_users_close_in_the_first_block():
    rng = np.random.default_rng(3)
    items = rng.normal(size=(2000, 16)).astype(np.float32)
    items *= (20.0 / np.arange(1, 2001) ** 0.7)[:, None].astype(np.float32)  # skewed norms
    users = rng.normal(size=(50, 16)).astype(np.float32)
    visited = [rng.choice(100, size=rng.integers(0, 60), replace=False) for _ in range(50)]
    catalog = exact.build_catalog(items, 100)
    assert catalog.head_norm[0] > 5 * catalog.head_norm[-1]
    index, scores = exact.top_n_excluding(catalog, users, visited, 10)
    for user in range(50):
        want, want_scores = brute_force(items, users[user], visited[user], 10)
        np.testing.assert_array_equal(index[user], want)
        np.testing.assert_allclose(scores[user], want_scores, rtol=1e-5)


def test_small_catalog_returns_every_unvisited_item_padded():
    items = np.arange(10, dtype=np.float32).reshape(5, 2)
    catalog = exact.build_catalog(items, 2)
    index, scores = exact.top_n_excluding(catalog, np.ones((1, 2), np.float32), [[0, 1, 1]], 4)
    assert index.tolist() == [[4, 3, 2, -1]]
    assert scores[0, :3].tolist() == [17.0, 13.0, 9.0] and np.isneginf(scores[0, 3])


def test_a_user_who_visited_everything_gets_an_empty_list():
    catalog = exact.build_catalog(np.eye(4, dtype=np.float32), 3)
    index, _ = exact.top_n_excluding(catalog, np.ones((2, 4), np.float32), [range(4), []], 2)
    assert index.tolist() == [[-1, -1], [0, 1]]


def test_rejects_mismatched_inputs():
    catalog = exact.build_catalog(np.eye(3, dtype=np.float32), 2)
    with pytest.raises(ValueError, match="visited has 1 users"):
        exact.top_n_excluding(catalog, np.ones((2, 3), np.float32), [[]], 1)
    with pytest.raises(ValueError, match="do not match item vectors"):
        exact.top_n_excluding(catalog, np.ones((1, 4), np.float32), [[]], 1)
    with pytest.raises(ValueError, match="block_items must be positive"):
        exact.build_catalog(np.eye(3, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="threads must be None .every core. or at least 1"):
        exact.top_n_excluding(catalog, np.ones((1, 3), np.float32), [[]], 1, threads=0)


def test_shard_bounds_cover_the_catalog_once():
    assert logic.shard_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert logic.shard_bounds(2, 3) == [(0, 1), (1, 1), (1, 2)]


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_sharded_equals_unsharded_ties_included(shards):
    items, users, visited = integer_case(5, num_items=250)
    whole = exact.top_n_excluding(exact.build_catalog(items, 32), users, visited, 15)
    parts = []
    for start, stop in logic.shard_bounds(len(items), shards):
        shard = exact.build_catalog(items[start:stop], 32, first_index=start)
        parts.append(exact.top_n_excluding(shard, users, visited, 15))
    merged = exact.merge_top_n(parts, 15)
    np.testing.assert_array_equal(merged[0], whole[0])
    np.testing.assert_array_equal(merged[1], whole[1])
    # Equal scores are common here, so the tie rule decided some of these lists.
    assert any(len(set(row.tolist())) < 15 for row in whole[1])


def user_of(row):
    return row[C.USER_ID_COLUMN]


def _model_with_items(tmp_path, items) -> str:
    model_uri = str(tmp_path / "model")
    keys = [f"item {i}".encode() for i in range(len(items))]
    table = pa.table(
        {
            C.ITEM_INDEX_COLUMN: np.arange(len(items), dtype=np.int64),
            C.ITEM_ID_COLUMN: [k.decode() for k in keys],
            C.VECTOR_COLUMN: [row.tolist() for row in items],
            C.COUNT_COLUMN: np.ones(len(items), dtype=np.int64),
        },
        schema=C.ITEM_VECTORS_SCHEMA,
    )
    model_artifact.write_item_vectors(model_uri, table)
    return model_uri


def test_beam_item_shards_give_the_unsharded_rows(tmp_path):
    items, users, visited = integer_case(7, num_items=120, num_users=30)
    model_uri = _model_with_items(tmp_path, items)
    np.testing.assert_array_equal(
        model_artifact.read_item_vector_rows(model_uri, 30, 70), items[30:70]
    )

    def batches():
        return [
            logic.UserBatch(
                key=f"user {start}",
                user_ids=[f"user {u}" for u in range(start, start + 10)],
                labels=["" for _ in range(10)],
                vectors=users[start : start + 10],
                visited=[np.asarray(v, np.int64) for v in visited[start : start + 10]],
            )
            for start in range(0, 30, 10)
        ]

    expected = []
    for user in range(30):
        index, scores = brute_force(items, users[user], visited[user], 12)
        expected.append(
            (f"user {user}", tuple(f"item {i}" for i in index), tuple(scores.astype(np.float32)))
        )

    def key(row):
        return (
            row[C.USER_ID_COLUMN],
            tuple(row[C.ITEM_IDS_COLUMN]),
            tuple(np.float32(s) for s in row[C.SCORES_COLUMN]),
        )

    for shards in (1, 4):
        search = logic.Search(top_n=12, batch_size=10, block_items=16, item_shards=shards)
        with beam.Pipeline() as pipeline:
            out = pipeline | beam.Create(batches()) | logic.SearchBatches(model_uri, search)
            rows = out["recalls"] | "RecallRows" >> beam.FlatMap(logic.table_rows)
            assert_that(rows | beam.Map(key), equal_to(expected))
            assert_that(
                out["user_vectors"]
                | "VectorRows" >> beam.FlatMap(logic.table_rows)
                | beam.Map(user_of),
                equal_to([f"user {u}" for u in range(30)]),
                label="UserVectors",
            )


def _history(user: str) -> bytes:
    example = common.make_example({F.USER_ID: [user.encode()], F.VISITED: [b"i1"]})
    return example.SerializeToString()


def _user_of_example(serialized: bytes) -> str:
    example = tf.train.Example.FromString(serialized)
    return common.bytes_values(example, F.USER_ID)[0].decode()


@pytest.mark.parametrize("max_users", [None, 1, 37, 500])
def test_sample_users_keeps_the_users_of_smallest_id_hash(max_users):
    users = [f"user-{i}" for i in range(300)] + ["ünïcode user", ""]
    by_hash = sorted(users, key=lambda u: hashlib.blake2b(u.encode(), digest_size=8).digest())
    expected = by_hash if max_users is None else by_hash[:max_users]
    with beam.Pipeline() as pipeline:
        examples = pipeline | beam.Create([_history(u) for u in users])
        sampled = examples | logic.SampleUsers(max_users) | beam.Map(_user_of_example)
        assert_that(sampled, equal_to(expected))


def test_sample_of_no_users_is_empty():
    with beam.Pipeline() as pipeline:
        examples = pipeline | beam.Create([]) | beam.Map(bytes)
        assert_that(examples | logic.SampleUsers(5), equal_to([]))


def test_batch_tables_hold_each_users_list_best_first_and_their_vector():
    batch = logic.UserBatch(
        key="a",
        user_ids=["a", "b", "c"],
        labels=["i2", "", "i0"],
        vectors=np.arange(9, dtype=np.float32).reshape(3, 3) / 4,
        visited=[],
    )
    index = np.array([[2, 0, 1], [1, -1, -1], [-1, -1, -1]])
    scores = np.array([[3.5, 2.25, 1.0], [0.5, -np.inf, -np.inf], [-np.inf] * 3], np.float32)
    recalls, vectors = logic.batch_tables(batch, index, scores, pa.array(["i0", "i1", "i2"]))
    assert recalls.schema == C.RECALLS_SCHEMA and vectors.schema == C.USER_VECTORS_SCHEMA
    columns = (C.USER_ID_COLUMN, C.ITEM_IDS_COLUMN, C.SCORES_COLUMN, C.HELD_OUT_COLUMN)
    assert logic.table_rows(recalls) == [
        dict(zip(columns, row, strict=True))
        for row in (
            ("a", ["i2", "i0", "i1"], [3.5, 2.25, 1.0], "i2"),
            ("b", ["i1"], [0.5], ""),
            ("c", [], [], "i0"),
        )
    ]
    assert logic.table_rows(vectors) == [
        {C.USER_ID_COLUMN: u, C.VECTOR_COLUMN: (np.arange(3) / 4 + 3 * n * 0.25).tolist()}
        for n, u in enumerate("abc")
    ]
    assert sorted(logic.list_lengths(recalls)) == [(0, 1), (1, 1), (3, 1)]


def _padded_cost(lengths, chunks, call_cells):
    return sum(call_cells + len(c) * (int(lengths[c].max()) + 1) for c in chunks)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("call_cells", [0, 8, 40, 10**6])
def test_length_chunks_partition_the_batch_at_the_cheapest_cuts(seed, call_cells):
    rng = np.random.default_rng(seed)
    # Long-tailed, as real histories are: mostly short, a few at the cap.
    lengths = np.minimum(rng.zipf(1.6, size=int(rng.integers(1, 60))), 12)
    chunks = logic.length_chunks(lengths, call_cells)
    np.testing.assert_array_equal(np.sort(np.concatenate(chunks)), np.arange(len(lengths)))
    for a, b in zip(chunks[:-1], chunks[1:], strict=True):
        assert lengths[a].max() < lengths[b].min()
    # Against every way to cut the sorted distinct lengths into contiguous chunks.
    values = np.unique(lengths)
    best = min(
        _padded_cost(
            lengths,
            [
                np.flatnonzero((lengths >= values[lo]) & (lengths <= values[hi - 1]))
                for lo, hi in zip((0, *cuts), (*cuts, len(values)), strict=True)
            ],
            call_cells,
        )
        for r in range(len(values))
        for cuts in itertools.combinations(range(1, len(values)), r)
    )
    assert _padded_cost(lengths, chunks, call_cells) == best
    if call_cells == 0:
        assert len(chunks) == len(values)
    if call_cells == 10**6:
        assert len(chunks) == 1


def test_length_chunks_of_no_users():
    assert logic.length_chunks(np.empty(0, np.int64)) == []
