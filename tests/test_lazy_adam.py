"""LazyAdam against Adam's update computed by hand: touched rows move as Adam moves them,
untouched rows and their slots do not move at all."""

import numpy as np
import tensorflow as tf

from offline_recall.trainer import model


def _run(optimizer_name, rows, steps=3, table=None):
    graph = tf.Graph()
    with graph.as_default():
        init = np.arange(12, dtype=np.float32).reshape(6, 2) / 10 if table is None else table
        var = tf.compat.v1.get_variable("t", initializer=init, use_resource=True)
        ids = tf.constant(rows, tf.int64)
        loss = tf.reduce_sum(tf.square(tf.nn.embedding_lookup(var, ids)))
        step = model.make_optimizer(optimizer_name, 0.1).minimize(loss)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for _ in range(steps):
                session.run(step)
            return session.run(var)


def _adam_by_hand(init, rows, steps, lr=0.1, b1=0.9, b2=0.98, eps=1e-8):
    x = init.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    touched = sorted(set(rows))
    counts = np.bincount(rows, minlength=len(x))[:, None]
    for t in range(1, steps + 1):
        grad = 2 * x * counts  # duplicates summed
        m[touched] = b1 * m[touched] + (1 - b1) * grad[touched]
        v[touched] = b2 * v[touched] + (1 - b2) * grad[touched] ** 2
        step = lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[touched] / (np.sqrt(v[touched]) + eps)
        x[touched] -= step
    return x


def test_lazy_adam_moves_touched_rows_as_adam_and_leaves_the_rest():
    init = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    rows = [1, 3, 3]
    got = _run("lazy_adam", rows)
    np.testing.assert_allclose(got, _adam_by_hand(init, rows, 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[[0, 2, 4, 5]], init[[0, 2, 4, 5]])


def test_lazy_adam_equals_adam_while_every_row_is_touched_every_step():
    rows = [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(_run("lazy_adam", rows), _run("adam", rows), rtol=1e-5)
