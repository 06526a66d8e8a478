"""Backend plumbing: which namespace an array belongs to, where it lives, whether it is traced.

This is the one place that knows about individual array libraries. The loss math in
``smoothce._loss`` only ever talks to the namespace returned by :func:`namespace`.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat

__all__ = ["device", "extremes", "is_traced", "namespace"]


def _is_tensorflow(x: object) -> bool:
    # Checked by module name so that `import smoothce` never imports TensorFlow itself.
    return "tensorflow" in sys.modules and type(x).__module__.startswith("tensorflow")


def _is_torch(x: object) -> bool:
    # A plain isinstance check: array-api-compat's lru_cache'd type helpers make torch.compile
    # (dynamo) warn once per helper when it traces through them.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def namespace(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries and Python scalars skipped).

    Raises ``TypeError`` when the arrays come from different libraries.
    """
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (bool, int, float)))
    if arrays and all(_is_torch(a) for a in arrays):  # first: small torch calls feel every µs
        import array_api_compat.torch as torch_namespace

        return torch_namespace
    tf_arrays = [_is_tensorflow(a) for a in arrays]
    if any(tf_arrays):
        if not all(tf_arrays):
            kinds = sorted({type(a).__module__.split(".")[0] for a in arrays})
            raise TypeError(f"arrays from different libraries cannot be mixed: {kinds}")
        from . import tensorflow_namespace

        return tensorflow_namespace
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as err:
        kinds = sorted({type(a).__module__.split(".")[0] for a in arrays})
        raise TypeError(f"arrays from different or unsupported libraries: {kinds} ({err})") from err


def device(x: Any) -> Any:
    """The device ``x`` lives on, in a form its namespace's creation functions accept."""
    if _is_torch(x):
        return x.device
    if _is_tensorflow(x):
        return None  # TF places new tensors by its own device scope
    return array_api_compat.device(x)


def is_traced(x: Any) -> bool:
    """True when ``x`` has no concrete values yet (jit, tf.function, torch.compile, vmap).

    Value checks that need ``bool(...)`` are skipped for such arrays; the math then marks
    bad examples with NaN instead of raising.
    """
    if x is None or isinstance(x, (bool, int, float)):
        return False
    if _is_torch(x):
        import torch

        return bool(
            torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x)
        )
    if _is_tensorflow(x):
        return not hasattr(x, "numpy")  # symbolic graph tensors have no numpy()
    if array_api_compat.is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def extremes(xp: Any, x: Any) -> tuple[Any, Any]:
    """``(min(x), max(x))`` as 0-d arrays; torch reads its input once for both (aminmax)."""
    if _is_torch(x):
        import torch

        return torch.aminmax(x)
    return xp.min(x), xp.max(x)
