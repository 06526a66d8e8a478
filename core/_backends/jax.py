"""JAX: immutable arrays, traced under jit, grad and vmap; everything runs out of place."""

from __future__ import annotations

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

    def uniform(self, xp: Any, shape: tuple[int, ...], rng: Any, like: Any) -> Any:
        import jax

        if rng is None:
            raise ValueError(
                "JAX has no global random state: pass rng=jax.random.key(...) or draws=..."
            )
        return jax.random.uniform(rng, shape)
