"""Keras 3 losses whose values and gradients come from smoothce's core.

Keras does the plumbing it always does (casting to the loss dtype, sample weights, masks,
reductions, serialization); ``call`` only turns Keras's inputs into the core's inputs (logits and
labels) and returns one loss per example. The tensors stay in the active backend's type and the
core dispatches on that type, so the same classes work with KERAS_BACKEND=tensorflow, jax and
torch. On TensorFlow the gradient is the core's, registered by smoothce.tensorflow; on JAX and
torch the backend's autodiff differentiates the core's array-API operations.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

import smoothce
from smoothce._validate import class_axis, smoothing

__all__ = ["CategoricalCrossentropy", "SparseCategoricalCrossentropy"]


def check_axis(axis: Any) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"axis must be an int, got {axis!r}")
    return axis


def as_logits(y_pred: Any, from_logits: bool, axis: int) -> Any:
    """Logits for the core: ``y_pred`` itself, or log-probabilities made the way Keras does.

    For probabilities Keras divides by their sum along ``axis`` and clips to
    [ε_K, 1 − ε_K] (ε_K = ``keras.config.epsilon()``, 1e-7); the log of that is a valid logit
    vector, since softmax(log p) = p / Σp. On the TensorFlow backend Keras's softmax remembers
    its input on the output tensor (``_keras_logits``) and Keras's own cross-entropy uses it, so
    a softmax output layer is handled from its logits; that is mirrored here.
    """
    if from_logits:
        return y_pred
    remembered = getattr(y_pred, "_keras_logits", None)
    if remembered is not None:
        return ops.cast(remembered, y_pred.dtype)
    probs = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
    tiny = keras.config.epsilon()
    return ops.log(ops.clip(probs, tiny, 1.0 - tiny))


def per_example(
    logits: Any, labels: Any, eps: float, axis: int, ignore_index: int | None = None
) -> Any:
    """The core's per-example loss on the active backend, differentiable by that backend.

    ``ignore_index`` (integer labels only) is the core's: those examples get loss 0 and no
    gradient.
    """
    if keras.backend.backend() == "tensorflow":
        from smoothce.tensorflow import _nn

        ax = class_axis(len(logits.shape), axis)
        if labels.dtype.is_integer:
            return _nn._sparse_with_grad(eps, ax, ignore_index)(logits, labels)
        return _nn._dense_with_grad(eps, ax, labels_grad=False)(logits, labels)
    return smoothce.loss(
        logits, labels, eps, axis=axis, ignore_index=ignore_index, reduction="none"
    )


@keras.saving.register_keras_serializable(package="smoothce")
class CategoricalCrossentropy(keras.losses.Loss):
    r"""Label-smoothed categorical cross-entropy for one-hot or probability targets.

    Drop-in for ``keras.losses.CategoricalCrossentropy`` with ``label_smoothing`` first and
    defaulting to 0.1. Per example, with K classes on ``axis`` and q = (1 − ε)·y + ε/K::

        loss = −Σ_c q_c · log p_c

    where p = softmax(y_pred) when ``from_logits=True``, else ``y_pred`` normalised and clipped as
    Keras does. Reductions, ``sample_weight`` and serialization are Keras's.

    Args:
      label_smoothing: ε in [0, 1].
      from_logits: whether ``y_pred`` holds logits rather than probabilities.
      axis: the class axis (K is its size, also for ``axis != -1``).
      reduction: any Keras reduction (``"sum_over_batch_size"``, ``"sum"``, ``"mean"``,
        ``"mean_with_sample_weight"``, ``"none"`` or ``None``).
      name: the loss's name.
      dtype: the loss's computation dtype (``keras.backend.floatx()`` when ``None``).
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        from_logits: bool = False,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = smoothing(label_smoothing)
        self.from_logits = bool(from_logits)
        self.axis = check_axis(axis)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = as_logits(y_pred, self.from_logits, self.axis)
        labels = ops.cast(y_true, logits.dtype)
        return per_example(logits, labels, self.label_smoothing, self.axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            label_smoothing=self.label_smoothing, from_logits=self.from_logits, axis=self.axis
        )
        return config


@keras.saving.register_keras_serializable(package="smoothce")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    r"""Label-smoothed cross-entropy for integer class labels, without building a one-hot.

    Drop-in for ``keras.losses.SparseCategoricalCrossentropy`` plus ``label_smoothing`` (which
    Keras's sparse loss lacks). Per example with label y::

        loss = lse(z) − (1 − ε)·z_y − (ε/K)·Σ_c z_c

    with z the logits (or log-probabilities when ``from_logits=False``), which equals
    :class:`CategoricalCrossentropy` on ``one_hot(y)``.

    Args:
      label_smoothing: ε in [0, 1].
      from_logits: whether ``y_pred`` holds logits rather than probabilities.
      ignore_class: a label value whose examples get loss 0 and are masked out of the
        reduction, as in Keras (``"sum_over_batch_size"`` then averages over the other
        examples only). ``None`` ignores nothing.
      axis: the class axis of ``y_pred``; ``y_true`` has ``y_pred``'s shape without it (a
        trailing or class-axis dimension of size 1 is squeezed, as Keras does).
      reduction: Keras's reduction of the per-example losses ("sum_over_batch_size", "sum",
        "mean", "mean_with_sample_weight", "none" or None).
      name: the loss's name, Keras's default kept for a drop-in swap.
      dtype: the loss dtype (Keras's policy when None).

    Labels arrive as floats (Keras casts ``y_true`` to the loss dtype) and are cast back to
    int32. Eagerly an out-of-range label raises ``ValueError``; in compiled training steps it
    cannot be checked and turns that example's loss into NaN.
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        from_logits: bool = False,
        ignore_class: int | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = smoothing(label_smoothing)
        self.from_logits = bool(from_logits)
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, int)
        ):
            raise ValueError(f"ignore_class must be an int or None, got {ignore_class!r}")
        self.ignore_class = ignore_class
        self.axis = check_axis(axis)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        rank = len(y_pred.shape)
        ax = class_axis(rank, self.axis)
        if len(y_true.shape) == rank:
            # Keras accepts labels with a size-1 class (or trailing) dimension
            squeeze = ax if y_true.shape[ax] == 1 else -1 if y_true.shape[-1] == 1 else None
            if squeeze is None:
                raise ValueError(
                    f"y_true of shape {tuple(y_true.shape)} does not fit y_pred of shape "
                    f"{tuple(y_pred.shape)}: integer labels have y_pred's shape without axis {ax}"
                )
            y_true = ops.squeeze(y_true, axis=squeeze)
        labels = ops.cast(y_true, "int32")
        logits = as_logits(y_pred, self.from_logits, ax)
        losses = per_example(logits, labels, self.label_smoothing, ax, self.ignore_class)
        if self.ignore_class is not None:
            # the core gave those examples loss 0; as in Keras, the mask also leaves them out
            # of the reduction ("sum_over_batch_size" averages over the other examples)
            _set_keras_mask(losses, ops.not_equal(labels, self.ignore_class))
        return losses

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            label_smoothing=self.label_smoothing,
            from_logits=self.from_logits,
            ignore_class=self.ignore_class,
            axis=self.axis,
        )
        return config


def _set_keras_mask(x: Any, mask: Any) -> None:
    # Keras reads the mask back in Loss.__call__; the setter is not in keras's public API.
    from keras.src.backend import set_keras_mask

    set_keras_mask(x, mask)
