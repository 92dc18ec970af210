"""The training loops: the fit, one session that scores the holdout every few epochs and stops
early, and the refit.

Both build their Estimator with `make_estimator`, so a seed, its checkpoints and its logging mean
the same in either.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time

import tensorflow as tf

from offline_recall.core.contracts import EARLY_STOPPING_METRICS
from offline_recall.trainer import model as model_lib

# The Estimator checkpoints only at the start and the end of training, never on a timer; the fit
# keeps its best under BEST_CHECKPOINT_DIR.
_NO_TIMED_CHECKPOINTS = 10**9
# Under the model_dir: the fit's best checkpoint so far.
BEST_CHECKPOINT_DIR = "best"


def make_estimator(
    model_dir: str, params: dict, seed: int, keep_checkpoints: int, warm_start_from=None
) -> tf.estimator.Estimator:
    """An Estimator over `model_lib.model_fn` whose graph-level randomness is `seed`."""
    # Keras layers (attention) draw unseeded initializer seeds from Python's `random`.
    tf.keras.utils.set_random_seed(seed)
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=seed,
        save_checkpoints_secs=_NO_TIMED_CHECKPOINTS,
        keep_checkpoint_max=keep_checkpoints,
        log_step_count_steps=500,
    )
    return tf.estimator.Estimator(
        model_lib.model_fn, params=params, config=run_config, warm_start_from=warm_start_from
    )


def with_params(estimator: tf.estimator.Estimator, params: dict) -> tf.estimator.Estimator:
    """The same model_fn, run config and model_dir with other params (the export's)."""
    if model_lib.ITEM_ITEM_USER_ROWS not in params:
        return estimator
    return tf.estimator.Estimator(model_lib.model_fn, params=params, config=estimator.config)


@dataclasses.dataclass
class EarlyStopping:
    """Keras's stopping rule: a score is better only if it beats the best by more than
    `min_delta`; stop after `patience` scores in a row that are not.

    Without a `min_delta`, a 0.0001 HR@50 wiggle on a plateau restarts the patience: on Amazon
    Beauty that trained 10 more epochs (~120 s) for a best 0.0001 above the one before.
    """

    patience: int
    min_delta: float
    best: float | None = None
    stale: int = 0

    def update(self, value: float) -> tuple[bool, bool]:
        """Records a score; returns (it is the new best, training should stop)."""
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.stale = value, 0
            return True, False
        self.stale += 1
        return False, self.stale >= self.patience


@dataclasses.dataclass
class FitResult:
    """What the fit leaves: the estimator, the checkpoint to export, and how it got there."""

    estimator: tf.estimator.Estimator
    checkpoint: str
    epochs_trained: int
    best_epochs: int
    eval_loss: float | None
    history: list[dict]
    seconds: float


class _ScoreHoldoutInSession(tf.compat.v1.train.SessionRunHook):
    """Scores the holdout from inside the training session at the end of each chunk of epochs,
    keeps the best checkpoint, and stops training by the early-stopping rule.

    Training runs as one `Estimator.train` call. Restarting it per chunk (a new graph, a
    checkpoint restore, a refilled shuffle buffer, a new holdout graph) took MovieLens-100K's
    Trainer from 64 s to 94 s.
    The holdout graph is built once in its own `tf.Graph` and given the training variables' values
    before each scoring, as `tf.estimator.experimental.InMemoryEvaluatorHook` does; unlike that hook
    it returns the metrics to the loop. It uses the Estimator's `_evaluate_build_graph` and
    `_evaluate_run`, as that hook does; tf.estimator's last release is 2.15, so they stay put.

    Args:
        evaluator: an Estimator over the same model_fn and params, without warm start.
        eval_input: the holdout input_fn.
        boundaries: [(training step, epochs done)] after which to score, in step order.
        final_epochs: the epochs done when the training input runs out; the last chunk is
            scored then (`end`) unless a stop was asked for at its start.
        on_score: (epochs done, evaluation results) -> (keep this checkpoint, stop training).
        best_prefix: where the kept checkpoint is saved.
    """

    def __init__(self, evaluator, eval_input, boundaries, final_epochs, on_score, best_prefix):
        self._evaluator = evaluator
        self._eval_input = eval_input
        self._boundaries = list(boundaries)
        self._final_epochs = final_epochs
        self._on_score = on_score
        self._best_prefix = best_prefix
        self._steps = 0
        # Not scored yet: `end` scores even a training run of no steps.
        self._scored_at = -1
        self.best_checkpoint: str | None = None

    def begin(self):
        # Weights, optimizer slots and the global step: the refit resumes from the kept one.
        self._saver = tf.compat.v1.train.Saver(max_to_keep=1)
        self._global_step = tf.compat.v1.train.get_global_step()
        self._graph = tf.Graph()
        with self._graph.as_default():
            (self._scaffold, self._update_op, self._eval_dict, self._hooks) = (
                self._evaluator._evaluate_build_graph(self._eval_input, [], checkpoint_path=None)
            )
            eval_vars = {v.name: v for v in tf.compat.v1.global_variables()}
        train_vars = {v.name: v for v in tf.compat.v1.global_variables()}
        # The training graph also holds optimizer slots; the holdout graph has none of them.
        names = sorted(set(eval_vars) & set(train_vars))
        self._train_vars = {n: train_vars[n] for n in names}
        with self._graph.as_default():
            self._placeholders = {n: tf.compat.v1.placeholder(eval_vars[n].dtype) for n in names}
            self._feed = tf.group(
                [tf.compat.v1.assign(eval_vars[n], self._placeholders[n]) for n in names]
            )

    def _score(self, session, epochs: int):
        values = session.run(self._train_vars)
        feed = {self._placeholders[n]: v for n, v in values.items()}

        def load(scaffold, eval_session):
            del scaffold
            eval_session.run(self._feed, feed_dict=feed)

        scaffold = tf.compat.v1.train.Scaffold(init_fn=load, copy_from_scaffold=self._scaffold)
        with self._graph.as_default():
            result = self._evaluator._evaluate_run(
                checkpoint_path=None,
                scaffold=scaffold,
                update_op=self._update_op,
                eval_dict=self._eval_dict,
                all_hooks=self._hooks,
                output_dir=self._evaluator.eval_dir(),
            )
        self._scored_at = self._steps
        keep, stop = self._on_score(epochs, result)
        if keep:
            self.best_checkpoint = self._saver.save(
                session, self._best_prefix, global_step=self._global_step, write_meta_graph=False
            )
        return stop

    def after_run(self, run_context, run_values):
        del run_values
        self._steps += 1
        if self._boundaries and self._steps >= self._boundaries[0][0]:
            _, epochs = self._boundaries.pop(0)
            if self._score(run_context.session, epochs):
                run_context.request_stop()

    def end(self, session):
        if self._steps > self._scored_at:
            self._score(session, self._final_epochs)


def fit(
    model_dir: str,
    params: dict,
    train_input,
    eval_input,
    *,
    seed: int,
    max_epochs: int,
    steps_per_epoch: float,
    eval_every_epochs: int,
    patience: int,
    min_delta: float,
    max_seconds: float | None,
    metric: str,
    warm_start_from: tf.estimator.WarmStartSettings | None = None,
) -> FitResult:
    """Trains for up to `max_epochs` in one session, scoring the holdout every
    `eval_every_epochs`, with early stopping.

    After each chunk of epochs it scores the holdout and keeps a checkpoint of the best `metric`
    (under `model_dir/best`); it stops once that has not improved by more than `min_delta` for
    `patience` scorings, or once `max_seconds` of training have passed. Without a holdout
    (`eval_input` None) or with `patience` 0 it trains all epochs and keeps the last.

    Args:
        model_dir: where checkpoints go.
        params: the model_fn's params.
        train_input: (epochs, seed) -> a training input_fn.
        eval_input: a holdout input_fn, or None when no user has a holdout.
        seed: the graph seed (initialisers, dropout) and the shuffle seed.
        max_epochs: the most epochs.
        steps_per_epoch: training examples / batch size; a chunk ends at the first step past
            its epochs' share.
        eval_every_epochs: epochs per chunk when stopping early.
        patience: scorings without improvement before stopping (0 = never stop early).
        min_delta: how much a holdout score must beat the best by to count as an improvement.
        max_seconds: a training time budget, checked after each scoring.
        metric: the holdout metric to maximise, an evaluation name of
            `contracts.EARLY_STOPPING_METRICS`; every one of them is recorded in the history.
        warm_start_from: where the variables start from; None = the model's initializers.
    """
    started = time.time()
    early_stopping = patience > 0 and eval_input is not None
    if not early_stopping:
        estimator = make_estimator(model_dir, params, seed, 1, warm_start_from)
        estimator.train(train_input(max_epochs, seed))
        eval_loss = None
        if eval_input is not None:
            eval_loss = float(estimator.evaluate(eval_input)["loss"])
        return FitResult(
            estimator,
            estimator.latest_checkpoint(),
            max_epochs,
            max_epochs,
            eval_loss,
            [],
            time.time() - started,
        )
    chunk = eval_every_epochs if eval_every_epochs > 0 else max_epochs
    boundaries = [
        (max(1, math.ceil(epochs * steps_per_epoch)), epochs)
        for epochs in range(chunk, max_epochs, chunk)
    ]
    stopping = EarlyStopping(patience, min_delta)
    history: list[dict] = []

    def on_score(epochs: int, result: dict) -> tuple[bool, bool]:
        point = {
            "epochs": epochs,
            "seconds": round(time.time() - started, 1),
            "eval_loss": float(result["loss"]),
            **{name: float(result[name]) for name in EARLY_STOPPING_METRICS.values()},
        }
        history.append(point)
        logging.info("trainer: %s", point)
        is_best, stop = stopping.update(point[metric])
        if is_best:
            best_point.clear()
            best_point.update(point)
        if not stop and max_seconds is not None and time.time() - started > max_seconds:
            logging.info("trainer: stopping at max_train_seconds=%s", max_seconds)
            stop = True
        return is_best, stop

    best_point: dict = {}
    # The holdout graph: the same model_fn and seed, never warm-started (it is given the
    # training variables' values before each scoring).
    evaluator = make_estimator(model_dir, params, seed, 1)
    estimator = make_estimator(model_dir, params, seed, 1, warm_start_from)
    hook = _ScoreHoldoutInSession(
        evaluator,
        eval_input,
        boundaries,
        max_epochs,
        on_score,
        os.path.join(model_dir, BEST_CHECKPOINT_DIR, "model.ckpt"),
    )
    estimator.train(train_input(max_epochs, seed), hooks=[hook])
    return FitResult(
        estimator,
        hook.best_checkpoint,
        history[-1]["epochs"],
        best_point["epochs"],
        best_point["eval_loss"],
        history,
        time.time() - started,
    )


def train_once(
    model_dir: str, params: dict, train_input, *, seed: int, epochs: int, warm_start_from=None
) -> tf.estimator.Estimator:
    """Trains `epochs` epochs in one go (the refit); returns the estimator."""
    estimator = make_estimator(model_dir, params, seed, 1, warm_start_from)
    estimator.train(train_input(epochs, seed))
    return estimator
