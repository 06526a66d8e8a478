"""PyTorch adapter: drop-ins for torch's own cross-entropy, with label smoothing by default.

[smoothce.torch.cross_entropy][] and [smoothce.torch.CrossEntropyLoss][] take the arguments
of `torch.nn.functional.cross_entropy` and `torch.nn.CrossEntropyLoss` in their order;
[smoothce.torch.linear_cross_entropy][] computes the loss of a final linear layer from the
hidden states, in chunks. Forward and backward values come from the core
([smoothce.loss_and_grad][]) through a `torch.autograd.Function`; the default
`label_smoothing` is 0.1. Errors are [smoothce.torch.InvalidValue][],
[smoothce.torch.InvalidType][] and [smoothce.torch.InvalidLabel][]: each is both the core's
`ValueError` or `TypeError` and the `RuntimeError` (or `IndexError`) PyTorch raises.
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
