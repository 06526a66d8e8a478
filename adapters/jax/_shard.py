"""Vocab parallelism for JAX: the core's two collectives over a named mapped axis.

Inside ``jax.shard_map`` (or any map that binds axis names, such as ``vmap(axis_name=...)``)
with the class axis of the logits split evenly over the devices of ``axis_name``, each device
holds the classes ``[r·k, (r + 1)·k)`` of ``n·k``, r = ``lax.axis_index`` and n =
``lax.axis_size``. The core's kernel combines its row statistics through this reducer: one
``pmax`` of one value per row, then one ``psum`` of a stacked few-values-per-row array; every
device then forms its own slice of the gradient with no further collective.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax import lax

__all__ = ["JaxShard", "shard_for"]


@dataclasses.dataclass(frozen=True)
class JaxShard:
    """The reducer of the class slice this device holds along the mapped axis ``axis_name``
    (a name or a tuple of names). Frozen and hashable: it lives in the static half of the
    core's ``LossSpec`` (a ``custom_jvp`` ``nondiff_argnums`` argument)."""

    axis_name: Any

    def max(self, x: Any) -> Any:
        # the max only shifts the exponentials (every result is invariant to it), so it gets
        # no derivative: lax.pmax has no differentiation rule, and second derivatives
        # differentiate the kernel again
        return lax.pmax(lax.stop_gradient(x), self.axis_name)

    def sum(self, x: Any) -> Any:
        return lax.psum(x, self.axis_name)

    def offset(self, k_local: int) -> Any:
        return lax.axis_index(self.axis_name) * k_local

    def classes(self, k_local: int) -> int:
        return k_local * _axis_size(self.axis_name)

    def varies(self, x: Any) -> bool:
        """Whether ``x`` is typed as varying over the axis: inside ``jax.shard_map`` with
        ``check_vma=True`` (the default), JAX types every value as varying or invariant over
        each mesh axis and gives a replicated value's cotangent whole to every device. Without
        that typing (``check_vma=False``, ``vmap``) such a cotangent is held in parts, one per
        device, that sum to it; a ``custom_vjp`` must know which."""
        names = self.axis_name if isinstance(self.axis_name, tuple) else (self.axis_name,)
        aval = (getattr(jax, "typeof", None) or jax.core.get_aval)(x)
        vma = getattr(aval, "vma", None)  # JAX 0.6-0.9
        if vma is None:  # JAX 0.10: the manual axis type
            vma = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
        return all(name in (vma or ()) for name in names)


def _axis_size(axis_name: Any) -> Any:
    """The number of devices along ``axis_name``, a Python int while tracing (older JAX has
    no ``lax.axis_size``; its ``psum`` of a Python constant is the same static int)."""
    size = getattr(lax, "axis_size", None)
    return size(axis_name) if size is not None else lax.psum(1, axis_name)


def shard_for(axis_name: Any) -> JaxShard:
    """The reducer for ``axis_name``; a ``ValueError`` when no enclosing map binds it."""
    if isinstance(axis_name, list):
        axis_name = tuple(axis_name)
    try:
        hash(axis_name)
    except TypeError:
        raise TypeError(
            f"axis_name must be a mapped axis name (hashable) or a tuple of them, got "
            f"{type(axis_name).__name__}"
        ) from None
    try:
        size = _axis_size(axis_name)
    except NameError as error:
        raise ValueError(
            f"axis_name={axis_name!r} is not bound here: call the loss inside jax.shard_map "
            f"(or another map) over a mesh with that axis, the logits' class axis split over "
            f"it ({error})"
        ) from None
    if not isinstance(size, int):  # pragma: no cover - every JAX that has lax.axis_size
        raise TypeError(f"the size of axis {axis_name!r} is not static: {size!r}")
    return JaxShard(axis_name)
