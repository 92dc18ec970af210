"""The Trainer component's entry point (`run_fn`): train the Estimator, export model and items."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.trainer import encoders, export, losses
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

TRAIN_SUMMARY_FILE = "train_summary.json"


def _files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no training files match {patterns}")
    return files


def input_fn(patterns, feature_spec, batch_size, epochs, shuffle, seed, max_history=None):
    """Returns an input_fn yielding ({history_idx}, label_idx [batch]).

    Without `max_history`, histories come as a SparseTensor from one batched parse. With it,
    examples are bucketed by history length (powers of two up to `max_history`) and padded with
    PAD only to their bucket's longest, so attention over short sequences does not pay for the
    longest one in a random batch; histories then come dense [batch, bucket length].
    """

    def fn():
        ds = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
        if max_history is None:
            if shuffle:
                ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
            ds = ds.repeat(epochs).batch(batch_size)
            ds = ds.map(lambda s: tf.io.parse_example(s, feature_spec))
            return ds.map(_split_label).prefetch(2)
        ds = ds.map(_parse_one(feature_spec)).cache()
        if shuffle:
            ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
        boundaries = bucket_boundaries(max_history)
        ds = ds.repeat(epochs).bucket_by_sequence_length(
            _history_length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(
                {F.HISTORY_IDX: tf.constant(encoders.PAD, tf.int64)},
                tf.constant(0, tf.int64),
            ),
        )
        return ds.prefetch(2)

    return fn


def bucket_boundaries(max_history: int) -> list[int]:
    """Upper length bounds (exclusive) of the length buckets: 9, 17, 33, ... <= max_history."""
    bounds, b = [], 8
    while b < max_history:
        bounds.append(b + 1)
        b *= 2
    return bounds


def _parse_one(feature_spec):
    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, feature_spec)
        history = tf.sparse.to_dense(parsed[F.HISTORY_IDX], default_value=encoders.PAD)
        return {F.HISTORY_IDX: history}, tf.reshape(parsed[F.LABEL_IDX], [])

    return parse


def _history_length(features, label):
    del label
    return tf.shape(features[F.HISTORY_IDX], out_type=tf.int32)[0]


def _split_label(parsed):
    return {F.HISTORY_IDX: parsed[F.HISTORY_IDX]}, parsed[F.LABEL_IDX]


def count_positions(patterns: list[str], feature_spec: dict, objective: str) -> int:
    """Training targets per epoch: one per example, or every history slot (per_position)."""
    if objective != "per_position":
        return count_records(patterns)
    ds = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP").batch(4096)
    total = 0
    for batch in ds:
        parsed = tf.io.parse_example(batch, {F.HISTORY_IDX: feature_spec[F.HISTORY_IDX]})
        lengths = tf.sparse.reduce_sum(
            tf.sparse.map_values(tf.ones_like, parsed[F.HISTORY_IDX]), axis=1
        )
        total += int(tf.reduce_sum(tf.maximum(lengths, 1)))
    return total


def choose_epochs(trainer_config: dict, positions: int) -> int:
    """`epochs`, or for "auto" enough epochs to see `auto_epoch_positions` targets, in [5, 200]."""
    epochs = trainer_config.get("epochs", "auto")
    if epochs != "auto":
        return int(epochs)
    budget = int(trainer_config.get("auto_epoch_positions", 3_200_000))
    return int(min(200, max(5, round(budget / max(positions, 1)))))


def count_records(patterns: list[str]) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP"))


def _encoder_options(trainer_config: dict) -> dict:
    if trainer_config.get("encoder") == "self_attention":
        return {
            "num_blocks": int(trainer_config.get("num_blocks", 2)),
            "num_heads": int(trainer_config.get("num_heads", 1)),
        }
    return {}


def choose_loss(trainer_config: dict, num_classes: int) -> str:
    """`auto` is the exact softmax while the catalog is small enough, else sampled softmax."""
    loss = trainer_config.get("loss", "auto")
    if loss != "auto":
        return loss
    limit = int(trainer_config.get("full_softmax_max_classes", 5000))
    return "full_softmax" if num_classes <= limit else "sampled_softmax"


def item_counts(tf_transform_output, num_classes: int) -> np.ndarray:
    """[num_classes] training counts in vocabulary index order; OOV buckets count 1."""
    counts = export.read_vocabulary_counts(tf_transform_output)
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    out = np.ones(num_classes, dtype=np.float64)
    out[: len(keys)] = [counts.get(k, 1) for k in keys]
    return out


def build_params(trainer_config: dict, num_classes: int, counts: np.ndarray) -> dict:
    """The model_fn's params from the `trainer` config section."""
    seed = int(trainer_config.get("seed", 42))
    loss = choose_loss(trainer_config, num_classes)
    return {
        "num_classes": num_classes,
        "embedding_dim": int(trainer_config.get("embedding_dim", 64)),
        "hidden_units": list(trainer_config.get("hidden_units", [128])),
        "dropout": float(trainer_config.get("dropout", 0.0)),
        "encoder": trainer_config.get("encoder", "mean_mlp"),
        "encoder_options": _encoder_options(trainer_config),
        "objective": trainer_config.get("objective", "last_position"),
        "tie_embeddings": bool(trainer_config.get("tie_embeddings", False)),
        "loss": loss,
        "loss_context": losses.LossContext(
            num_classes=num_classes,
            num_sampled=int(trainer_config.get("num_sampled", 100)),
            item_counts=counts,
            sampler=trainer_config.get("sampler", "unigram"),
            sampler_distortion=float(trainer_config.get("sampler_distortion", 1.0)),
            temperature=float(trainer_config.get("temperature", 1.0)),
            logq_correction=bool(trainer_config.get("logq_correction", True)),
            seed=seed,
        ),
        "learning_rate": float(trainer_config.get("learning_rate", 0.001)),
        "l2": float(trainer_config.get("l2", 0.0)),
    }


def _printable(params: dict) -> dict:
    out = {k: v for k, v in params.items() if k != "loss_context"}
    ctx = params["loss_context"]
    out["loss_context"] = {
        f.name: getattr(ctx, f.name)
        for f in dataclasses.fields(ctx)
        if f.name not in ("item_counts", "sampled_values")
    }
    return out


def run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point.

    Reads the transformed train split and trains the model_fn for up to `trainer.epochs` epochs.
    With `trainer.early_stopping_patience` > 0 it evaluates on the holdout every
    `trainer.eval_every_epochs` epochs and stops once hit_rate_at_50 has not improved for that many
    evaluations, keeping the best checkpoint. It exports a serving SavedModel under
    `fn_args.serving_model_dir` and the item vectors (output kernel with bias, read from the kept
    checkpoint) beside it, plus `train_summary.json`.
    """
    config = fn_args.custom_config or {}
    trainer_config = config.get("trainer", {})
    transform_config = config.get("transform", {})
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocab_size = tf_transform_output.vocabulary_size_by_name(F.ITEM_VOCAB)
    if vocab_size == 0:
        raise ValueError("the item vocabulary is empty: no item reaches transform.min_count")
    num_classes = vocab_size + int(transform_config.get("num_oov_buckets", 1))
    seed = int(trainer_config.get("seed", 42))
    params = build_params(
        trainer_config, num_classes, item_counts(tf_transform_output, num_classes)
    )
    feature_spec = tf_transform_output.transformed_feature_spec()
    batch_size = int(trainer_config.get("batch_size", 256))
    positions = count_positions(fn_args.train_files, feature_spec, params["objective"])
    max_epochs = choose_epochs(trainer_config, positions)
    if trainer_config.get("lr_decay", False):
        batches = -(-count_records(fn_args.train_files) // batch_size)
        params["decay_steps"] = max_epochs * batches
        params["lr_decay_floor"] = float(trainer_config.get("lr_decay_floor", 0.1))
    patience = int(trainer_config.get("early_stopping_patience", 0))
    has_holdout = count_records(fn_args.eval_files) > 0
    # No user may have enough events for a holdout; then there is nothing to stop on.
    early_stopping = patience > 0 and has_holdout
    eval_every = int(trainer_config.get("eval_every_epochs", 0)) if early_stopping else 0
    if eval_every <= 0:
        eval_every = max_epochs
    max_seconds = trainer_config.get("max_train_seconds")

    def make_estimator(chunk: int) -> tf.estimator.Estimator:
        run_config = tf.estimator.RunConfig(
            model_dir=fn_args.model_run_dir,
            # A fresh seed per chunk: the same seed would replay the same dropout masks.
            tf_random_seed=seed + chunk,
            # A checkpoint at the end of every chunk; the best must outlive `patience` newer ones.
            save_checkpoints_secs=10**9,
            keep_checkpoint_max=patience + 2,
            log_step_count_steps=500,
        )
        return tf.estimator.Estimator(model_lib.model_fn, params=params, config=run_config)

    def evaluate(estimator) -> dict:
        return estimator.evaluate(
            input_fn(fn_args.eval_files, feature_spec, 1024, 1, shuffle=False, seed=seed)
        )

    started = time.time()
    history, best, epochs_done, chunk, stale = [], None, 0, 0, 0
    while epochs_done < max_epochs:
        epochs = min(eval_every, max_epochs - epochs_done)
        estimator = make_estimator(chunk)
        estimator.train(
            input_fn(
                fn_args.train_files,
                feature_spec,
                batch_size,
                epochs,
                shuffle=True,
                seed=seed + chunk,
                max_history=int(config.get("sequences", {}).get("max_history", 50)),
            )
        )
        epochs_done += epochs
        chunk += 1
        if not early_stopping:
            break
        result = evaluate(estimator)
        point = {
            "epochs": epochs_done,
            "seconds": round(time.time() - started, 1),
            "eval_loss": float(result["loss"]),
            "hit_rate_at_50": float(result["hit_rate_at_50"]),
        }
        history.append(point)
        logging.info("trainer: %s", point)
        if best is None or point["hit_rate_at_50"] > best[0]["hit_rate_at_50"]:
            best, stale = (point, estimator.latest_checkpoint()), 0
        else:
            stale += 1
        if stale >= patience:
            break
        if max_seconds is not None and time.time() - started > float(max_seconds):
            logging.info("trainer: stopping at max_train_seconds=%s", max_seconds)
            break
    train_seconds = time.time() - started
    checkpoint = best[1] if best else estimator.latest_checkpoint()
    eval_loss = None
    if has_holdout:
        eval_loss = best[0]["eval_loss"] if best else float(evaluate(estimator)["loss"])

    estimator.export_saved_model(
        fn_args.serving_model_dir,
        export.serving_receiver_fn(tf_transform_output),
        checkpoint_path=checkpoint,
    )
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    table = export.item_vectors_table(
        keys,
        tf.train.load_variable(checkpoint, model_lib.output_kernel_name(params)),
        tf.train.load_variable(checkpoint, F.SOFTMAX_BIAS),
        export.read_vocabulary_counts(tf_transform_output),
    )
    model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    export.write_item_vectors(model_uri, table)
    tied = params["tie_embeddings"]
    summary = {
        "vocab_size": vocab_size,
        "num_classes": num_classes,
        "global_step": int(tf.train.load_variable(checkpoint, "global_step")),
        "epochs_trained": epochs_done,
        "max_epochs": max_epochs,
        "positions_per_epoch": positions,
        "best_epochs": best[0]["epochs"] if best else epochs_done,
        "train_seconds": round(train_seconds, 2),
        "eval_loss": eval_loss,
        "eval_history": history,
        "params": _printable(params),
        "embeddings_tied": tied,
        "item_vector": (
            "item_embeddings row (tied input/output table) with the softmax bias appended"
            if tied
            else "softmax kernel row with its bias appended"
        ),
        "user_vector": "user_vector with a constant 1 appended",
    }
    with tf.io.gfile.GFile(os.path.join(model_uri, TRAIN_SUMMARY_FILE), "w") as f:
        f.write(json.dumps(summary, indent=2))
