"""JAX adapter: optax-style label-smoothed softmax cross-entropy.

[smoothce.jax.softmax_cross_entropy][] takes probability (or one-hot) labels,
[smoothce.jax.softmax_cross_entropy_with_integer_labels][] class indices. Both take optax's
arguments in optax's order, `(logits, labels, axis=-1, where=None)`, plus keyword-only
`label_smoothing` (default 0.1), `z_loss` and `softcap`, and return one loss per example, as
optax does. They are differentiable (forward and reverse mode, Hessians) through a
`jax.custom_jvp` built on the core's derivatives, and work under `jit` and `vmap`.
[smoothce.jax.linear_softmax_cross_entropy_with_integer_labels][] computes the loss of a linear
head from its hidden states, chunk by chunk, without storing the logits. With `axis_name`,
all three compute the loss of class-sharded logits inside `jax.shard_map` (vocab
parallelism). [smoothce.jax.differentiable_loss][] is the seam [smoothce.keras][] uses on the
JAX backend.
"""

from ._linear import (
    linear_softmax_cross_entropy_with_integer_labels as linear_softmax_cross_entropy_with_integer_labels,  # noqa: E501
)
from ._losses import differentiable_loss as differentiable_loss
from ._losses import softmax_cross_entropy as softmax_cross_entropy
from ._losses import (
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
)

__all__ = [
    "differentiable_loss",
    "linear_softmax_cross_entropy_with_integer_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]
