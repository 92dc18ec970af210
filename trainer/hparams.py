"""From the `trainer` config section and the vocabulary to the model_fn's params.

The Estimator takes its params as a dict; this is the one place that builds it. Every value comes
from a `TrainerConfig` (no defaults here) or from what Transform produced.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow_transform as tft

from offline_recall.core import options
from offline_recall.core.config import TrainerConfig
from offline_recall.trainer import export, losses
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

# Auto epochs stay in this range, whatever the data size.
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 5, 200

# `dropout: auto`. A sparse log (few events per user) overfits sooner and wants more dropout:
# SASRec chose 0.2 on MovieLens-1M and 0.5 on the Amazon logs. Here, on the validation target
# (bench/quality.py, paired per user, two members, one block): on MovieLens-100K (about 40
# history items per training example) 0.3 beat 0.2 and 0.4 at HR@50; on Amazon Beauty (about 5)
# 0.4 beat 0.3 at NDCG@10, HR@10 and HR@50 (bench/RESULTS.md).
AUTO_DROPOUT_DENSE, AUTO_DROPOUT_SPARSE = 0.3, 0.4
# Sparse: training examples hold fewer history items than this on average.
SPARSE_BELOW = 20
# `future_targets: auto`. On long histories each slot also predicts the 4 items after its next
# (each at `future_target_weight`): MovieLens-100K's validation target (bench/quality.py, paired,
# 3 seeds) HR@50 +0.0131 +- 0.0062, HR@10 +0.0081 +- 0.0064, NDCG@10 +0.0017 +- 0.0036. On a
# sparse log the next item is what counts: Amazon Beauty's NDCG@10 -0.0047 +- 0.0008 (-0.0029
# +- 0.0007 with 3 targets at 0.5).
AUTO_FUTURE_TARGETS_DENSE, AUTO_FUTURE_TARGETS_SPARSE = 5, 1
# `refit_lr_decay: auto`. A warm refit whose learning rate decays to lr_decay_floor over its
# steps, against a constant one, on the validation target (bench/quality.py, paired): Amazon
# Beauty (5 refit epochs, 1,760 steps) NDCG@10 +0.0056 +- 0.0007, HR@10 +0.0065 +- 0.0012, HR@50
# +0.0073 +- 0.0014 (test target: NDCG@10 +0.0019 +- 0.0006, HR@10 +0.0036 +- 0.0011);
# MovieLens-100K (10 refit epochs, ~375 steps; 3 seeds) NDCG@10 -0.0016 +- 0.0023, HR@10
# -0.0039 +- 0.0047. Decaying to 0.01 instead of 0.1 changed neither more than its error.
AUTO_REFIT_LR_DECAY_DENSE, AUTO_REFIT_LR_DECAY_SPARSE = False, True


def choose_loss(config: TrainerConfig, num_classes: int) -> str:
    """`auto` is the exact softmax while the catalog is small enough, else sampled softmax."""
    if config.loss != options.AUTO_LOSS:
        return config.loss
    return "full_softmax" if num_classes <= config.full_softmax_max_classes else "sampled_softmax"


def choose_epochs(config: TrainerConfig, positions: int) -> int:
    """`epochs`, or for "auto" enough epochs to see `auto_epoch_positions` targets, in [5, 200]."""
    if config.epochs != options.AUTO:
        return config.epochs
    wanted = round(config.auto_epoch_positions / max(positions, 1))
    return int(min(MAX_AUTO_EPOCHS, max(MIN_AUTO_EPOCHS, wanted)))


def choose_dropout(config: TrainerConfig, mean_history: float) -> tuple[float, str]:
    """`dropout`, or for "auto" the rate for the log's sparsity; and why, for the train summary.

    Args:
        config: the `trainer` section.
        mean_history: history items per training example (`inputs.HistoryStats`).
    """
    return _by_sparsity(config, "dropout", mean_history, AUTO_DROPOUT_SPARSE, AUTO_DROPOUT_DENSE)


def choose_future_targets(config: TrainerConfig, mean_history: float) -> tuple[int, str]:
    """`future_targets`, or for "auto" the number for the log's sparsity; and why."""
    return _by_sparsity(
        config,
        "future_targets",
        mean_history,
        AUTO_FUTURE_TARGETS_SPARSE,
        AUTO_FUTURE_TARGETS_DENSE,
    )


def choose_refit_lr_decay(config: TrainerConfig, mean_history: float) -> tuple[bool, str]:
    """`refit_lr_decay`, or for "auto" whether a warm refit on a log this sparse decays; and why.

    Args:
        config: the `trainer` section.
        mean_history: history items per training example of the refit split.
    """
    return _by_sparsity(
        config,
        "refit_lr_decay",
        mean_history,
        AUTO_REFIT_LR_DECAY_SPARSE,
        AUTO_REFIT_LR_DECAY_DENSE,
    )


def _by_sparsity(config: TrainerConfig, name: str, mean_history: float, sparse, dense) -> tuple:
    """(the option's value, why): as configured, or for "auto" `sparse` below SPARSE_BELOW
    history items per training example and `dense` from there on."""
    value = getattr(config, name)
    if value != options.AUTO:
        return value, f"trainer.{name} is {json.dumps(value)}"
    value = sparse if mean_history < SPARSE_BELOW else dense
    relation = "below" if mean_history < SPARSE_BELOW else "at least"
    return value, (
        f"auto: {mean_history:.1f} history items per training example, {relation} "
        f"{SPARSE_BELOW}, so {json.dumps(value)}"
    )


def with_data_rules(params: dict, *, dropout: float, future_targets: int) -> dict:
    """Params with what the fit chose from its training data (`build_params` leaves both out):
    the dropout rate and the items each history slot predicts."""
    return {**params, "dropout": dropout, "future_targets": future_targets}


def refit_epochs(
    config: TrainerConfig, fit_best_epochs: int, batches_per_epoch: int
) -> tuple[int, str]:
    """Epochs of the refit and why: `refit_epochs`, or "auto".

    Auto from scratch is the fit's best epoch count. Warm-starting, it is `eval_every_epochs`
    (the granularity early stopping chose the checkpoint at), raised to make at least
    `refit_min_steps` optimizer steps on a log with few batches an epoch, but to no more than
    twice that, so a tiny log does not train for hundreds of epochs.

    Args:
        config: the trainer section.
        fit_best_epochs: epochs of the checkpoint the fit kept.
        batches_per_epoch: the refit split's batches per epoch.
    """
    if config.refit_epochs != options.AUTO:
        return config.refit_epochs, "refit_epochs"
    if not config.refit_warm_start:
        return max(1, fit_best_epochs), "auto: the fit's best epoch count, trained from scratch"
    base = max(1, config.eval_every_epochs)
    wanted = -(-config.refit_min_steps // max(1, batches_per_epoch))
    epochs = min(2 * base, max(base, wanted))
    return epochs, (
        f"auto: {batches_per_epoch} batches an epoch; at least {config.refit_min_steps} steps "
        f"wants {wanted} epochs, kept in [{base}, {2 * base}], so {epochs}"
    )


def item_counts(tf_transform_output: tft.TFTransformOutput, num_classes: int) -> np.ndarray:
    """[num_classes] training counts in vocabulary index order; OOV buckets count 1."""
    counts = export.read_vocabulary_counts(tf_transform_output)
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    out = np.ones(num_classes, dtype=np.float64)
    out[: len(keys)] = [counts.get(k, 1) for k in keys]
    return out


def encoder_options(config: TrainerConfig) -> dict:
    """The keyword options of the chosen encoder beyond the shared ones."""
    if config.encoder == options.SELF_ATTENTION:
        return {"num_blocks": config.num_blocks, "num_heads": config.num_heads}
    return {}


def build_params(
    config: TrainerConfig,
    vocab_size: int,
    num_classes: int,
    counts: np.ndarray,
    num_users: int | None = None,
) -> dict:
    """The model_fn's params, but for "dropout" and "future_targets", which depend on the
    training data (`choose_dropout`, `choose_future_targets`, then `with_data_rules`).

    Args:
        config: the `trainer` section.
        vocab_size: items in the vocabulary (rows below it are items, the rest OOV buckets).
        num_classes: softmax rows, vocabulary plus OOV buckets.
        counts: [num_classes] training counts in index order.
        num_users: rows of the user embedding (user vocabulary + 1 OOV row) with
            `user_embedding`.
    """
    params = {
        "num_classes": num_classes,
        "vocab_size": vocab_size,
        "embedding_dim": config.embedding_dim,
        "ensemble_size": config.ensemble_size,
        "hidden_units": list(config.hidden_units),
        "encoder": config.encoder,
        "encoder_options": encoder_options(config),
        # Not an encoder option: those fix variable shapes (warm start compares them), and a
        # dropout does not.
        "dropout_attention": config.dropout_attention,
        "future_target_weight": config.future_target_weight,
        "objective": config.objective,
        "tie_embeddings": config.tie_embeddings,
        "loss": choose_loss(config, num_classes),
        "loss_context": losses.LossContext(
            num_classes=num_classes,
            num_sampled=config.num_sampled,
            item_counts=counts,
            sampler=config.sampler,
            sampler_distortion=config.sampler_distortion,
            temperature=config.temperature,
            logq_correction=config.logq_correction,
            seed=config.seed,
        ),
        "learning_rate": config.learning_rate,
        "optimizer": config.optimizer,
        "l2": config.l2,
        "user_embedding": config.user_embedding,
        "user_embedding_dim": config.user_embedding_dim,
        "recency_feature": config.recency_feature,
        # Constant unless with_lr_decay sets it.
        "decay_steps": 0,
        "decay_start_step": 0,
        "lr_decay_floor": config.lr_decay_floor,
    }
    if config.user_embedding:
        params["num_users"] = num_users
    return params


def with_lr_decay(
    params: dict, decay: bool, epochs: int, batches: int, start_step: int = 0
) -> dict:
    """Params that decay the learning rate linearly over `epochs` x `batches` steps, if `decay`.

    Args:
        params: the model params.
        decay: whether to decay (`lr_decay` for the fit, `refit_lr_decay` for a warm refit).
        epochs: epochs the decay spans.
        batches: batches an epoch.
        start_step: the global step the decay starts from (a warm refit resumes the fit's).
    """
    if not decay:
        return params
    return {**params, "decay_steps": epochs * batches, "decay_start_step": start_step}


def printable(params: dict) -> dict:
    """The params as JSON-ready values (the loss context without its arrays)."""
    arrays = ("loss_context", model_lib.ITEM_ITEM_USER_ROWS, model_lib.ITEM_ITEM_ITEM_ROWS)
    out = {k: v for k, v in params.items() if k not in arrays}
    ctx = params["loss_context"]
    out["loss_context"] = {
        f.name: getattr(ctx, f.name)
        for f in dataclasses.fields(ctx)
        if f.name not in ("item_counts", "sampled_values")
    }
    return out


def vector_notes(params: dict) -> dict:
    """What the exported vectors are, for the run summary."""
    tied = params["tie_embeddings"]
    members = params["ensemble_size"]
    row = "item_embeddings row (tied input/output table)" if tied else "softmax kernel row"
    blend = params.get(model_lib.ITEM_ITEM_ITEM_ROWS)
    rank = None if blend is None else blend.shape[1]
    extra = "" if rank is None else f", then the item-item model's {rank}-d item row,"
    if members == 1:
        item = f"{row}{extra} with the softmax bias appended"
        user = "user_vector"
    else:
        item = (
            f"the {members} members' {row}s side by side{extra} with the sum of their biases "
            "appended"
        )
        user = f"the {members} members' user vectors side by side"
    if rank is not None:
        user += f", then the item-item model's {rank}-d history sum (scaled),"
    return {
        "embeddings_tied": tied,
        "ensemble_size": members,
        "item_vector": item,
        "user_vector": f"{user} with a constant 1 appended",
    }
