"""Keras 3 adapter: label-smoothed cross-entropy losses for every Keras backend.

``CategoricalCrossentropy`` and ``SparseCategoricalCrossentropy`` are drop-ins for Keras's
classes of the same names with ``label_smoothing`` (default 0.1; the sparse one smooths without a
one-hot), and ``smooth_crossentropy(eps)`` is the seed's factory returning ``loss_fn(y_true,
y_pred)``. They run on KERAS_BACKEND=tensorflow, jax and torch alike.
"""

from ._factory import SmoothCrossentropyFn as SmoothCrossentropyFn
from ._factory import smooth_crossentropy as smooth_crossentropy
from ._losses import CategoricalCrossentropy as CategoricalCrossentropy
from ._losses import SparseCategoricalCrossentropy as SparseCategoricalCrossentropy

__all__ = [
    "CategoricalCrossentropy",
    "SmoothCrossentropyFn",
    "SparseCategoricalCrossentropy",
    "smooth_crossentropy",
]
