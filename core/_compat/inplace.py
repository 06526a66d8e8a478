"""Elementwise primitives that may write into a caller-provided buffer.

The loss kernel (``smoothce._kernel``) expresses its N×K passes through a few primitives. The
generic versions return new arrays and work on any namespace (and are what jit compilers fuse).
For eager NumPy and PyTorch, which can write into an existing buffer, the in-place versions let
the kernel run over cache-sized row blocks with no N×K temporaries: the gradient is formed in
its output buffer (or in the logits' own buffer). All of them compute the same values, except
that large float32 blocks on CPU take exp through exp2 (a few ulp apart; see ``_InPlace.exp``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import array_api_compat
import numpy as np

from . import device

__all__ = ["Functional", "inplace_ops"]


class Functional:
    """Out-of-place primitives over any array-API namespace; ``out`` is ignored."""

    # rows per block do not matter here: the whole array is one block
    block_elements = None
    threads = 1

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def subtract(self, a: Any, b: Any, out: Any) -> Any:
        return a - b

    def multiply(self, a: Any, b: Any, out: Any) -> Any:
        return a * b

    def exp(self, a: Any, out: Any) -> Any:
        return self.xp.exp(a)

    def row_sum(self, a: Any) -> Any:
        return self.xp.sum(a, axis=-1)

    def at_label(self, a: Any, label: Any) -> Any:
        """a's entry at each row's label (label: (..., 1), in range), shaped (...,)."""
        return self.xp.take_along_axis(a, label, axis=-1)[..., 0]

    def for_sums(self, z: Any, m: Any, u: Any) -> Any:
        """u = z − m once more, for the row sums, written z + (−m): the same bits, but XLA
        does not merge it with ``u`` and so fuses it into the sum, where a second consumer
        of ``u`` made it keep u as one more N×K buffer (measured 2–3× slower at 8192×1000)."""
        return z + (-m)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        """g with ``values`` (one per row) added at each row's label (label: (..., 1))."""
        xp = self.xp
        if not isinstance(values, (int, float)) and values.ndim > 0:
            values = xp.expand_dims(values, axis=-1)
        classes = xp.arange(g.shape[-1], dtype=label.dtype, device=device(label))
        return xp.where(classes == label, g + values, g)

    def astype(self, a: Any, dtype: Any) -> Any:
        """``a`` in ``dtype`` (the input's dtype, for a gradient accumulated in float32)."""
        return self.xp.astype(a, dtype, copy=False)


_LOG2_E = 1.4426950408889634
_EXP2_FROM = 1 << 14  # elements; below, the extra call costs more than exp2 saves


class _InPlace(Functional):
    """Primitives that write into ``out`` through the library's own functions (NumPy ufuncs and
    their torch namesakes take the same ``(a, b, out=)`` arguments)."""

    def __init__(self, xp: Any, lib: Any) -> None:
        super().__init__(xp)
        self.lib = lib  # the numpy or torch module

    def subtract(self, a: Any, b: Any, out: Any) -> Any:
        return self.lib.subtract(a, b, out=out)

    def multiply(self, a: Any, b: Any, out: Any) -> Any:
        return self.lib.multiply(a, b, out=out)

    def exp(self, a: Any, out: Any) -> Any:
        if a.dtype == self.lib.float32 and math.prod(a.shape) >= _EXP2_FROM and _cpu(a):
            # exp(a) = 2^(a·log2 e): on CPU both libraries' float32 exp2 is 1.5× (NumPy) and
            # 2.2× (torch) faster than their exp, which is compute-bound, so the extra multiply
            # pays. Rounding log2 e and the product to float32 costs up to |a| ulp: ≤ 4.5 ulp
            # where a > −10, i.e. wherever exp(a) is not negligible beside the row's max (1).
            self.lib.multiply(a, _LOG2_E, out=out)
            return self.lib.exp2(out, out=out)
        return self.lib.exp(a, out=out)

    def for_sums(self, z: Any, m: Any, u: Any) -> Any:
        return u  # already in the block buffer (and z may be that very buffer)


class _NumPyInPlace(_InPlace):
    """NumPy ufuncs with ``out=``; blocks sized to stay in a core's L2 cache.

    NumPy runs one thread per call, so the blocks are shared among a few threads (ufuncs and
    BLAS release the GIL). Row sums use ``einsum``, about 2.5 times faster than NumPy's pairwise
    ``sum`` on long rows, with the same float32 accuracy in practice (partial sums in SIMD lanes).
    """

    block_elements = 1 << 19
    threads = min(os.cpu_count() or 1, 8)

    def row_sum(self, a: Any) -> Any:
        return self.lib.einsum("...k->...", a)

    def astype(self, a: Any, dtype: Any) -> Any:
        if dtype == np.float16 and a.dtype == np.float32:
            return _float16(a)
        return super().astype(a, dtype)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        rows = self.lib.indices(label.shape[:-1], sparse=True)  # any layout, any number of axes
        g[(*rows, label[..., 0])] += values  # one element per row: no duplicate indices
        return g


class _TorchInPlace(_InPlace):
    """torch ops with ``out=``; larger blocks amortise the per-op dispatch cost."""

    block_elements = 1 << 20

    def at_label(self, a: Any, label: Any) -> Any:
        # labels are in range: no negative-index remapping (which the namespace's
        # take_along_axis adds), and gather is the cheapest call for it
        return self.lib.gather(a, -1, label).squeeze(-1)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        if isinstance(values, (int, float)) and not self.lib.are_deterministic_algorithms_enabled():
            # one number needs no tensor (~10 µs of a 256×10 step); deterministic mode refuses
            # this call's CUDA kernel (atomics), so it takes scatter_add_ below
            return g.scatter_(-1, label, values, reduce="add")
        values = self.lib.as_tensor(values, dtype=g.dtype, device=g.device)
        if values.dim() > 0:
            values = values.unsqueeze(-1)
        return g.scatter_add_(-1, label, values.expand(label.shape))


def _cpu(a: Any) -> bool:
    return str(device(a)) == "cpu"  # NumPy's device is "cpu"; torch's a torch.device


def _float16(x: Any) -> Any:
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


def inplace_ops(xp: Any, x: Any) -> Functional | None:
    """In-place primitives for eager ``x`` whose buffers can be written, else ``None``."""
    if array_api_compat.is_numpy_array(x):
        return _NumPyInPlace(xp, np)
    if array_api_compat.is_torch_array(x):
        import torch

        # out= cannot be recorded by autograd; inside a custom Function's forward (grad mode
        # off) a tensor that requires grad is only read, which is fine
        if not (x.requires_grad and torch.is_grad_enabled()):
            return _TorchInPlace(xp, torch)
    return None
