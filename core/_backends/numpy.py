"""NumPy: eager, writable, CPU only; in-place ufuncs over cache-sized blocks on a few threads."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._base import Backend
from ._inplace import InPlace

__all__ = ["NumPyBackend"]


class NumPyInPlace(InPlace):
    """NumPy ufuncs with ``out=``; blocks sized to stay in a core's L2 cache.

    NumPy runs one thread per call, so the blocks are shared among a few threads (ufuncs and
    BLAS release the GIL). Row sums use ``einsum``, about 2.5 times faster than NumPy's pairwise
    ``sum`` on long rows, with the same float32 accuracy in practice (partial sums in SIMD lanes).
    """

    block_elements = 1 << 19
    # SMOOTHCE_NUM_THREADS caps the threads of the blocked NumPy path (docs/guarantees.md)
    threads = max(1, int(os.environ.get("SMOOTHCE_NUM_THREADS", 0)) or min(os.cpu_count() or 1, 8))

    def row_sum(self, a: Any) -> Any:
        return np.einsum("...k->...", a)[..., None]

    def astype(self, a: Any, dtype: Any) -> Any:
        if dtype == np.float16 and a.dtype == np.float32:
            return float16(a)
        return super().astype(a, dtype)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        rows = np.indices(label.shape[:-1], sparse=True)  # any layout, any number of axes
        if not isinstance(values, (int, float)) and values.ndim > 0:
            values = values[..., 0] if values.shape[-1:] == (1,) else values
        g[(*rows, label[..., 0])] += values  # one element per row: no duplicate indices
        return g


def float16(x: Any) -> Any:
    """``x.astype(float16)``, bit for bit, about 15 times faster for small values.

    NumPy's own cast takes ~65 ns for every element that rounds to a float16 subnormal (it
    raises the underflow flag element by element; exact subnormals are fast): most of a
    float16 gradient under a mean over many examples and classes. Those elements are formed
    here as integers instead: a float16 subnormal is m·2⁻²⁴, so its bits are m = rint(|x|·2²⁴)
    (ties to even, as the cast rounds; m = 1024 is the smallest normal, whose bits are 1024).
    """
    magnitude = np.abs(x)
    tiny = magnitude < np.float32(2.0**-14)  # results below float16's smallest normal
    out = np.where(tiny, np.float32(0), x).astype(np.float16)  # NumPy's cast for the others
    with np.errstate(over="ignore", invalid="ignore"):  # values of the others are not used
        bits = np.rint(magnitude * np.float32(2.0**24)).astype(np.uint16)
    bits |= np.signbit(x).astype(np.uint16) << 15
    np.copyto(out.view(np.uint16), bits, where=tiny)
    return out


class NumPyBackend(Backend):
    name = "numpy"

    def __init__(self) -> None:
        import array_api_compat.numpy

        self.xp = array_api_compat.numpy
        self.ops = NumPyInPlace(self.xp, np)

    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def namespace(self, x: Any) -> Any:
        return self.xp

    def device(self, x: Any) -> Any:
        return "cpu"

    def on_host(self, x: Any) -> bool:
        return True

    def inplace_ops(self, xp: Any, x: Any, operands: tuple[Any, ...] = ()) -> InPlace:
        return self.ops

    def shares_memory(self, a: Any, b: Any) -> bool:
        return bool(np.may_share_memory(a, b))

    def overwrite_refusal(self, x: Any) -> str | None:
        if not x.flags.writeable:
            return "the array is read-only"
        if not x.flags.c_contiguous:
            return "the array is not C-contiguous with the class axis last"
        return None

    def index_dtype(self, xp: Any, x: Any) -> Any:
        return np.intp
