"""Exact top-N with visited exclusion, against numpy brute force."""

import numpy as np
import pytest

from offline_recall.components.recall import logic


def _brute_force(items, user, visited, top_n):
    scores = items @ user
    order = [i for i in np.argsort(-scores, kind="stable") if i not in set(visited)]
    return np.asarray(order[:top_n]), scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_when_visited_items_are_the_best(seed):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    users = rng.normal(size=(40, 8)).astype(np.float32)
    top_n = 20
    visited = []
    for u in range(len(users)):
        best = np.argsort(-(items @ users[u]))
        # Some users visited exactly their best items (the hard case), others random ones.
        n = int(rng.integers(0, 60))
        visited.append(best[:n] if u % 2 == 0 else rng.choice(300, n, replace=False))
    index = logic.build_index(items)
    results = logic.exact_top_n(index, users, visited, top_n)
    for u, (ids, scores) in enumerate(results):
        expected, all_scores = _brute_force(items, users[u], visited[u], top_n)
        assert len(ids) == top_n
        assert not set(ids.tolist()) & set(np.asarray(visited[u]).tolist())
        # Tie-tolerant: the scores must equal the brute-force scores at every rank.
        np.testing.assert_allclose(scores, all_scores[expected], rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(scores) <= 1e-6)


def test_small_catalog_returns_every_unvisited_item():
    items = np.eye(5, dtype=np.float32)
    index = logic.build_index(items)
    ((ids, _),) = logic.exact_top_n(index, np.ones((1, 5), np.float32), [np.array([0, 1])], 10)
    assert sorted(ids.tolist()) == [2, 3, 4]


def test_rejects_mismatched_inputs():
    index = logic.build_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="visited has 1 users"):
        logic.exact_top_n(index, np.ones((2, 3), np.float32), [np.array([])], 1)


def test_heavy_users_beside_light_ones_stay_exact():
    """One batch: light users, and heavy users who visited most of their best items (a bot)."""
    rng = np.random.default_rng(7)
    items = rng.normal(size=(2000, 16)).astype(np.float32)
    items *= rng.zipf(1.5, size=(2000, 1)).clip(1, 20).astype(np.float32)  # popular = long
    users = rng.normal(size=(60, 16)).astype(np.float32)
    top_n, visited = 50, []
    for u in range(len(users)):
        best = np.argsort(-(items @ users[u]))
        if u % 10 == 0:  # heavy: 1,500 visited, mostly the user's best
            visited.append(np.concatenate([best[:1200], rng.choice(best[1200:], 300, False)]))
        else:
            visited.append(best[: int(rng.integers(0, 40))])
    results = logic.exact_top_n(logic.build_index(items), users, visited, top_n)
    for u, (ids, scores) in enumerate(results):
        expected, all_scores = _brute_force(items, users[u], visited[u], top_n)
        assert len(ids) == min(top_n, 2000 - len(set(visited[u].tolist())))
        assert not set(ids.tolist()) & set(visited[u].tolist())
        np.testing.assert_allclose(scores, all_scores[expected], rtol=1e-5, atol=1e-4)


def test_a_user_who_visited_nearly_everything_gets_what_is_left():
    items = np.random.default_rng(3).normal(size=(100, 8)).astype(np.float32)
    user = np.ones((1, 8), np.float32)
    ((ids, _),) = logic.exact_top_n(logic.build_index(items), user, [np.arange(97)], 10)
    assert sorted(ids.tolist()) == [97, 98, 99]
