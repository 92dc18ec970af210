"""Warm start from the last blessed model of an earlier date.

A Model artifact (and so a release) carries a *warm-start source*: the trained variables without
the optimizer's slots, the item vocabulary they were trained with, and the architecture that
fixes their shapes. A later run builds `tf.estimator.WarmStartSettings` from it:

- item rows (the item embedding table, the untied softmax kernel and the softmax bias) are
  remapped by vocabulary key with `tf.estimator.VocabInfo`, so an item keeps its vector even when
  its index moved; items new to the vocabulary and the OOV buckets start from the model's own
  initializer;
- every other trainable variable (encoder, positions, tower) carries over by name;
- the user embedding (its vocabulary is the day's users) and the optimizer slots (Adam's moments,
  shaped like yesterday's catalog) do not: Adam starts afresh.
A source whose architecture differs from today's model is not used, and the run says why.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from offline_recall.core import contracts as C
from offline_recall.core import storage
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

# The params that fix the shape of a non-item variable: a source must agree on all of them.
ARCHITECTURE_KEYS = (
    "encoder",
    "encoder_options",
    "ensemble_size",
    "embedding_dim",
    "hidden_units",
    "tie_embeddings",
    "user_embedding",
    "user_embedding_dim",
    "recency_feature",
)
# What a source written before an architecture key existed had.
_SOURCE_DEFAULTS = {"ensemble_size": 1}
# Variables that never carry over: the user table's rows are yesterday's users.
NOT_CARRIED = (model_lib.USER_EMBEDDINGS,)
# What the optimizer and the Estimator add beside the model's variables.
_OPTIMIZER_SUFFIXES = ("/Adam", "/Adam_1")
_BOOKKEEPING = ("global_step", "beta1_power", "beta2_power")


def architecture(params: dict) -> dict:
    """The subset of the model_fn's params that fixes the shapes of non-item variables."""
    return {key: params[key] for key in ARCHITECTURE_KEYS}


def item_row_variables(params: dict) -> tuple[str, ...]:
    """The variables whose rows are items (remapped by vocabulary on warm start)."""
    names = []
    for member in range(params["ensemble_size"]):
        prefix = model_lib.member_scope(member)
        names += [prefix + model_lib.ITEM_EMBEDDINGS, prefix + F.SOFTMAX_BIAS]
        if not params["tie_embeddings"]:
            names.append(prefix + F.SOFTMAX_KERNEL)
    return tuple(names)


def is_model_variable(name: str) -> bool:
    """Whether a checkpoint variable is the model's own (not an optimizer slot or a counter)."""
    return not (name in _BOOKKEEPING or name.endswith(_OPTIMIZER_SUFFIXES))


def source_dir(model_uri: str) -> str:
    return os.path.join(model_uri, C.WARM_START_DIR)


def write_source(checkpoint: str, model_uri: str, vocabulary_file: str, params: dict) -> str:
    """Writes the warm-start source of `checkpoint` into a Model artifact; returns its folder.

    Args:
        checkpoint: the checkpoint prefix the exported model was built from.
        model_uri: the Model artifact.
        vocabulary_file: the item vocabulary (one key per line, index order) of that model.
        params: the model_fn's params.
    """
    folder = source_dir(model_uri)
    tf.io.gfile.makedirs(folder)
    reader = tf.train.load_checkpoint(checkpoint)
    shapes = reader.get_variable_to_shape_map()
    names = sorted(n for n in shapes if is_model_variable(n))
    # Placeholders feed the values in: a constant initializer would put a catalog-sized tensor
    # into the GraphDef, which protobuf caps at 2 GB.
    with tf.Graph().as_default():
        feeds, variables = {}, {}
        for name in names:
            value = reader.get_tensor(name)
            holder = tf.compat.v1.placeholder(tf.as_dtype(value.dtype), value.shape)
            variables[name] = tf.compat.v1.Variable(holder, name=name)
            feeds[holder] = value
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer(), feed_dict=feeds)
            saver.save(
                session,
                os.path.join(folder, C.CHECKPOINT_NAME),
                write_meta_graph=False,
                write_state=False,
            )
    tf.io.gfile.copy(vocabulary_file, os.path.join(folder, C.WARM_START_VOCAB_FILE), overwrite=True)
    storage.write_json(
        os.path.join(folder, C.WARM_START_INFO_FILE),
        {
            "architecture": architecture(params),
            "vocab_size": params["vocab_size"],
            "num_classes": params["num_classes"],
            "variables": names,
        },
    )
    return folder


def has_source(model_uri: str) -> bool:
    return tf.io.gfile.exists(os.path.join(source_dir(model_uri), C.WARM_START_INFO_FILE))


def read_vocabulary(path: str) -> list[bytes]:
    """Vocabulary keys in index order, from a one-key-per-line file."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f]


def settings(
    model_uri: str,
    vocabulary_file: str,
    vocab_size: int,
    params: dict,
) -> tuple[tf.estimator.WarmStartSettings | None, dict]:
    """The WarmStartSettings from a Model artifact's source, and what they carry over.

    Args:
        model_uri: a Model artifact holding a warm-start source (`write_source`).
        vocabulary_file: today's item vocabulary file (one key per line, index order).
        vocab_size: today's vocabulary size (items, without OOV buckets).
        params: today's model_fn params.

    Returns:
        (settings, facts): settings None when the source cannot be used, and facts says why;
        otherwise facts counts the items carried over and the new ones.
    """
    if not has_source(model_uri):
        return None, {"used": False, "why_not": "the previous model has no warm-start source"}
    folder = source_dir(model_uri)
    info = storage.read_json(os.path.join(folder, C.WARM_START_INFO_FILE))
    wanted = architecture(params)
    # Sources written before `ensemble_size` existed are one-member models.
    source = {**_SOURCE_DEFAULTS, **info["architecture"]}
    # JSON turns tuples into lists; compare like with like.
    if source != json.loads(json.dumps(wanted)):
        plain = json.loads(json.dumps(wanted))
        changed = sorted(k for k in plain if source.get(k) != plain[k])
        return None, {
            "used": False,
            "why_not": f"the architecture changed ({', '.join(changed)})",
        }
    old_vocab = os.path.join(folder, C.WARM_START_VOCAB_FILE)
    old_keys = set(read_vocabulary(old_vocab))
    new_keys = read_vocabulary(vocabulary_file)[:vocab_size]
    carried = sum(1 for k in new_keys if k in old_keys)
    num_oov = params["num_classes"] - vocab_size
    dim = params["embedding_dim"]
    fresh_rows = tf.compat.v1.truncated_normal_initializer(stddev=1.0 / dim**0.5)

    def vocab_info(initializer):
        return tf.estimator.VocabInfo(
            new_vocab=vocabulary_file,
            new_vocab_size=vocab_size,
            num_oov_buckets=num_oov,
            old_vocab=old_vocab,
            old_vocab_size=info["vocab_size"],
            backup_initializer=initializer,
        )

    item_rows = {
        name: vocab_info(tf.zeros_initializer() if name == F.SOFTMAX_BIAS else fresh_rows)
        for name in item_row_variables(params)
    }
    excluded = "|".join(NOT_CARRIED)
    warm = tf.estimator.WarmStartSettings(
        ckpt_to_initialize_from=os.path.join(folder, C.CHECKPOINT_NAME),
        # A regex over the trainable variables: optimizer slots are never among them.
        vars_to_warm_start=f"^(?!(?:{excluded})(?:/|$)).*",
        var_name_to_vocab_info=item_rows,
    )
    return warm, {
        "used": True,
        "items_carried": carried,
        "items_new": len(new_keys) - carried,
        "items_dropped": len(old_keys) - carried,
    }


def initial_values(
    warm: tf.estimator.WarmStartSettings, params: dict, names: list[str], seed: int = 0
) -> dict[str, np.ndarray]:
    """The values `names` take when training starts from `warm`, before the first step.

    Builds the model_fn's graph on a dummy batch and applies `warm` as the Estimator does before
    the first step; for checking what carried over.
    """
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(seed)
        features = {F.HISTORY_IDX: tf.constant([[1, 2]], tf.int64)}
        if params["user_embedding"]:
            features[F.USER_IDX] = tf.constant([0], tf.int64)
        # EVAL builds every model variable and no optimizer slots, and needs no training features.
        model_lib.model_fn(features, tf.constant([3], tf.int64), tf.estimator.ModeKeys.EVAL, params)
        tf.compat.v1.train.warm_start(*warm)
        variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return {name: session.run(variables[name]) for name in names}
