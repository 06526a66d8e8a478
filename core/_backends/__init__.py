"""The backend registry: which array library an array belongs to, and what smoothce knows of it.

One module per library (``numpy``, ``torch``, ``jax``, ``tensorflow``) subclasses
:class:`Backend`; any other library that array-api-compat recognises (array-api-strict, CuPy,
Dask, ...) gets the generic :class:`Backend`. Adding a library is one module and one entry in
``_KNOWN``. No module here imports a framework until the user has.
"""

from __future__ import annotations

from typing import Any

from ._base import Backend as Backend
from ._base import Functional as Functional
from .jax import JaxBackend
from .numpy import NumPyBackend
from .tensorflow import TensorFlowBackend
from .torch import TorchBackend

__all__ = ["Backend", "Functional", "backend_of", "common_backend"]

# torch first: small torch calls feel every microsecond of the lookup's first sight of a type
_KNOWN: tuple[Backend, ...] = (TorchBackend(), NumPyBackend(), JaxBackend(), TensorFlowBackend())
_GENERIC = Backend()
_BY_TYPE: dict[type, Backend] = {}


def backend_of(x: Any) -> Backend:
    """The backend of array ``x``; ``TypeError`` for anything that is not a supported array."""
    backend = _BY_TYPE.get(type(x))
    if backend is None:
        backend = next((b for b in _KNOWN if b.owns(x)), None)
        if backend is None:
            if not _GENERIC.owns(x):
                raise TypeError(
                    f"expected an array (NumPy, PyTorch, JAX, TensorFlow or another array-API "
                    f"library), got {_kind(x)}"
                )
            backend = _GENERIC
        _BY_TYPE[type(x)] = backend
    return backend


def common_backend(*arrays: Any) -> Backend:
    """The backend shared by ``arrays`` (``None`` entries skipped).

    Raises ``TypeError`` naming the libraries when they differ.
    """
    arrays = tuple(a for a in arrays if a is not None)
    first = backend_of(arrays[0])
    for other in arrays[1:]:
        if backend_of(other) is not first:
            kinds = sorted({type(a).__module__.split(".")[0] for a in arrays})
            raise TypeError(f"arrays from different libraries cannot be mixed: {kinds}")
    return first


def _kind(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"
