"""The seam between the core and the framework adapters (not a stable public API).

Adapters build a `LossSpec` from their native arguments, call `evaluate` inside
their framework's autodiff rule, and wrap nothing but names, defaults and layouts around it.
Everything an adapter may use from the core is re-exported here; nothing else is.
"""

from ._backends import Backend as Backend
from ._backends import backend_of as backend_of
from ._kernel import spread_eps as spread_eps
from ._kernel.hessian import softmax_from_gradient as softmax_from_gradient
from ._kernel.hessian import softmax_hvp as softmax_hvp
from ._kernel.hessian import target_gradient_map as target_gradient_map
from ._kernel.hessian import target_map as target_map
from ._linear import LinearResult as LinearResult
from ._linear import evaluate_linear as evaluate_linear
from ._run import Result as Result
from ._run import evaluate as evaluate
from ._spec import NAMES as NAMES
from ._spec import LabelRangeError as LabelRangeError
from ._spec import LossSpec as LossSpec
from ._spec import Names as Names
from ._spec import check_index as check_index

__all__ = [
    "NAMES",
    "Backend",
    "LabelRangeError",
    "LinearResult",
    "LossSpec",
    "Names",
    "Result",
    "backend_of",
    "check_index",
    "evaluate",
    "evaluate_linear",
    "softmax_from_gradient",
    "softmax_hvp",
    "spread_eps",
    "target_gradient_map",
    "target_map",
]
