"""The source post's loss factory: ε as a parameter, the loss as `loss_fn(y_true, y_pred)`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from smoothce import Array

from ._losses import loss_spec, per_example

__all__ = ["SmoothCrossentropyFn", "smooth_crossentropy"]


@keras.saving.register_keras_serializable(package="smoothce")
class SmoothCrossentropyFn:
    r"""What [smoothce.keras.smooth_crossentropy][] returns: a per-example loss Keras can save.

    `loss_fn(y_true, y_pred)` gives, for each example with $K$ classes on the last axis,

    $$
    L = -\sum_c \bigl((1 - \varepsilon) y_c + \varepsilon/K\bigr) \log p_c ,
    $$

    with $p$ = `y_pred` (probabilities, normalised and clipped as Keras does) or
    $\mathrm{softmax}$(`y_pred`) with `from_logits=True`: a tensor of the active backend with
    `y_pred`'s shape without the last axis. `y_true` (one-hot or probabilities, `y_pred`'s
    shape) is cast to `y_pred`'s dtype. A closure could not be restored by
    `keras.models.load_model`; this small callable object is registered with Keras and
    carries $\varepsilon$ and `from_logits` in its config (`get_config`, `from_config`)
    instead.

    Args:
        eps: Smoothing $\varepsilon \in [0, 1]$, a Python number; default 0.1.
        from_logits: Whether `y_pred` holds logits rather than probabilities.

    Raises:
        ValueError: $\varepsilon$ outside $[0, 1]$ or NaN.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss_fn = smoothce.keras.SmoothCrossentropyFn(0.1, from_logits=True)
        >>> loss_fn
        smooth_crossentropy(eps=0.1, from_logits=True)
        >>> values = loss_fn(np.array([[1.0, 0.0, 0.0]]), np.array([[2.0, 1.0, 0.1]]))
        >>> [round(float(v), 4) for v in values]
        [0.5137]
        >>> loss_fn.get_config()
        {'eps': 0.1, 'from_logits': True}
    """

    def __init__(self, eps: float = 0.1, from_logits: bool = False) -> None:
        self.spec = loss_spec(eps, -1, from_logits=bool(from_logits))
        self.eps = self.spec.eps
        self.from_logits = bool(from_logits)
        self.__name__ = "smooth_crossentropy"  # Keras names the compiled loss after it

    def __call__(self, y_true: Array, y_pred: Array) -> Array:
        y_pred = ops.convert_to_tensor(y_pred)
        return per_example(self.spec, y_pred, ops.cast(y_true, y_pred.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SmoothCrossentropyFn:
        return cls(**config)

    def __repr__(self) -> str:
        return f"smooth_crossentropy(eps={self.eps}, from_logits={self.from_logits})"


def smooth_crossentropy(eps: float = 0.1, from_logits: bool = False) -> SmoothCrossentropyFn:
    r"""The source post's label-smoothed loss, with $\varepsilon$ as a parameter instead of 0.1.

    Returns `loss_fn(y_true, y_pred)` giving one loss per example for one-hot (or
    probability) `y_true` and softmax outputs `y_pred` (logits with `from_logits=True`),
    classes last:

    $$
    \mathrm{loss}(y, p) = (1 - \varepsilon)\,\mathrm{CE}(y, p)
        + \varepsilon\,\mathrm{CE}(\mathrm{uniform}, p)
        = -\sum_c \bigl((1 - \varepsilon) y_c + \varepsilon/K\bigr) \log p_c
    $$

    Use it as `model.compile(optimizer="adam", loss=smooth_crossentropy(0.1))`; Keras
    averages the per-example values over the batch. The returned object is registered with
    Keras, so a model compiled with it survives `model.save` / `keras.models.load_model`.
    It takes neither `z_loss` nor `softcap` ([smoothce.keras.CategoricalCrossentropy][] does).

    Args:
        eps: Smoothing $\varepsilon \in [0, 1]$, a Python number; default 0.1.
        from_logits: Whether `y_pred` holds logits rather than softmax probabilities.

    Returns:
        The loss function, a [smoothce.keras.SmoothCrossentropyFn][]: called as
        `loss_fn(y_true, y_pred)` on tensors of the active Keras backend (or NumPy arrays),
        it returns one loss per example in `y_pred`'s dtype, differentiable by the backend.

    Raises:
        ValueError: $\varepsilon$ outside $[0, 1]$ or NaN.

    Examples:
        >>> import numpy as np, smoothce.keras
        >>> loss_fn = smoothce.keras.smooth_crossentropy(0.1, from_logits=True)
        >>> values = loss_fn(np.array([[1.0, 0.0, 0.0]]), np.array([[2.0, 1.0, 0.1]]))
        >>> [round(float(v), 4) for v in values]
        [0.5137]
    """
    return SmoothCrossentropyFn(eps, from_logits)
