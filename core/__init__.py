"""smoothce: label-smoothed softmax cross-entropy, one implementation for every array library.

``smoothce.loss(logits, labels, eps)`` works on NumPy, PyTorch, JAX, TensorFlow and any other
array-API arrays; ``smoothce.torch``, ``smoothce.jax``, ``smoothce.tensorflow`` and
``smoothce.keras`` expose it through each framework's own loss interface.
"""

from ._loss import grad as grad
from ._loss import loss as loss
from ._loss import loss_and_grad as loss_and_grad
from ._loss import smooth_labels as smooth_labels

__version__ = "0.1.0"

__all__ = ["grad", "loss", "loss_and_grad", "smooth_labels"]
