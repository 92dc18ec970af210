"""The training loops: the fit, in chunks of epochs with early stopping, and the refit.

Both build their Estimator with `make_estimator`, so a seed, its checkpoints and its logging mean
the same in either.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import tensorflow as tf

from offline_recall.core.contracts import EARLY_STOPPING_METRICS
from offline_recall.trainer import model as model_lib

# A checkpoint only where the loop asks for one (the end of a chunk), never on a timer.
_NO_TIMED_CHECKPOINTS = 10**9


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


def fit(
    model_dir: str,
    params: dict,
    train_input,
    eval_input,
    *,
    seed: int,
    max_epochs: int,
    eval_every_epochs: int,
    patience: int,
    min_delta: float,
    max_seconds: float | None,
    metric: str,
    warm_start_from: tf.estimator.WarmStartSettings | None = None,
) -> FitResult:
    """Trains for up to `max_epochs`, in chunks of `eval_every_epochs`, with early stopping.

    After each chunk it evaluates on the holdout and keeps the checkpoint with the best `metric`;
    it stops once that has not improved by more than `min_delta` for `patience` evaluations,
    or once `max_seconds` of training have passed. Without a holdout (`eval_input` None) or with
    `patience` 0 it trains all epochs in one chunk.

    Args:
        model_dir: where checkpoints go.
        params: the model_fn's params.
        train_input: (epochs, seed) -> a training input_fn.
        eval_input: a holdout input_fn, or None when no user has a holdout.
        seed: chunk c runs with seed + c, so no two chunks replay the same dropout masks.
        max_epochs: the most epochs.
        eval_every_epochs: epochs per chunk when stopping early.
        patience: evaluations without improvement before stopping (0 = never stop early).
        min_delta: how much a holdout score must beat the best by to count as an improvement.
        max_seconds: a training time budget, checked after each evaluation.
        metric: the holdout metric to maximise, an evaluation name of
            `contracts.EARLY_STOPPING_METRICS`; every one of them is recorded in the history.
        warm_start_from: where the first chunk's variables start from (later chunks restore
            their own checkpoints); None = the model's initializers.
    """
    early_stopping = patience > 0 and eval_input is not None
    chunk_epochs = eval_every_epochs if early_stopping and eval_every_epochs > 0 else max_epochs
    started = time.time()
    history, best, epochs_done, chunk = [], None, 0, 0
    stopping = EarlyStopping(patience, min_delta)
    while epochs_done < max_epochs:
        epochs = min(chunk_epochs, max_epochs - epochs_done)
        # The best checkpoint must outlive `patience` newer ones.
        estimator = make_estimator(
            model_dir, params, seed + chunk, patience + 2, warm_start_from if chunk == 0 else None
        )
        estimator.train(train_input(epochs, seed + chunk))
        epochs_done += epochs
        chunk += 1
        if not early_stopping:
            break
        result = estimator.evaluate(eval_input)
        point = {
            "epochs": epochs_done,
            "seconds": round(time.time() - started, 1),
            "eval_loss": float(result["loss"]),
            **{name: float(result[name]) for name in EARLY_STOPPING_METRICS.values()},
        }
        history.append(point)
        logging.info("trainer: %s", point)
        is_best, stop = stopping.update(point[metric])
        if is_best:
            best = (point, estimator.latest_checkpoint())
        if stop:
            break
        if max_seconds is not None and time.time() - started > max_seconds:
            logging.info("trainer: stopping at max_train_seconds=%s", max_seconds)
            break
    seconds = time.time() - started
    if best is not None:
        point, checkpoint = best
        return FitResult(
            estimator,
            checkpoint,
            epochs_done,
            point["epochs"],
            point["eval_loss"],
            history,
            seconds,
        )
    eval_loss = None
    if eval_input is not None:
        eval_loss = float(estimator.evaluate(eval_input)["loss"])
    return FitResult(
        estimator,
        estimator.latest_checkpoint(),
        epochs_done,
        epochs_done,
        eval_loss,
        history,
        seconds,
    )


def train_once(
    model_dir: str, params: dict, train_input, *, seed: int, epochs: int, warm_start_from=None
) -> tf.estimator.Estimator:
    """Trains `epochs` epochs in one go (the refit); returns the estimator."""
    estimator = make_estimator(model_dir, params, seed, 1, warm_start_from)
    estimator.train(train_input(epochs, seed))
    return estimator
