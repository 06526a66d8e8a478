"""Per-library conversions for tests: NumPy data in, the library's arrays out, and back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def _namespaces() -> dict[str, Backend]:
    import array_api_compat.numpy
    import array_api_compat.torch
    import array_api_strict
    import jax.numpy

    from smoothce._compat import tensorflow_namespace

    return {
        "numpy": Backend("numpy", np.asarray, array_api_compat.numpy),
        "array_api_strict": Backend("array_api_strict", _strict, array_api_strict),
        "torch": Backend("torch", _torch, array_api_compat.torch),
        "jax": Backend("jax", _jax, jax.numpy),
        "tensorflow": Backend("tensorflow", _tf, tensorflow_namespace),
    }


BACKENDS = _namespaces()
