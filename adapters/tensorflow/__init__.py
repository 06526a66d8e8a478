"""TensorFlow adapter: `tf.nn`-style label-smoothed softmax cross-entropy.

[smoothce.tensorflow.softmax_cross_entropy_with_logits][] and
[smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits][] take `tf.nn`'s arguments in
`tf.nn`'s order plus keyword-only `label_smoothing` (default 0.1), `z_loss` and `softcap`,
return per-example losses and work eagerly, inside `tf.function` (XLA included), in TF1-style
graphs and under `tf.distribute` strategies. Values and gradients come from one pass of the
core, registered with `tf.custom_gradient`. [smoothce.tensorflow.differentiable_loss][] is the
seam [smoothce.keras][] uses on the TensorFlow backend.
"""

from ._nn import differentiable_loss as differentiable_loss
from ._nn import softmax_cross_entropy_with_logits as softmax_cross_entropy_with_logits
from ._nn import (
    sparse_softmax_cross_entropy_with_logits as sparse_softmax_cross_entropy_with_logits,
)

__all__ = [
    "differentiable_loss",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]
