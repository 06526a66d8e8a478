"""smoothce: label-smoothed softmax cross-entropy, one implementation for every array library.

``smoothce.loss(logits, labels, eps)`` works on NumPy, PyTorch, JAX, TensorFlow and any other
array-API arrays; ``smoothce.torch``, ``smoothce.jax``, ``smoothce.tensorflow`` and
``smoothce.keras`` expose it through each framework's own loss interface, and
``smoothce.metrics`` measures calibration.
"""

from . import metrics as metrics
from ._api import Array as Array
from ._api import grad as grad
from ._api import linear_loss as linear_loss
from ._api import linear_loss_and_grads as linear_loss_and_grads
from ._api import loss as loss
from ._api import loss_and_grad as loss_and_grad
from ._api import smooth_labels as smooth_labels

__version__ = "0.2.0"

__all__ = [
    "Array",
    "grad",
    "linear_loss",
    "linear_loss_and_grads",
    "loss",
    "loss_and_grad",
    "metrics",
    "smooth_labels",
]
