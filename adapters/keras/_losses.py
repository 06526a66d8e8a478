r"""Keras 3 losses whose values and gradients come from smoothce's core.

Keras does the plumbing it always does (casting to the loss dtype, sample weights, masks,
reductions, serialization); `call` only turns Keras's inputs into one `LossSpec` (from
`smoothce.internal`) and hands it, with the logits (or probabilities) and the labels, to the
smoothce adapter of the active Keras backend, whose autodiff rule carries the core's
derivatives: `smoothce.tensorflow` (`tf.custom_gradient`), `smoothce.jax` (`jax.custom_jvp`)
or `smoothce.torch` (`torch.autograd.Function`). Probabilities (`from_logits=False`) are
turned into log-probabilities by the core, the way Keras does it.

The keyword-only `z_loss` (PaLM's $\lambda \operatorname{lse}(z)^2$) and `softcap` (Gemma 2's
$c \tanh(z/c)$) act on logits and need `from_logits=True`: on log-probabilities lse is 0, so
the z-loss would add nothing, and capping log-probabilities is not capping logits.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras
from keras import ops

import smoothce
from smoothce import Array
from smoothce.internal import LossSpec, Names, check_index

__all__ = [
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
]

NAMES = Names(logits="y_pred", labels="y_true", eps="label_smoothing", ignore_index="ignore_class")
_ADAPTERS = {"tensorflow": "smoothce.tensorflow", "jax": "smoothce.jax", "torch": "smoothce.torch"}


def loss_spec(
    label_smoothing: Any,
    axis: Any,
    *,
    ignore_class: Any = None,
    from_logits: bool = True,
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> LossSpec:
    """The per-example spec of a Keras loss (checked when the loss is made).

    ``z_loss`` and ``softcap`` with ``from_logits=False`` raise ``ValueError``: both are
    defined on logits, and from probabilities the core has only log-probabilities, whose lse
    is 0 (a z-loss of 0) and whose soft-capped values are no capped logits.
    """
    probabilities = None if from_logits else float(keras.config.epsilon())
    return LossSpec(
        label_smoothing,
        axis,
        ignore_index=ignore_class,
        reduction="none",
        probabilities=probabilities,
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
    )


def _llm_config(spec: LossSpec) -> dict[str, Any]:
    """``z_loss`` and ``softcap`` for ``get_config``, only when set: without them the config
    is Keras's own loss's."""
    config: dict[str, Any] = {}
    if spec.z_loss:
        config["z_loss"] = spec.z_loss
    if spec.softcap is not None:
        config["softcap"] = spec.softcap
    return config


def per_example(spec: LossSpec, y_pred: Any, labels: Any) -> Any:
    """One loss per example on the active backend, differentiable by that backend.

    On the TensorFlow backend Keras's softmax remembers its input on the output tensor
    (``_keras_logits``) and Keras's own cross-entropy uses it, so a softmax output layer is
    handled from its logits; that is mirrored here.
    """
    if spec.probabilities is not None:
        remembered = getattr(y_pred, "_keras_logits", None)
        if remembered is not None:
            y_pred, spec = ops.cast(remembered, y_pred.dtype), spec.replace(probabilities=None)
    module = _ADAPTERS.get(keras.backend.backend())
    if module is None:  # e.g. the numpy backend: values only
        return smoothce.internal.evaluate(spec, y_pred, labels).value
    return importlib.import_module(module).differentiable_loss(spec, y_pred, labels)


def categorical_crossentropy(
    y_true: Array,
    y_pred: Array,
    from_logits: bool = False,
    label_smoothing: float = 0.1,
    axis: int = -1,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Array:
    r"""Per-example label-smoothed cross-entropy, `keras.losses.categorical_crossentropy`'s form.

    For each example, with $K$ classes on `axis` and $q = (1 - \varepsilon)\,y + \varepsilon/K$,

    $$
    L = -\sum_c q_c \log p_c ,
    $$

    where $p = \mathrm{softmax}$(`y_pred`) when `from_logits`, else `y_pred` normalised and
    clipped as Keras does. Same arguments and order as Keras's; only the default
    `label_smoothing` differs (0.1). Keyword-only, with `from_logits=True` only: `z_loss`
    ($\lambda \ge 0$) adds $\lambda \operatorname{lse}(z)^2$ per example; `softcap` ($c > 0$)
    makes the logits $c \tanh(z/c)$ first. [smoothce.keras.CategoricalCrossentropy][] is the
    `keras.losses.Loss` form.

    Args:
        y_true: One-hot or probability targets of `y_pred`'s shape, a tensor of the active
            Keras backend or a NumPy array; cast to `y_pred`'s dtype.
        y_pred: Probabilities (`from_logits=False`) or logits (`from_logits=True`), a real
            floating tensor of the active Keras backend (or a NumPy array) with the $K$ classes
            along `axis`; 16-bit floats are accumulated in float32.
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$; default 0.1.
        axis: The class axis ($K$ is its size, also for `axis != -1`).
        z_loss: $\lambda \ge 0$ (keyword-only): adds $\lambda \operatorname{lse}(z)^2$ to each
            example's loss (PaLM's z-loss); 0 adds nothing. Needs `from_logits=True`.
        softcap: $c > 0$ (keyword-only): the logits become $c \tanh(z/c)$ before everything
            else (Gemma 2); `None` caps nothing. Needs `from_logits=True`.

    Returns:
        One loss per example: a tensor of the active backend, in `y_pred`'s dtype, of
        `y_pred`'s shape without `axis`, differentiable by the backend's autodiff (on the
        numpy backend, values only).

    Raises:
        ValueError: `z_loss` or `softcap` with `from_logits=False`, $\varepsilon$ outside
            $[0, 1]$, $\lambda < 0$ or $c \le 0$, shapes that do not fit, an `axis` out of
            range.
        TypeError: A `z_loss` or `softcap` that is a string or a bool, a non-floating
            `y_pred`.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss = smoothce.keras.categorical_crossentropy(
        ...     np.array([[1.0, 0.0, 0.0]]), np.array([[2.0, 1.0, 0.1]]), from_logits=True)
        >>> [round(float(v), 4) for v in loss]
        [0.5137]

        From probabilities, Keras's default:

        >>> loss = smoothce.keras.categorical_crossentropy(
        ...     np.array([[1.0, 0.0, 0.0]]), np.array([[0.7, 0.2, 0.1]]))
        >>> [round(float(v), 4) for v in loss]
        [0.4633]
    """
    spec = loss_spec(
        label_smoothing, axis, from_logits=bool(from_logits), z_loss=z_loss, softcap=softcap
    )
    y_pred = ops.convert_to_tensor(y_pred)
    return per_example(spec, y_pred, ops.cast(y_true, y_pred.dtype))


def sparse_categorical_crossentropy(
    y_true: Array,
    y_pred: Array,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
    *,
    label_smoothing: float = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Array:
    r"""Per-example label-smoothed cross-entropy for integer labels, no one-hot built.

    For each example with label $y$ and logits $z$ (log-probabilities when
    `from_logits=False`),

    $$
    L = \operatorname{lse}(z) - (1 - \varepsilon)\,z_y - \frac{\varepsilon}{K}\sum_c z_c .
    $$

    `keras.losses.sparse_categorical_crossentropy`'s arguments and order, plus the
    keyword-only `label_smoothing` (Keras's sparse loss has none), `z_loss` and `softcap` (as
    in [smoothce.keras.categorical_crossentropy][]). Examples whose label is `ignore_class`
    get loss 0. [smoothce.keras.SparseCategoricalCrossentropy][] is the `keras.losses.Loss`
    form.

    Args:
        y_true: Integer class indices in $[0, K)$ (or `ignore_class`), a tensor of the active
            Keras backend or a NumPy array of `y_pred`'s shape without `axis`; a trailing or
            class-axis dimension of size 1 is squeezed, as Keras does. Read as int32.
        y_pred: Probabilities (`from_logits=False`) or logits (`from_logits=True`), a real
            floating tensor of the active Keras backend (or a NumPy array) with the $K$ classes
            along `axis`; 16-bit floats are accumulated in float32.
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        ignore_class: A label value whose examples get loss 0 and no gradient. `None`
            ignores nothing.
        axis: The class axis of `y_pred`.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only); default 0.1.
        z_loss: $\lambda \ge 0$ (keyword-only): adds $\lambda \operatorname{lse}(z)^2$ to each
            example's loss (PaLM's z-loss); 0 adds nothing. Needs `from_logits=True`.
        softcap: $c > 0$ (keyword-only): the logits become $c \tanh(z/c)$ before everything
            else (Gemma 2); `None` caps nothing. Needs `from_logits=True`.

    Returns:
        One loss per example: a tensor of the active backend, in `y_pred`'s dtype, of
        `y_true`'s shape (`y_pred`'s without `axis`), differentiable by the backend's autodiff
        with respect to `y_pred` (on the numpy backend, values only).

    Raises:
        ValueError: A label outside $[0, K)$ that is not `ignore_class`, eagerly (the error
            is also an `IndexError`; in compiled steps that example's loss is NaN), `y_true`
            whose shape does not fit `y_pred`, an `axis` out of range, `z_loss` or `softcap`
            with `from_logits=False`, $\varepsilon$ outside $[0, 1]$, $\lambda < 0$ or
            $c \le 0$.
        TypeError: A `z_loss` or `softcap` that is a string or a bool, a non-integer
            `ignore_class`, a non-floating `y_pred`.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss = smoothce.keras.sparse_categorical_crossentropy(
        ...     np.array([0]), np.array([[2.0, 1.0, 0.1]]), from_logits=True)
        >>> [round(float(v), 4) for v in loss]
        [0.5137]

        An ignored label gives loss 0:

        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> loss = smoothce.keras.sparse_categorical_crossentropy(
        ...     np.array([0, 2]), logits, from_logits=True, ignore_class=2)
        >>> [round(float(v), 4) for v in loss]
        [0.5137, 0.0]
    """
    spec = loss_spec(
        label_smoothing,
        axis,
        ignore_class=ignore_class,
        from_logits=bool(from_logits),
        z_loss=z_loss,
        softcap=softcap,
    )
    y_pred = ops.convert_to_tensor(y_pred)
    return per_example(spec, y_pred, _integer_labels(y_true, y_pred, spec))


def _integer_labels(y_true: Any, y_pred: Any, spec: LossSpec) -> Any:
    """Labels of y_pred's shape without the class axis, as int32; Keras's size-1 class (or
    trailing) dimension is squeezed."""
    rank = len(y_pred.shape)
    if not -rank <= spec.axis < rank:
        raise ValueError(f"axis {spec.axis} is out of range for y_pred with {rank} dimensions")
    ax = spec.axis % rank
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == rank:
        squeeze = ax if y_true.shape[ax] == 1 else -1 if y_true.shape[-1] == 1 else None
        if squeeze is None:
            raise ValueError(
                f"y_true of shape {tuple(y_true.shape)} does not fit y_pred of shape "
                f"{tuple(y_pred.shape)}: integer labels have y_pred's shape without axis {ax}"
            )
        y_true = ops.squeeze(y_true, axis=squeeze)
    return ops.cast(y_true, "int32")


@keras.saving.register_keras_serializable(package="smoothce")
class CategoricalCrossentropy(keras.losses.Loss):
    r"""Label-smoothed categorical cross-entropy for one-hot or probability targets.

    Drop-in for `keras.losses.CategoricalCrossentropy`: the same arguments in the same
    order; only the default `label_smoothing` differs (0.1). Per example, with $K$ classes on
    `axis` and $q = (1 - \varepsilon)\,y + \varepsilon/K$,

    $$
    L = -\sum_c q_c \log p_c ,
    $$

    where $p = \mathrm{softmax}$(`y_pred`) when `from_logits=True`, else `y_pred` normalised
    and clipped as Keras does (on the TensorFlow backend, a softmax output layer's logits are
    used, as Keras's own loss uses them). Reductions, `sample_weight` and serialization are
    Keras's: calling `loss(y_true, y_pred, sample_weight=None)` takes `y_true` and `y_pred`
    as [smoothce.keras.categorical_crossentropy][] does and returns the reduced loss in the
    loss dtype. The values and gradients come from the smoothce adapter of the active Keras
    backend.

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$; default 0.1.
        axis: The class axis ($K$ is its size, also for `axis != -1`).
        reduction: Any Keras reduction (`"sum_over_batch_size"`, `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`).
        name: The loss's name.
        dtype: The loss's computation dtype. `None`: `keras.backend.floatx()`.
        z_loss: $\lambda \ge 0$ (keyword-only): adds $\lambda \operatorname{lse}(z)^2$ to each
            example's loss (PaLM's z-loss); 0 adds nothing. Needs `from_logits=True`.
        softcap: $c > 0$ (keyword-only): the logits become $c \tanh(z/c)$ before everything
            else (Gemma 2); `None` caps nothing. Needs `from_logits=True`.

    Raises:
        ValueError: When the loss is made: `z_loss` or `softcap` with `from_logits=False`,
            $\varepsilon$ outside $[0, 1]$, $\lambda < 0$ or $c \le 0$.
        TypeError: When the loss is made: a `z_loss` or `softcap` that is a string or a bool.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss = smoothce.keras.CategoricalCrossentropy(from_logits=True)
        >>> round(float(loss(np.array([[1.0, 0.0, 0.0]]), np.array([[2.0, 1.0, 0.1]]))), 4)
        0.5137

        `z_loss` and `softcap` appear in the config only when set:

        >>> loss = smoothce.keras.CategoricalCrossentropy(from_logits=True, z_loss=1e-4)
        >>> loss.get_config()["z_loss"], "softcap" in loss.get_config()
        (0.0001, False)
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.1,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.spec = loss_spec(
            label_smoothing, axis, from_logits=bool(from_logits), z_loss=z_loss, softcap=softcap
        )
        self.label_smoothing = self.spec.eps
        self.from_logits = bool(from_logits)
        self.axis = self.spec.axis
        self.z_loss, self.softcap = self.spec.z_loss, self.spec.softcap

    def call(self, y_true: Array, y_pred: Array) -> Array:
        return per_example(self.spec, y_pred, ops.cast(y_true, y_pred.dtype))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            label_smoothing=self.label_smoothing, from_logits=self.from_logits, axis=self.axis
        )
        config.update(_llm_config(self.spec))
        return config


@keras.saving.register_keras_serializable(package="smoothce")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    r"""Label-smoothed cross-entropy for integer class labels, without building a one-hot.

    Drop-in for `keras.losses.SparseCategoricalCrossentropy`: the same arguments in the
    same order, plus the keyword-only `label_smoothing` (which Keras's sparse loss lacks),
    `z_loss` and `softcap`. Per example with label $y$ and logits $z$ (log-probabilities when
    `from_logits=False`),

    $$
    L = \operatorname{lse}(z) - (1 - \varepsilon)\,z_y - \frac{\varepsilon}{K}\sum_c z_c ,
    $$

    which equals [smoothce.keras.CategoricalCrossentropy][] on `one_hot(y)`. Calling
    `loss(y_true, y_pred, sample_weight=None)` takes `y_true` and `y_pred` as
    [smoothce.keras.sparse_categorical_crossentropy][] does and returns the reduced loss in
    the loss dtype; reductions, `sample_weight` and serialization are Keras's.

    Integer labels are read before Keras casts them to the loss dtype, so float16 and
    bfloat16 losses keep labels above 2048 and 256 exact (Keras's own loss rounds them).
    Eagerly an out-of-range label raises `ValueError`; in compiled training steps it cannot
    be checked and turns that example's loss into NaN.

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        ignore_class: A label value whose examples get loss 0 and are masked out of the
            reduction, as in Keras (`"sum_over_batch_size"` then averages over the other
            examples only). `None` ignores nothing.
        reduction: Keras's reduction of the per-example losses (`"sum_over_batch_size"`,
            `"sum"`, `"mean"`, `"mean_with_sample_weight"`, `"none"` or `None`).
        axis: The class axis of `y_pred`; `y_true` has `y_pred`'s shape without it (a
            trailing or class-axis dimension of size 1 is squeezed, as Keras does).
        name: The loss's name, Keras's default kept for a drop-in swap.
        dtype: The loss dtype. `None`: Keras's policy (`keras.backend.floatx()`).
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only); default 0.1.
        z_loss: $\lambda \ge 0$ (keyword-only): adds $\lambda \operatorname{lse}(z)^2$ to each
            example's loss (PaLM's z-loss); 0 adds nothing. Needs `from_logits=True`.
        softcap: $c > 0$ (keyword-only): the logits become $c \tanh(z/c)$ before everything
            else (Gemma 2); `None` caps nothing. Needs `from_logits=True`.

    Raises:
        ValueError: When the loss is made: `z_loss` or `softcap` with `from_logits=False`,
            $\varepsilon$ outside $[0, 1]$, $\lambda < 0$ or $c \le 0$. When it is called
            eagerly: a label outside $[0, K)$ that is not `ignore_class` (also an
            `IndexError`), `y_true` whose shape does not fit `y_pred`.
        TypeError: When the loss is made: a non-integer `ignore_class`, a `z_loss` or
            `softcap` that is a string or a bool.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss = smoothce.keras.SparseCategoricalCrossentropy(from_logits=True)
        >>> round(float(loss(np.array([0]), np.array([[2.0, 1.0, 0.1]]))), 4)
        0.5137

        An ignored class is masked out of the mean:

        >>> loss = smoothce.keras.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> round(float(loss(np.array([0, 2]), logits)), 4)
        0.5137
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
        *,
        label_smoothing: float = 0.1,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if ignore_class is not None:
            ignore_class = check_index(ignore_class, "ignore_class")
        self.spec = loss_spec(
            label_smoothing,
            axis,
            ignore_class=ignore_class,
            from_logits=bool(from_logits),
            z_loss=z_loss,
            softcap=softcap,
        )
        self.label_smoothing = self.spec.eps
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = self.spec.axis
        self.z_loss, self.softcap = self.spec.z_loss, self.spec.softcap
        self._labels: Any = None

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras casts y_true to the loss dtype before call(); read the integers first
        self._labels = y_true
        try:
            return super().__call__(y_true, y_pred, sample_weight)
        finally:
            self._labels = None

    def call(self, y_true: Array, y_pred: Array) -> Array:
        if self._labels is not None:
            y_true = self._labels
        labels = _integer_labels(y_true, y_pred, self.spec)
        losses = per_example(self.spec, y_pred, labels)
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
        config.update(_llm_config(self.spec))
        return config


def _set_keras_mask(x: Any, mask: Any) -> None:
    # Keras reads the mask back in Loss.__call__; the setter is not in keras's public API.
    from keras.src.backend import set_keras_mask

    set_keras_mask(x, mask)
