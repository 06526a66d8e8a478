"""The backend interface, its array-API defaults, and the out-of-place kernel primitives.

A :class:`Backend` is everything smoothce knows about one array library: how to recognise its
arrays, its namespace, where an array lives, whether it is traced, whether its buffers may be
written, and how to draw random numbers in it. The defaults here are what the array API
standard allows for any library; ``numpy.py``, ``torch.py``, ``jax.py`` and ``tensorflow.py``
override what their library does better or differently.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

__all__ = ["Backend", "Functional"]


class Functional:
    """The kernel's N×K primitives, out of place, over any array-API namespace.

    The kernel (``smoothce._kernel``) expresses its passes over the logits through these few
    calls. This generic version returns new arrays (what jit compilers fuse and immutable
    arrays need) and ignores ``out``; the in-place versions in ``_inplace.py`` write into it.
    """

    block_elements: int | None = None  # the whole array is one block
    threads = 1

    def __init__(self, xp: Any, device: Any = None) -> None:
        self.xp = xp
        self.device = device or (lambda x: None)  # where an array lives (new arrays follow it)

    def subtract(self, a: Any, b: Any, out: Any) -> Any:
        return a - b

    def multiply(self, a: Any, b: Any, out: Any) -> Any:
        return a * b

    def exp(self, a: Any, out: Any) -> Any:
        return self.xp.exp(a)

    def row_sum(self, a: Any) -> Any:
        """Σ over the classes, as a column (..., 1)."""
        return self.xp.sum(a, axis=-1, keepdims=True)

    def at_label(self, a: Any, label: Any) -> Any:
        """a's entry at each row's label (label: (..., 1), in range), as a column (..., 1)."""
        return self.xp.take_along_axis(a, label, axis=-1)

    def for_sums(self, z: Any, m: Any, u: Any) -> Any:
        """u = z − m once more, for the row sums, written z + (−m): the same bits, but XLA
        does not merge it with ``u`` and so fuses it into the sum, where a second consumer
        of ``u`` made it keep u as one more N×K buffer (measured 2–3× slower at 8192×1000)."""
        return z + (-m)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        """g with ``values`` (a column (..., 1), or a number) added at each row's label."""
        xp = self.xp
        classes = xp.arange(g.shape[-1], dtype=label.dtype, device=self.device(label))
        return xp.where(xp.equal(classes, label), g + values, g)

    def astype(self, a: Any, dtype: Any) -> Any:
        """``a`` in ``dtype`` (the input's dtype, for a gradient accumulated in float32)."""
        return self.xp.astype(a, dtype, copy=False)

    def softcap(self, z: Any, c: float, out: Any) -> tuple[Any, Any]:
        """``(c·tanh(z/c), tanh(z/c))``: the capped logits and the tanh, which ``cap_slope``
        needs (the in-place version writes the capped logits into ``out``)."""
        capped = self.xp.tanh(z / c)
        return capped * c, capped

    def cap_slope(self, g: Any, capped: Any, out: Any) -> Any:
        """g·(1 − tanh²), the chain rule through the cap (``capped`` may be overwritten)."""
        return g * (1 - capped * capped)


class Backend:
    """One array library, as the array API standard lets smoothce see it.

    Subclasses set ``name`` and override what their library knows better. Every method
    takes arrays of this backend only.
    """

    name = "array API"

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this library (asked once per type, then cached)."""
        try:
            array_api_compat.array_namespace(x)
        except TypeError:
            return False
        return True

    def namespace(self, x: Any) -> Any:
        """The array-API namespace of ``x``."""
        return array_api_compat.array_namespace(x)

    def coerce(self, x: Any) -> Any:
        """``x`` as an array the namespace's functions accept (e.g. a variable's value)."""
        return x

    def shares_memory(self, a: Any, b: Any) -> bool:
        """Whether writing into ``b`` may change ``a`` (False where buffers are immutable)."""
        return False

    def device(self, x: Any) -> Any:
        """Where ``x`` lives, in the form the namespace's creation functions accept."""
        return array_api_compat.device(x)

    def is_traced(self, x: Any) -> bool:
        """True when ``x`` has no concrete values (jit, graph tracing, vmap): nothing may read
        them, so bad values give NaN instead of an error."""
        return False

    def on_host(self, x: Any) -> bool:
        """Whether reading ``x``'s values costs no device synchronisation."""
        return not self.is_traced(x) and "cpu" in str(self.device(x)).lower()

    def extremes(self, xp: Any, x: Any) -> tuple[Any, Any]:
        """``(min(x), max(x))`` as 0-d arrays."""
        return xp.min(x), xp.max(x)

    def inplace_ops(self, xp: Any, x: Any, operands: tuple[Any, ...] = ()) -> Functional | None:
        """Primitives that write into caller-provided buffers, when ``x``'s library can (and
        nothing in ``operands``, the call's other arrays, forbids it)."""
        return None

    def overwrite_refusal(self, x: Any) -> str | None:
        """Why the gradient may not be written into ``x``'s own buffer (None: it may)."""
        return f"{type(x).__module__}.{type(x).__name__} arrays cannot be written in place"

    def nan(self, xp: Any, dtype: Any, like: Any) -> Any:
        """NaN for marking invalid rows in ``where``: a Python float here; a backend may return
        a 0-d array in ``dtype`` on ``like``'s device that it made once."""
        return math.nan

    def index_dtype(self, xp: Any, x: Any) -> Any:
        """The library's default indexing dtype on ``x``'s device."""
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=self.device(x))["indexing"]

    def dtype_kind(self, xp: Any, dtype: Any) -> str:
        """``"integral"``, ``"real floating"``, ``"bool"`` or ``"other"``, cached per dtype
        (``isdtype`` costs microseconds, and every call asks it several times)."""
        key = (id(xp), dtype)
        kind = _KINDS.get(key)
        if kind is None:
            kind = next(
                (k for k in ("integral", "real floating", "bool") if xp.isdtype(dtype, k)), "other"
            )
            _KINDS[key] = kind
        return kind

    def float_bits(self, xp: Any, dtype: Any) -> int:
        """The number of bits of a floating dtype, cached."""
        key = (id(xp), dtype)
        bits = _BITS.get(key)
        if bits is None:
            bits = _BITS[key] = xp.finfo(dtype).bits
        return bits

    def uniform(self, xp: Any, shape: tuple[int, ...], rng: Any, like: Any) -> Any:
        """Uniform [0, 1) draws of ``shape`` on ``like``'s device, from a NumPy generator or
        an int seed (libraries with random state of their own override this)."""
        import numpy as np

        if rng is not None and (
            isinstance(rng, bool) or not isinstance(rng, (int, np.random.Generator))
        ):
            raise TypeError(
                f"rng must be a numpy.random.Generator, an int seed or None, "
                f"got {type(rng).__name__}"
            )
        return xp.asarray(np.random.default_rng(rng).random(shape), device=self.device(like))


_KINDS: dict[Any, str] = {}
_BITS: dict[Any, int] = {}
