"""JAX: immutable arrays, traced under jit, grad and vmap; everything runs out of place."""

from __future__ import annotations

import functools
import sys
from typing import Any

from ._base import Backend

__all__ = ["JaxBackend"]


class JaxBackend(Backend):
    name = "jax"

    def owns(self, x: Any) -> bool:
        jax = sys.modules.get("jax")
        return jax is not None and isinstance(x, (jax.Array, jax.core.Tracer))

    def namespace(self, x: Any) -> Any:
        import jax.numpy

        return jax.numpy

    def device(self, x: Any) -> Any:
        return None  # new arrays follow the computation's placement (and tracers have none)

    def is_traced(self, x: Any) -> bool:
        import jax

        return isinstance(x, jax.core.Tracer)

    def on_host(self, x: Any) -> bool:
        return not self.is_traced(x) and all(d.platform == "cpu" for d in x.devices())

    def extremes(self, xp: Any, x: Any) -> tuple[Any, Any]:
        """``(min(x), max(x))`` from one compiled reduction and one device-to-host read (as
        Python numbers); staged 0-d tracers when a trace in progress stages the reduction."""
        both = _min_max(x)
        if self.is_traced(both):
            return both[0], both[1]
        low, high = both.tolist()
        return low, high

    def uniform(self, xp: Any, shape: tuple[int, ...], rng: Any, like: Any) -> Any:
        import jax

        if rng is None:
            raise ValueError(
                "JAX has no global random state: pass rng=jax.random.key(...) or draws=..."
            )
        return jax.random.uniform(rng, shape)


@functools.cache
def _compiled_min_max() -> Any:
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda x: jnp.stack((jnp.min(x), jnp.max(x))))


def _min_max(x: Any) -> Any:
    return _compiled_min_max()(x)
