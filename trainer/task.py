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
CHECKPOINT_DIR = "checkpoint"  # inside the Model artifact: the exported checkpoint, for Refit.
CHECKPOINT_NAME = "model.ckpt"


def _files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no training files match {patterns}")
    return files


def input_fn(patterns, feature_spec, batch_size, epochs, shuffle, seed, max_history=None):
    """Returns an input_fn yielding (features, label_idx [batch]).

    Features: `history_idx`, plus `user_idx` [batch] and `history_age` / `label_age` when
    Transform produced them (trainer.user_embedding, trainer.recency_feature).

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
            return ds.map(_split_label(feature_spec)).prefetch(2)
        ds = ds.map(_parse_one(feature_spec)).cache()
        if shuffle:
            ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
        boundaries = bucket_boundaries(max_history)
        ds = ds.repeat(epochs).bucket_by_sequence_length(
            _history_length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(
                {k: _padding_value(k) for k in model_features(feature_spec)},
                tf.constant(0, tf.int64),
            ),
        )
        return ds.prefetch(2)

    return fn


def canonical_copy(patterns: list[str], path: str) -> list[str]:
    """Writes the examples of `patterns` in a canonical order into one GZIP file; returns [path].

    Beam writes a split's records in no fixed order, and a seeded shuffle of differently ordered
    input gives different batches. Sorting the examples by their deterministic serialization
    (map keys sorted; the bytes Transform wrote are not canonical from run to run) makes a seed
    reproduce the same training run. The trainer caches the whole split in memory anyway, so
    holding it once more to sort is in scale.
    """
    records = sorted(
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    )
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return [path]


def _train_input(files, feature_spec, batch_size, epochs, seed, config):
    """The shuffled, length-bucketed training input_fn (histories up to sequences.max_history)."""
    max_history = int(config.get("sequences", {}).get("max_history", 50))
    return input_fn(
        files, feature_spec, batch_size, epochs, shuffle=True, seed=seed, max_history=max_history
    )


def bucket_boundaries(max_history: int) -> list[int]:
    """Upper length bounds (exclusive) of the length buckets: 9, 17, 33, ... <= max_history."""
    bounds, b = [], 8
    while b < max_history:
        bounds.append(b + 1)
        b *= 2
    return bounds


# Padding of each model feature in a length bucket (scalars are never padded).
PADDING = {
    F.HISTORY_IDX: (encoders.PAD, tf.int64),
    F.HISTORY_AGE: (0.0, tf.float32),
    F.USER_IDX: (0, tf.int64),
    F.LABEL_AGE: (0.0, tf.float32),
}


def _padding_value(key: str) -> tf.Tensor:
    value, dtype = PADDING[key]
    return tf.constant(value, dtype)


def model_features(feature_spec: dict) -> list[str]:
    """The transformed features the model reads: the history plus the optional extras."""
    return [k for k in PADDING if k in feature_spec]


def _parse_one(feature_spec):
    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, feature_spec)
        features = {}
        for key in model_features(feature_spec):
            value = parsed[key]
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value, default_value=_padding_value(key))
            else:
                value = tf.reshape(value, [])
            features[key] = value
        return features, tf.reshape(parsed[F.LABEL_IDX], [])

    return parse


def _history_length(features, label):
    del label
    return tf.shape(features[F.HISTORY_IDX], out_type=tf.int32)[0]


def _split_label(feature_spec):
    def split(parsed):
        features = {k: parsed[k] for k in model_features(feature_spec)}
        for key in (F.USER_IDX, F.LABEL_AGE):
            if key in features:
                features[key] = tf.reshape(features[key], [-1])
        return features, parsed[F.LABEL_IDX]

    return split


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
        "user_embedding": bool(trainer_config.get("user_embedding", False)),
        "user_embedding_dim": int(trainer_config.get("user_embedding_dim", 32)),
        "recency_feature": bool(trainer_config.get("recency_feature", False)),
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


def _vector_notes(params: dict) -> dict:
    tied = params["tie_embeddings"]
    return {
        "embeddings_tied": tied,
        "item_vector": (
            "item_embeddings row (tied input/output table) with the softmax bias appended"
            if tied
            else "softmax kernel row with its bias appended"
        ),
        "user_vector": "user_vector with a constant 1 appended",
    }


def _write_json(path: str, payload: dict) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(payload, indent=2))


def _read_json(path: str) -> dict:
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def keep_checkpoint(checkpoint: str, model_uri: str) -> str:
    """Copies a checkpoint's files into the Model artifact; returns the copy's prefix.

    The Refit trainer warm-starts from it: the Model artifact is what a downstream Trainer gets
    (`base_model`), the model_run folder with the checkpoints is not.
    """
    folder = os.path.join(model_uri, CHECKPOINT_DIR)
    tf.io.gfile.makedirs(folder)
    prefix = os.path.join(folder, CHECKPOINT_NAME)
    for path in tf.io.gfile.glob(checkpoint + ".*"):
        suffix = path[len(checkpoint) :]
        tf.io.gfile.copy(path, prefix + suffix, overwrite=True)
    return prefix


def export_model(estimator, checkpoint, fn_args, tf_transform_output, params) -> str:
    """Exports the serving SavedModel and the item vectors of `checkpoint`; returns the Model URI.

    Item vectors are the output kernel rows (the input table when tied) with the softmax bias
    appended, read from the same checkpoint the SavedModel is built from.
    """
    estimator.export_saved_model(
        fn_args.serving_model_dir,
        export.serving_receiver_fn(tf_transform_output, params.get("user_embedding", False)),
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
    return model_uri


def _setup(fn_args) -> tuple[dict, dict, tft.TFTransformOutput, dict, dict, int]:
    """Returns (config, trainer config, transform output, params, feature spec, batch size)."""
    # Multi-threaded CPU kernels (gradient accumulation of embedding lookups, reductions) may
    # add in any order; a seed must reproduce a run, so they take their deterministic paths.
    tf.config.experimental.enable_op_determinism()
    config = fn_args.custom_config or {}
    trainer_config = config.get("trainer", {})
    transform_config = config.get("transform", {})
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocab_size = tf_transform_output.vocabulary_size_by_name(F.ITEM_VOCAB)
    if vocab_size == 0:
        raise ValueError("the item vocabulary is empty: no item reaches transform.min_count")
    num_classes = vocab_size + int(transform_config.get("num_oov_buckets", 1))
    params = build_params(
        trainer_config, num_classes, item_counts(tf_transform_output, num_classes)
    )
    if params["user_embedding"]:
        # One OOV row: a user unseen in training (none in a daily run) gets a learnt default.
        params["num_users"] = tf_transform_output.vocabulary_size_by_name(F.USER_VOCAB) + 1
    feature_spec = tf_transform_output.transformed_feature_spec()
    batch_size = int(trainer_config.get("batch_size", 256))
    return config, trainer_config, tf_transform_output, params, feature_spec, batch_size


def run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point.

    Reads the transformed train split and trains the model_fn for up to `trainer.epochs` epochs.
    With `trainer.early_stopping_patience` > 0 it evaluates on the holdout every
    `trainer.eval_every_epochs` epochs and stops once hit_rate_at_50 has not improved for that many
    evaluations, keeping the best checkpoint. It exports a serving SavedModel under
    `fn_args.serving_model_dir` and the item vectors (output kernel with bias, read from the kept
    checkpoint) beside it, plus `train_summary.json`.
    """
    config, trainer_config, tf_transform_output, params, feature_spec, batch_size = _setup(fn_args)
    seed = int(trainer_config.get("seed", 42))
    train_files = canonical_copy(
        fn_args.train_files, os.path.join(fn_args.model_run_dir, "data", "train.tfrecord.gz")
    )
    eval_files = canonical_copy(
        fn_args.eval_files, os.path.join(fn_args.model_run_dir, "data", "eval.tfrecord.gz")
    )
    positions = count_positions(train_files, feature_spec, params["objective"])
    max_epochs = choose_epochs(trainer_config, positions)
    if trainer_config.get("lr_decay", False):
        batches = -(-count_records(train_files) // batch_size)
        params["decay_steps"] = max_epochs * batches
        params["lr_decay_floor"] = float(trainer_config.get("lr_decay_floor", 0.1))
    patience = int(trainer_config.get("early_stopping_patience", 0))
    has_holdout = count_records(eval_files) > 0
    # No user may have enough events for a holdout; then there is nothing to stop on.
    early_stopping = patience > 0 and has_holdout
    eval_every = int(trainer_config.get("eval_every_epochs", 0)) if early_stopping else 0
    if eval_every <= 0:
        eval_every = max_epochs
    max_seconds = trainer_config.get("max_train_seconds")

    def make_estimator(chunk: int) -> tf.estimator.Estimator:
        # Keras layers (attention) draw unseeded initializer seeds from Python's `random`.
        tf.keras.utils.set_random_seed(seed + chunk)
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
            input_fn(eval_files, feature_spec, 1024, 1, shuffle=False, seed=seed)
        )

    started = time.time()
    history, best, epochs_done, chunk, stale = [], None, 0, 0, 0
    while epochs_done < max_epochs:
        epochs = min(eval_every, max_epochs - epochs_done)
        estimator = make_estimator(chunk)
        estimator.train(
            _train_input(train_files, feature_spec, batch_size, epochs, seed + chunk, config)
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

    model_uri = export_model(estimator, checkpoint, fn_args, tf_transform_output, params)
    if trainer_config.get("refit_on_holdout", False):
        keep_checkpoint(checkpoint, model_uri)
    summary = {
        "vocab_size": tf_transform_output.vocabulary_size_by_name(F.ITEM_VOCAB),
        "num_classes": params["num_classes"],
        "global_step": int(tf.train.load_variable(checkpoint, "global_step")),
        "epochs_trained": epochs_done,
        "max_epochs": max_epochs,
        "positions_per_epoch": positions,
        "best_epochs": best[0]["epochs"] if best else epochs_done,
        "train_seconds": round(train_seconds, 2),
        "eval_loss": eval_loss,
        "eval_history": history,
        "params": _printable(params),
        **_vector_notes(params),
    }
    _write_json(os.path.join(model_uri, TRAIN_SUMMARY_FILE), summary)
    # The sorted copies were only for reproducible batches.
    tf.io.gfile.rmtree(os.path.dirname(train_files[0]))


def refit_epochs(trainer_config: dict, fit_summary: dict) -> int:
    """Epochs of the refit: `refit_epochs`, or "auto".

    Auto is `eval_every_epochs` (the granularity early stopping chose the checkpoint at) when
    warm-starting, and the fit's best epoch count when training from scratch.
    """
    epochs = trainer_config.get("refit_epochs", "auto")
    if epochs != "auto":
        return int(epochs)
    if trainer_config.get("refit_warm_start", True):
        return max(1, int(trainer_config.get("eval_every_epochs", 5) or 5))
    return max(1, int(fit_summary["best_epochs"]))


def refit_run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point of the Refit trainer (`trainer.refit_on_holdout`).

    Runs after Evaluate blessed the fitted model (`fn_args.base_model`). It trains on the `refit`
    split, the training pieces cut from every event, held-out one included, so the published model
    has learnt each user's latest transition that the fit held out. With `refit_warm_start` it
    continues from the fit's exported checkpoint for `refit_epochs` epochs; otherwise it trains
    from scratch for the fit's best epoch count. There is no holdout left to stop on or to
    evaluate: the blessing stays the fit's. The vocabulary is the fit's (a held-out item seen
    nowhere else maps to an OOV bucket). Exports like `run_fn`; its `train_summary.json` is the
    fit's with a `refit` section added.
    """
    config, trainer_config, tf_transform_output, params, feature_spec, batch_size = _setup(fn_args)
    if not fn_args.base_model:
        raise ValueError("refit_run_fn needs the fitted model as base_model")
    base_uri = os.path.dirname(fn_args.base_model.rstrip("/"))
    fit_summary = _read_json(os.path.join(base_uri, TRAIN_SUMMARY_FILE))
    seed = int(trainer_config.get("seed", 42))
    warm = bool(trainer_config.get("refit_warm_start", True))
    epochs = refit_epochs(trainer_config, fit_summary)
    train_files = canonical_copy(
        fn_args.train_files, os.path.join(fn_args.model_run_dir, "data", "refit.tfrecord.gz")
    )
    if trainer_config.get("lr_decay", False) and not warm:
        batches = -(-count_records(train_files) // batch_size)
        params["decay_steps"] = epochs * batches
        params["lr_decay_floor"] = float(trainer_config.get("lr_decay_floor", 0.1))
    warm_start = None
    if warm:
        warm_start = tf.estimator.WarmStartSettings(
            ckpt_to_initialize_from=os.path.join(base_uri, CHECKPOINT_DIR, CHECKPOINT_NAME),
            # Every variable, optimizer slots included, so Adam resumes where the fit stopped.
            vars_to_warm_start=[".*"],
        )
    tf.keras.utils.set_random_seed(seed + 1000)
    run_config = tf.estimator.RunConfig(
        model_dir=fn_args.model_run_dir,
        # Not a seed the fit used for a chunk: the refit must not replay its dropout masks.
        tf_random_seed=seed + 1000,
        save_checkpoints_secs=10**9,
        keep_checkpoint_max=1,
        log_step_count_steps=500,
    )
    estimator = tf.estimator.Estimator(
        model_lib.model_fn, params=params, config=run_config, warm_start_from=warm_start
    )
    started = time.time()
    estimator.train(
        _train_input(train_files, feature_spec, batch_size, epochs, seed + 1000, config)
    )
    checkpoint = estimator.latest_checkpoint()
    model_uri = export_model(estimator, checkpoint, fn_args, tf_transform_output, params)
    summary = dict(fit_summary)
    summary["train_seconds"] = round(fit_summary["train_seconds"] + time.time() - started, 2)
    summary["refit"] = {
        "warm_start": warm,
        "epochs": epochs,
        "positions_per_epoch": count_positions(train_files, feature_spec, params["objective"]),
        "global_step": int(tf.train.load_variable(checkpoint, "global_step")),
        "seconds": round(time.time() - started, 2),
        "fit_train_seconds": fit_summary["train_seconds"],
    }
    summary.update(_vector_notes(params))
    _write_json(os.path.join(model_uri, TRAIN_SUMMARY_FILE), summary)
    tf.io.gfile.rmtree(os.path.dirname(train_files[0]))
