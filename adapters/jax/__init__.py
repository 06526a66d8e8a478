"""smoothce for JAX: optax-style label-smoothed softmax cross-entropy.

``softmax_cross_entropy(logits, labels, axis=-1, where=None, *, label_smoothing=0.1)`` takes
probability (or one-hot) labels, ``softmax_cross_entropy_with_integer_labels`` takes class
indices. Both return one loss per example, as optax does, and are differentiable (forward and
reverse mode, Hessians) through a ``jax.custom_jvp`` built on the core's derivatives. The
positional order is optax's; ``label_smoothing`` is keyword-only. ``axis_name`` computes the
loss of class-sharded logits inside ``jax.shard_map`` (vocab parallelism).
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
