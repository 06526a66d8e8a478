"""Keras 3 adapter: label-smoothed cross-entropy losses for every Keras backend.

[smoothce.keras.CategoricalCrossentropy][] and [smoothce.keras.SparseCategoricalCrossentropy][]
(and the function forms [smoothce.keras.categorical_crossentropy][] and
[smoothce.keras.sparse_categorical_crossentropy][]) are drop-ins for Keras's of the same names,
in Keras's argument order, with `label_smoothing` defaulting to 0.1 (the sparse ones smooth
without a one-hot) and the keyword-only `z_loss` and `softcap` for logits;
[smoothce.keras.smooth_crossentropy][] is the source post's factory returning
`loss_fn(y_true, y_pred)`, a [smoothce.keras.SmoothCrossentropyFn][]. They run on
`KERAS_BACKEND=tensorflow`, `jax` and `torch` alike.
"""

from ._factory import SmoothCrossentropyFn as SmoothCrossentropyFn
from ._factory import smooth_crossentropy as smooth_crossentropy
from ._losses import CategoricalCrossentropy as CategoricalCrossentropy
from ._losses import SparseCategoricalCrossentropy as SparseCategoricalCrossentropy
from ._losses import categorical_crossentropy as categorical_crossentropy
from ._losses import sparse_categorical_crossentropy as sparse_categorical_crossentropy

__all__ = [
    "CategoricalCrossentropy",
    "SmoothCrossentropyFn",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "smooth_crossentropy",
    "sparse_categorical_crossentropy",
]
