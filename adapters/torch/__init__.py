"""PyTorch adapter: ``cross_entropy`` and ``CrossEntropyLoss``, drop-ins for torch's own.

Forward and backward values come from the core (``smoothce.loss_and_grad``) through a
``torch.autograd.Function``; the default ``label_smoothing`` is 0.1.
"""

from ._errors import InvalidLabel as InvalidLabel
from ._errors import InvalidType as InvalidType
from ._errors import InvalidValue as InvalidValue
from ._function import differentiable_loss as differentiable_loss
from ._functional import cross_entropy as cross_entropy
from ._linear import linear_cross_entropy as linear_cross_entropy
from ._module import CrossEntropyLoss as CrossEntropyLoss

__all__ = [
    "CrossEntropyLoss",
    "InvalidLabel",
    "InvalidType",
    "InvalidValue",
    "cross_entropy",
    "differentiable_loss",
    "linear_cross_entropy",
]
