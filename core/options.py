"""The names a config may choose for the trainer: encoders, losses, samplers, objectives.

TF-free, so that `core/config.py` checks a config with the same names the trainer resolves,
without importing TensorFlow. Each name here is a function of the same name: encoders in
`trainer/encoders.py`, losses in `trainer/losses.py`. Adding one means writing that function and
adding its name here; nothing else.
"""

from __future__ import annotations

# History encoders: masked mean + ReLU tower (YouTube DNN), or SASRec-style self-attention.
SELF_ATTENTION, MEAN_MLP = "self_attention", "mean_mlp"
ENCODERS = (SELF_ATTENTION, MEAN_MLP)

# Losses over the item softmax.
LOSSES = ("full_softmax", "sampled_softmax", "nce", "in_batch")
# `auto` picks full_softmax for small catalogs and sampled_softmax beyond them.
AUTO_LOSS = "auto"
LOSS_CHOICES = (AUTO_LOSS, *LOSSES)

# Negative samplers of sampled_softmax and nce.
SAMPLERS = ("unigram", "log_uniform")
# "lazy_adam" updates Adam's slots only on the rows a sparse gradient touches.
OPTIMIZERS = ("adam", "lazy_adam")

# What a training example teaches.
# per_position: every history slot predicts the next item (one example is a sequence piece of up
#   to max_history + 1 events, SASRec's objective);
# last_position: one example per training event, its preceding window predicting it (YouTube
#   DNN's objective).
PER_POSITION, LAST_POSITION = "per_position", "last_position"
OBJECTIVES = (PER_POSITION, LAST_POSITION)

# "Let the data decide" for epoch counts.
AUTO = "auto"
