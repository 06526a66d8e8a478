"""Per-library conversions for tests: NumPy data in, the library's arrays out, and back."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class Backend:
    name: str
    asarray: Callable[[Any], Any]  # NumPy array -> the library's array (dtype kept)
    namespace: Any  # the array-API namespace (or smoothce's TF compat namespace)

    def __repr__(self) -> str:
        return self.name


def to_numpy(x: Any) -> np.ndarray:
    """Any backend's array (bfloat16 included) as a float64/int NumPy array."""
    module = type(x).__module__
    if module.startswith("torch"):
        import torch

        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    if module.startswith("tensorflow"):
        import tensorflow as tf

        if x.dtype in (tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        return x.numpy()
    if module.startswith("array_api_strict"):
        return np.from_dlpack(x)
    out = np.asarray(x)
    if out.dtype.kind == "V" or str(out.dtype) == "bfloat16":
        out = out.astype(np.float32)
    return out


def _torch(a: np.ndarray) -> Any:
    import torch

    # ascontiguousarray turns a 0-d array into shape (1,); keep scalars scalar
    return torch.from_numpy(np.ascontiguousarray(a) if np.ndim(a) else np.array(a))


def _jax(a: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(a)


def _tf(a: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.constant(a)


def _strict(a: np.ndarray) -> Any:
    import array_api_strict as xs

    return xs.asarray(a)


NAMES = ("numpy", "array_api_strict", "torch", "jax", "tensorflow")
_MODULES = {
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "tensorflow": "tensorflow",
}


def _namespace(name: str) -> Any:
    if name == "numpy":
        import array_api_compat.numpy

        return array_api_compat.numpy
    if name == "array_api_strict":
        import array_api_strict

        return array_api_strict
    if name == "torch":
        import array_api_compat.torch

        return array_api_compat.torch
    if name == "jax":
        import jax.numpy

        return jax.numpy
    from smoothce._backends import _tf_namespace

    return _tf_namespace


_CONVERT = {
    "numpy": np.asarray,
    "array_api_strict": _strict,
    "torch": _torch,
    "jax": _jax,
    "tensorflow": _tf,
}


def installed(name: str) -> bool:
    """Whether the library behind backend ``name`` can be imported here."""
    module = _MODULES.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def get(name: str) -> Backend:
    """Backend ``name``; skips the calling test when its library is not installed."""
    if not installed(name):
        pytest.skip(f"{_MODULES[name]} is not installed")
    return Backend(name, _CONVERT[name], _namespace(name))
