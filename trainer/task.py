"""The Trainer component's entry point (`run_fn`): train the Estimator, export model and items."""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.trainer import export
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

TRAIN_SUMMARY_FILE = "train_summary.json"


def _files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no training files match {patterns}")
    return files


def input_fn(patterns, feature_spec, batch_size, epochs, shuffle, seed):
    """Returns an input_fn yielding ({history_idx: SparseTensor}, label_idx [batch])."""

    def fn():
        ds = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
        if shuffle:
            ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat(epochs).batch(batch_size)
        ds = ds.map(lambda s: tf.io.parse_example(s, feature_spec))
        ds = ds.map(_split_label)
        return ds.prefetch(2)

    return fn


def _split_label(parsed):
    return {F.HISTORY_IDX: parsed[F.HISTORY_IDX]}, parsed[F.LABEL_IDX]


def count_records(patterns: list[str]) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP"))


def _encoder_options(trainer_config: dict) -> dict:
    if trainer_config.get("encoder") == "self_attention":
        return {
            "num_blocks": int(trainer_config.get("num_blocks", 2)),
            "num_heads": int(trainer_config.get("num_heads", 1)),
        }
    return {}


def run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point.

    Reads the transformed train split, trains the model_fn for `trainer.epochs` epochs, exports a
    serving SavedModel under `fn_args.serving_model_dir` and the item vectors (softmax kernel with
    bias, read from the checkpoint) beside it.
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
    params = {
        "num_classes": num_classes,
        "embedding_dim": int(trainer_config.get("embedding_dim", 64)),
        "hidden_units": list(trainer_config.get("hidden_units", [128])),
        "dropout": float(trainer_config.get("dropout", 0.0)),
        "encoder": trainer_config.get("encoder", "mean_mlp"),
        "loss": trainer_config.get("loss", "sampled_softmax"),
        "num_sampled": int(trainer_config.get("num_sampled", 100)),
        "learning_rate": float(trainer_config.get("learning_rate", 0.001)),
        "l2": float(trainer_config.get("l2", 0.0)),
        "encoder_options": _encoder_options(trainer_config),
    }
    feature_spec = tf_transform_output.transformed_feature_spec()
    run_config = tf.estimator.RunConfig(
        model_dir=fn_args.model_run_dir,
        tf_random_seed=seed,
        # One checkpoint at the end of training is all export needs.
        save_checkpoints_secs=10**9,
        keep_checkpoint_max=1,
        log_step_count_steps=500,
    )
    estimator = tf.estimator.Estimator(model_lib.model_fn, params=params, config=run_config)

    started = time.time()
    estimator.train(
        input_fn(
            fn_args.train_files,
            feature_spec,
            int(trainer_config.get("batch_size", 256)),
            int(trainer_config.get("epochs", 1)),
            shuffle=True,
            seed=seed,
        )
    )
    train_seconds = time.time() - started
    # No user may have enough events for a holdout; Evaluate then refuses to bless.
    eval_loss = None
    if count_records(fn_args.eval_files) > 0:
        eval_loss = float(
            estimator.evaluate(
                input_fn(fn_args.eval_files, feature_spec, 1024, 1, shuffle=False, seed=seed)
            )["loss"]
        )

    estimator.export_saved_model(
        fn_args.serving_model_dir, export.serving_receiver_fn(tf_transform_output)
    )
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    table = export.item_vectors_table(
        keys,
        estimator.get_variable_value(F.SOFTMAX_KERNEL),
        estimator.get_variable_value(F.SOFTMAX_BIAS),
        export.read_vocabulary_counts(tf_transform_output),
    )
    model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    export.write_item_vectors(model_uri, table)
    summary = {
        "vocab_size": vocab_size,
        "num_classes": num_classes,
        "global_step": int(estimator.get_variable_value("global_step")),
        "train_seconds": round(train_seconds, 2),
        "eval_loss": eval_loss,
        "params": params,
        "embeddings_tied": False,
        "item_vector": "softmax kernel row with its bias appended",
        "user_vector": "user_vector with a constant 1 appended",
    }
    with tf.io.gfile.GFile(os.path.join(model_uri, TRAIN_SUMMARY_FILE), "w") as f:
        f.write(json.dumps(summary, indent=2))
