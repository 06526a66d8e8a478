"""The seed's factory: ε as a parameter, the loss returned as ``loss_fn(y_true, y_pred)``."""

from __future__ import annotations

from typing import Any

import keras

from smoothce._validate import smoothing

from ._losses import as_logits, per_example

__all__ = ["smooth_crossentropy"]


@keras.saving.register_keras_serializable(package="smoothce")
class SmoothCrossentropyFn:
    """What :func:`smooth_crossentropy` returns: a per-example loss function that Keras can save.

    A closure could not be restored by ``keras.models.load_model``; this small callable object
    carries ε and ``from_logits`` in its config instead.
    """

    def __init__(self, eps: float = 0.1, from_logits: bool = False) -> None:
        self.eps = smoothing(eps)
        self.from_logits = bool(from_logits)
        self.__name__ = "smooth_crossentropy"  # Keras names the compiled loss after it

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = keras.ops.convert_to_tensor(y_pred)
        logits = as_logits(y_pred, self.from_logits, -1)
        labels = keras.ops.cast(y_true, logits.dtype)
        return per_example(logits, labels, self.eps, -1)

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SmoothCrossentropyFn:
        return cls(**config)

    def __repr__(self) -> str:
        return f"smooth_crossentropy(eps={self.eps}, from_logits={self.from_logits})"


def smooth_crossentropy(eps: float = 0.1, from_logits: bool = False) -> SmoothCrossentropyFn:
    r"""The seed blog post's label-smoothed loss with ε as a parameter.

    Returns ``loss_fn(y_true, y_pred)`` giving one loss per example for one-hot (or probability)
    ``y_true`` and softmax outputs ``y_pred`` (logits with ``from_logits=True``), classes last::

        loss_fn(y, p) = (1 − ε)·CE(y, p) + ε·CE(uniform, p) = −Σ_c ((1 − ε)·y_c + ε/K)·log p_c

    Use it as ``model.compile(optimizer="adam", loss=smooth_crossentropy(0.1))``; Keras averages
    the per-example values over the batch. The returned object is registered with Keras, so a
    model compiled with it survives ``model.save`` / ``keras.models.load_model``.
    """
    return SmoothCrossentropyFn(eps, from_logits)
