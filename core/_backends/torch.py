"""PyTorch: eager tensors on any device, traced under torch.compile and torch.func transforms.

Nothing here imports torch at module level: a tensor can only exist once the user imported it.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

from ._base import Backend
from ._inplace import InPlace

__all__ = ["TorchBackend"]

_NANS: dict[Any, Any] = {}


class TorchInPlace(InPlace):
    """torch ops with ``out=``; larger blocks amortise the per-op dispatch cost."""

    block_elements = 1 << 20

    def at_label(self, a: Any, label: Any) -> Any:
        # labels are in range: no negative-index remapping (which the namespace's
        # take_along_axis adds), and gather is the cheapest call for it
        return self.lib.gather(a, -1, label)

    def add_at_label(self, g: Any, label: Any, values: Any) -> Any:
        if isinstance(values, (int, float)) and not self.lib.are_deterministic_algorithms_enabled():
            # one number needs no tensor (~10 µs of a 256×10 step); deterministic mode refuses
            # this call's CUDA kernel (atomics), so it takes scatter_add_ below
            return g.scatter_(-1, label, values, reduce="add")
        values = self.lib.as_tensor(values, dtype=g.dtype, device=g.device)
        if values.shape != label.shape:  # a column per row already has the label's shape
            values = values.expand(label.shape)
        return g.scatter_add_(-1, label, values)

    def on_cpu(self, a: Any) -> bool:
        return a.device.type == "cpu"


class TorchDeviceInPlace(TorchInPlace):
    """The same primitives on accelerators (CUDA, ROCm, MPS, XPU, meta): one block, the whole
    array, since every op there costs a kernel launch however little it does."""

    block_elements = None


class TorchBackend(Backend):
    name = "torch"

    def __init__(self) -> None:
        self._xp: Any = None
        self._ops: dict[bool, InPlace] = {}

    def owns(self, x: Any) -> bool:
        # a plain isinstance check: array-api-compat's lru_cache'd type helpers make
        # torch.compile (dynamo) warn once per helper when it traces through them
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)

    def namespace(self, x: Any) -> Any:
        xp = self._xp
        if xp is None:
            import torch

            if torch.compiler.is_compiling():  # dynamo cannot build a module; next eager call
                import array_api_compat.torch

                return array_api_compat.torch
            xp = self._xp = _namespace()
        return xp

    def device(self, x: Any) -> Any:
        return x.device

    def shares_memory(self, a: Any, b: Any) -> bool:
        if a.device != b.device or a.numel() == 0 or b.numel() == 0:
            return False
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()

    def is_traced(self, x: Any) -> bool:
        import torch

        return bool(
            torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x)
        )

    def on_host(self, x: Any) -> bool:
        return x.is_cpu and not self.is_traced(x)

    def index_dtype(self, xp: Any, x: Any) -> Any:
        import torch

        return torch.int64

    def nan(self, xp: Any, dtype: Any, like: Any) -> Any:
        # made once per device and dtype: a scalar tensor is an op on every call, and on an
        # accelerator every op is a kernel launch
        import torch

        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return math.nan
        key = (dtype, like.device)
        nan = _NANS.get(key)
        if nan is None:
            nan = _NANS[key] = torch.tensor(math.nan, dtype=dtype, device=like.device)
        return nan

    def dtype_kind(self, xp: Any, dtype: Any) -> str:
        # attribute reads: fast, and traceable by torch.compile (a dict keyed by dtype is not)
        if dtype.is_floating_point:
            return "real floating"
        if dtype.is_complex:
            return "other"
        return "bool" if dtype.itemsize == 1 and str(dtype) == "torch.bool" else "integral"

    def float_bits(self, xp: Any, dtype: Any) -> int:
        return dtype.itemsize * 8

    def extremes(self, xp: Any, x: Any) -> tuple[Any, Any]:
        import torch

        return torch.aminmax(x)  # reads the input once for both

    def inplace_ops(self, xp: Any, x: Any, operands: tuple[Any, ...] = ()) -> InPlace | None:
        import torch

        # out= cannot be recorded by autograd; inside a custom Function's forward (grad mode
        # off) a tensor that requires grad is only read, which is fine
        if torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in (x, *operands)
        ):
            return None
        # nor by vmap: an operand batched by torch.func (ε or the labels alone) makes the
        # results batched, which out= buffers of the logits' shape cannot hold
        if torch._C._are_functorch_transforms_active():
            wrapped = torch._C._functorch.is_functorch_wrapped_tensor
            if any(isinstance(t, torch.Tensor) and wrapped(t) for t in operands):
                return None
        cpu = x.device.type == "cpu"
        ops = self._ops.get(cpu)
        if ops is None:
            kind = TorchInPlace if cpu else TorchDeviceInPlace
            ops = self._ops[cpu] = kind(self.namespace(x), torch)
        return ops

    def overwrite_refusal(self, x: Any) -> str | None:
        import torch

        base = x if x._base is None else x._base
        if base.requires_grad and base.is_leaf:
            # a parameter, or a view of one: writing through it would corrupt the parameter
            return "it is (a view of) a leaf tensor that requires grad, such as a parameter"
        if x.requires_grad and torch.is_grad_enabled():
            return "it requires grad (autograd cannot record the write)"
        if not x.is_contiguous():
            return "it is not contiguous with the class axis last"
        return None

    def uniform(self, xp: Any, shape: tuple[int, ...], rng: Any, like: Any) -> Any:
        import torch

        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(
                f"for torch, rng must be a torch.Generator or None, got {type(rng).__name__}"
            )
        return torch.rand(shape, generator=rng, device=like.device)


def _namespace() -> Any:
    """array-api-compat's torch namespace with a ``take_along_axis`` and a ``clip`` that
    compile well.

    array-api-compat's goes through ``torch.take_along_dim``, whose broadcasting makes
    torch.compile specialise on the batch size (every new batch size recompiled, even with
    ``dynamic=True``), and remaps negative indices with one more op. The core passes indices
    in range only, so ``torch.gather`` on operands expanded to a common shape does the same.
    """
    import array_api_compat.torch as compat
    import torch

    def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
        if x.ndim != indices.ndim:
            return compat.take_along_axis(x, indices, axis=axis)
        axis %= x.ndim
        pairs = list(enumerate(zip(x.shape, indices.shape, strict=True)))
        x_shape = [b if d != axis and a == 1 else a for d, (a, b) in pairs]
        i_shape = [a if d != axis and b == 1 else b for d, (a, b) in pairs]
        if x_shape != list(x.shape):
            x = x.expand(x_shape)
        if i_shape != list(indices.shape):
            indices = indices.expand(i_shape)
        return torch.gather(x, axis, indices)

    def clip(x: Any, /, min: Any = None, max: Any = None, **kwargs: Any) -> Any:
        # array-api-compat asks math.isnan of the bounds, which torch.compile cannot trace
        # for a symbolic integer (the class count with a dynamic class dimension); integer
        # arrays with integer bounds need none of its special cases
        integers = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
        bounds = (min, max)
        if (
            not kwargs
            and bounds != (None, None)
            and not any(isinstance(b, torch.Tensor) for b in bounds)
            and (x.is_floating_point() or not any(isinstance(b, float) for b in bounds))
            and (integers or x.is_floating_point())
        ):
            return torch.clamp(x, min, max)  # one op (the compat version takes several)
        return compat.clip(x, min, max, **kwargs)

    namespace = types.ModuleType("smoothce._backends.torch.namespace", compat.__doc__)
    namespace.__dict__.update(
        {k: v for k, v in vars(compat).items() if not k.startswith("__") or k.startswith("__array")}
    )
    namespace.take_along_axis = take_along_axis  # type: ignore[attr-defined]
    namespace.clip = clip  # type: ignore[attr-defined]
    return namespace
