"""The Trainer components' entry points: `run_fn` (the fit) and `refit_run_fn` (the refit).

Each reads its `TrainerParams` (custom_config), prepares the input, trains, and exports the
serving SavedModel, the item vectors and `train_summary.json` into its Model artifact.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.core import model_artifact, records
from offline_recall.core.config import TrainerParams
from offline_recall.core.contracts import EARLY_STOPPING_METRICS
from offline_recall.trainer import export, hparams, inputs, item_item, training, warm_start
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib

# Refit seeds are offset from the fit's so the refit replays none of its dropout masks.
REFIT_SEED_OFFSET = 1000


@dataclasses.dataclass
class _Setup:
    params: TrainerParams
    transform_output: tft.TFTransformOutput
    model_params: dict
    feature_spec: dict
    data_dir: str

    @property
    def config(self):
        return self.params.trainer

    def train_input(self, files):
        """(epochs, seed) -> the training input_fn over `files`."""

        def make(epochs: int, seed: int):
            return inputs.train_input_fn(
                files,
                self.feature_spec,
                self.config.batch_size,
                epochs,
                seed,
                self.params.max_history,
            )

        return make

    def copy_split(
        self, patterns: list[str], name: str, keep: list[str], max_records: int | None = None
    ) -> list[str]:
        return inputs.canonical_copy(
            patterns, os.path.join(self.data_dir, f"{name}.gz"), keep, max_records
        )

    def batches_per_epoch(self, examples: int) -> int:
        return -(-examples // self.config.batch_size)

    @property
    def vocabulary_file(self) -> str:
        return self.transform_output.vocabulary_file_by_name(F.ITEM_VOCAB)

    def export(self, estimator, checkpoint: str, serving_model_dir: str, params: dict) -> str:
        """Exports the serving model, the item vectors and the warm-start source."""
        model_uri = export.export_model(
            estimator, checkpoint, serving_model_dir, self.transform_output, params
        )
        warm_start.write_source(checkpoint, model_uri, self.vocabulary_file, self.model_params)
        return model_uri

    def warm_start_from_previous(self, base_model: str | None):
        """WarmStartSettings from the previous release (PreviousRelease's Model artifact), or
        None; and what happened, for the train summary."""
        if not self.config.warm_start:
            return None, {"used": False, "why_not": "trainer.warm_start is false"}
        if not base_model:
            return None, {"used": False, "why_not": "no previous release was wired in"}
        previous_uri = os.path.dirname(base_model.rstrip("/"))
        previous = model_artifact.read_previous(previous_uri)
        if not previous.found:
            return None, {"used": False, "why_not": previous.why_not}
        warm, facts = warm_start.settings(
            previous_uri,
            self.vocabulary_file,
            self.model_params["vocab_size"],
            self.model_params,
        )
        source = {k: getattr(previous, k) for k in ("run_id", "run_date", "release")}
        return warm, {**facts, "source": source}


def _item_item_blend(
    setup: _Setup,
    model_params: dict,
    estimator,
    checkpoint: str,
    eval_patterns: list[str],
    eval_copy: list[str],
    fit_choice: dict | None = None,
) -> tuple[dict, dict]:
    """Fits the item-item model and, if the holdout asks for it, adds it to the params.

    The fit (`fit_choice` None) learns EASE from the holdout users' training items and picks
    the weight on the holdout (`item_item.choose_weight`); the refit (`fit_choice` the fit's
    facts) learns it from the same users' every item, held-out one included, and keeps the
    fit's weight, rescaled to its own model's spread.

    Args:
        setup: the trainer's setup.
        model_params: the params the model was trained with.
        estimator: the trained Estimator; checkpoint: its checkpoint to score.
        eval_patterns: the whole eval split; eval_copy: the sampled holdout copy.
        fit_choice: the fit's `item_item` facts, for the refit.

    Returns:
        (the params to export with, the facts for the train summary).
    """
    config = setup.config
    vocab = model_params["vocab_size"]
    if fit_choice is not None and not fit_choice.get("weight"):
        # The fit's reason stands: it was off, or its holdout chose the model alone.
        why = fit_choice.get("why_not") or f"the fit chose weight 0: {fit_choice['why']}"
        return model_params, {"used": False, "why_not": why}
    why_not = None
    if not config.item_item_weights:
        why_not = "trainer.item_item_weights is empty"
    elif vocab > config.item_item_max_items:
        why_not = f"{vocab} items is above trainer.item_item_max_items {config.item_item_max_items}"
    elif not eval_copy or inputs.count_records(eval_copy) == 0:
        why_not = "no holdout users"
    if why_not:
        return model_params, {"used": False, "why_not": why_not}
    started = time.time()
    spec = setup.feature_spec
    rows = inputs.item_sets(eval_patterns, spec, with_label=fit_choice is not None)
    user_rows, item_rows = item_item.factors(
        rows, vocab, config.item_item_l2, config.item_item_rank, config.seed
    )
    histories, labels, visited = inputs.read_holdout(eval_copy, spec)
    predictions = estimator.predict(
        inputs.eval_input_fn(eval_copy, spec, model_params["num_classes"]),
        checkpoint_path=checkpoint,
        yield_single_examples=False,
    )
    vectors = np.concatenate([p[F.USER_VECTOR] for p in predictions])
    kernel, bias = export.read_item_rows(checkpoint, model_params)

    def model_scores():
        for start in range(0, len(vectors), item_item.BLOCK_USERS):
            block = vectors[start : start + item_item.BLOCK_USERS]
            yield block @ kernel[:vocab].T + bias[:vocab]

    facts = {
        "rank": int(user_rows.shape[1]),
        "l2": config.item_item_l2,
        "rows": len(rows),
        "holdout_users": len(labels),
    }
    if fit_choice is None:
        choice = item_item.choose_weight(
            model_scores(),
            item_item.Holdout(histories, labels, item_item.multi_hot(visited, vocab)),
            user_rows,
            item_rows,
            config.item_item_weights,
        )
        weight, scale = choice.weight, choice.scale
        facts.update(
            why=choice.why,
            holdout_ndcg10={str(w): v for w, v in choice.ndcg10.items()},
            gain=choice.gain,
            gain_se=choice.gain_se,
        )
    else:
        weight = fit_choice["weight"]
        scale = item_item.scale_for(
            next(model_scores()),
            histories[: item_item.BLOCK_USERS],
            user_rows,
            item_rows,
            weight,
        )
        facts["why"] = f"the fit's choice, {fit_choice['why']}"
        facts["holdout_ndcg10"] = fit_choice["holdout_ndcg10"]
    facts.update(used=weight > 0, weight=weight, scale=round(scale, 6))
    facts["seconds"] = round(time.time() - started, 2)
    logging.info("trainer: item-item blend %s", facts)
    if weight == 0:
        return model_params, facts
    padding = np.zeros((model_params["num_classes"] - vocab, user_rows.shape[1]), np.float32)
    return {
        **model_params,
        model_lib.ITEM_ITEM_USER_ROWS: np.concatenate([user_rows * scale, padding]),
        model_lib.ITEM_ITEM_ITEM_ROWS: np.concatenate([item_rows, padding]),
    }, facts


def _setup(fn_args) -> _Setup:
    # Multi-threaded CPU kernels (gradient accumulation of embedding lookups, reductions) may
    # add in any order; a seed must reproduce a run, so they take their deterministic paths.
    tf.config.experimental.enable_op_determinism()
    params = TrainerParams.from_mapping(fn_args.custom_config)
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocab_size = transform_output.vocabulary_size_by_name(F.ITEM_VOCAB)
    if vocab_size == 0:
        raise ValueError("the item vocabulary is empty: no item reaches transform.min_count")
    num_classes = vocab_size + params.num_oov_buckets
    num_users = None
    if params.trainer.user_embedding:
        # One OOV row: a user unseen in training (none in a daily run) gets a learnt default.
        num_users = transform_output.vocabulary_size_by_name(F.USER_VOCAB) + 1
    model_params = hparams.build_params(
        params.trainer,
        vocab_size,
        num_classes,
        hparams.item_counts(transform_output, num_classes),
        num_users,
    )
    return _Setup(
        params,
        transform_output,
        model_params,
        transform_output.transformed_feature_spec(),
        os.path.join(fn_args.model_run_dir, "data"),
    )


def run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point of the fit.

    Trains on the transformed train split for up to `trainer.epochs` epochs, stopping early on
    the holdout's HR@50 (`training.fit`), and exports the best checkpoint's serving SavedModel
    under `fn_args.serving_model_dir`, the item vectors beside it and `train_summary.json`; with
    `refit_on_holdout` also the checkpoint itself, for the Refit trainer.
    """
    setup = _setup(fn_args)
    config, spec = setup.config, setup.feature_spec
    train_files = setup.copy_split(fn_args.train_files, "train", inputs.train_features(spec))
    # Early stopping compares checkpoints on the same users; a sample of them tells as well as
    # all, and scoring each costs O(catalog).
    eval_files = setup.copy_split(
        fn_args.eval_files, "eval", inputs.eval_features(spec), config.eval_max_users
    )
    stats = inputs.history_stats(train_files, spec)
    positions = stats.positions(config.objective)
    max_epochs = hparams.choose_epochs(config, positions)
    dropout, dropout_rule = hparams.choose_dropout(config, stats.mean_history)
    logging.info("trainer: dropout %s (%s)", dropout, dropout_rule)
    future_targets, future_targets_rule = hparams.choose_future_targets(config, stats.mean_history)
    logging.info("trainer: future_targets %s (%s)", future_targets, future_targets_rule)
    setup = dataclasses.replace(
        setup,
        model_params=hparams.with_data_rules(
            setup.model_params, dropout=dropout, future_targets=future_targets
        ),
    )
    model_params = hparams.with_lr_decay(
        setup.model_params, config.lr_decay, max_epochs, setup.batches_per_epoch(stats.examples)
    )
    # No user may have enough events for a holdout; then there is nothing to stop on.
    holdout_users = inputs.count_records(eval_files)
    has_holdout = holdout_users > 0
    warm, warm_facts = setup.warm_start_from_previous(fn_args.base_model)
    logging.info("trainer: warm start %s", warm_facts)
    result = training.fit(
        fn_args.model_run_dir,
        model_params,
        setup.train_input(train_files),
        inputs.eval_input_fn(eval_files, spec, setup.model_params["num_classes"])
        if has_holdout
        else None,
        seed=config.seed,
        max_epochs=max_epochs,
        # Batches cross epoch boundaries (the input repeats before it batches).
        steps_per_epoch=stats.examples / config.batch_size,
        eval_every_epochs=(
            config.warm_start_eval_every_epochs if warm is not None else config.eval_every_epochs
        ),
        patience=config.early_stopping_patience,
        min_delta=config.early_stopping_min_delta,
        max_seconds=config.max_train_seconds,
        metric=EARLY_STOPPING_METRICS[config.early_stopping_metric],
        warm_start_from=warm,
    )
    export_params, item_item_facts = _item_item_blend(
        setup,
        model_params,
        result.estimator,
        result.checkpoint,
        fn_args.eval_files,
        eval_files if has_holdout else [],
    )
    model_uri = setup.export(
        training.with_params(result.estimator, export_params),
        result.checkpoint,
        fn_args.serving_model_dir,
        export_params,
    )
    if config.refit_on_holdout:
        export.keep_checkpoint(result.checkpoint, model_uri)
    model_artifact.write_train_summary(
        model_uri,
        records.TrainSummary(
            vocab_size=model_params["vocab_size"],
            num_classes=model_params["num_classes"],
            global_step=int(tf.train.load_variable(result.checkpoint, "global_step")),
            epochs_trained=result.epochs_trained,
            max_epochs=max_epochs,
            positions_per_epoch=positions,
            best_epochs=result.best_epochs,
            train_seconds=round(result.seconds, 2),
            eval_loss=result.eval_loss,
            eval_users=holdout_users,
            eval_history=tuple(records.EvalPoint.from_dict(p) for p in result.history),
            warm_start=warm_facts,
            params=hparams.printable(model_params),
            dropout_rule=dropout_rule,
            future_targets_rule=future_targets_rule,
            item_item=item_item_facts,
            refit=None,
            **hparams.vector_notes(export_params),
        ),
    )
    # The sorted copies were only for reproducible batches.
    tf.io.gfile.rmtree(setup.data_dir)


def refit_run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point of the Refit trainer (`trainer.refit_on_holdout`).

    Runs after Evaluate blessed the fit (`fn_args.base_model`). It trains on the `refit` split,
    the training pieces cut from every event, held-out one included, so the published model has
    learnt each user's latest transition that the fit held out. With `refit_warm_start` it
    continues from the fit's exported checkpoint (optimizer slots included, so Adam resumes where
    the fit stopped) for `refit_epochs` epochs; otherwise it trains from scratch for the fit's
    best epoch count. There is no holdout left: the blessing stays the fit's. The vocabulary is
    the fit's (a held-out item seen nowhere else maps to an OOV bucket). Exports like `run_fn`;
    its `train_summary.json` is the fit's with a `refit` section added.
    """
    setup = _setup(fn_args)
    config, spec = setup.config, setup.feature_spec
    if not fn_args.base_model:
        raise ValueError("refit_run_fn needs the fitted model as base_model")
    base_uri = os.path.dirname(fn_args.base_model.rstrip("/"))
    fit_summary = model_artifact.read_train_summary(base_uri)
    train_files = setup.copy_split(fn_args.train_files, "refit", inputs.train_features(spec))
    stats = inputs.history_stats(train_files, spec)
    epochs, epochs_rule = hparams.refit_epochs(
        config, fit_summary.best_epochs, setup.batches_per_epoch(stats.examples)
    )
    logging.info("refit: %d epochs (%s)", epochs, epochs_rule)
    # The fit's choices, not ones made anew: the refit's data holds one event more per user.
    setup = dataclasses.replace(
        setup,
        model_params=hparams.with_data_rules(
            setup.model_params,
            dropout=fit_summary.params["dropout"],
            future_targets=fit_summary.params["future_targets"],
        ),
    )
    model_params = setup.model_params
    warm_start = None
    batches = setup.batches_per_epoch(stats.examples)
    if config.refit_warm_start:
        lr_decay, lr_decay_rule = hparams.choose_refit_lr_decay(config, stats.mean_history)
        kept = model_artifact.kept_checkpoint(base_uri)
        warm_start = tf.estimator.WarmStartSettings(
            ckpt_to_initialize_from=kept, vars_to_warm_start=[".*"]
        )
        # The global step is warm-started too: the decay counts from the fit's.
        model_params = hparams.with_lr_decay(
            model_params,
            lr_decay,
            epochs,
            batches,
            start_step=int(tf.train.load_variable(kept, "global_step")),
        )
    else:
        lr_decay, lr_decay_rule = config.lr_decay, "trainer.lr_decay (a refit from scratch)"
        model_params = hparams.with_lr_decay(model_params, lr_decay, epochs, batches)
    logging.info("refit: learning-rate decay %s (%s)", lr_decay, lr_decay_rule)
    started = time.time()
    estimator = training.train_once(
        fn_args.model_run_dir,
        model_params,
        setup.train_input(train_files),
        seed=config.seed + REFIT_SEED_OFFSET,
        epochs=epochs,
        warm_start_from=warm_start,
    )
    checkpoint = estimator.latest_checkpoint()
    eval_files = setup.copy_split(
        fn_args.eval_files, "eval", inputs.eval_features(spec), config.eval_max_users
    )
    export_params, item_item_facts = _item_item_blend(
        setup,
        model_params,
        estimator,
        checkpoint,
        fn_args.eval_files,
        eval_files,
        fit_choice=fit_summary.item_item,
    )
    model_uri = setup.export(
        training.with_params(estimator, export_params),
        checkpoint,
        fn_args.serving_model_dir,
        export_params,
    )
    seconds = time.time() - started
    model_artifact.write_train_summary(
        model_uri,
        dataclasses.replace(
            fit_summary,
            train_seconds=round(fit_summary.train_seconds + seconds, 2),
            refit=records.RefitFacts(
                warm_start=config.refit_warm_start,
                epochs=epochs,
                epochs_rule=epochs_rule,
                positions_per_epoch=stats.positions(config.objective),
                global_step=int(tf.train.load_variable(checkpoint, "global_step")),
                seconds=round(seconds, 2),
                fit_train_seconds=fit_summary.train_seconds,
                lr_decay=lr_decay,
                lr_decay_rule=lr_decay_rule,
            ),
            item_item=item_item_facts,
            **hparams.vector_notes(export_params),
        ),
    )
    tf.io.gfile.rmtree(setup.data_dir)
