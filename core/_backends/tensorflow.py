"""TensorFlow: eager tensors, graph tensors (tf.function, Keras, TF1 sessions) and variables.

array-api-compat does not cover TensorFlow; ``_tf_namespace`` is the small array-API namespace
the core needs, over raw TF ops. Arrays are recognised by their module's name, so that nothing
here imports TensorFlow before the user did.
"""

from __future__ import annotations

import sys
from typing import Any

from ._base import Backend

__all__ = ["TensorFlowBackend"]


class TensorFlowBackend(Backend):
    name = "tensorflow"

    def owns(self, x: Any) -> bool:
        return "tensorflow" in sys.modules and type(x).__module__.startswith("tensorflow")

    def namespace(self, x: Any) -> Any:
        from . import _tf_namespace

        return _tf_namespace

    def coerce(self, x: Any) -> Any:
        import tensorflow as tf

        return tf.convert_to_tensor(x) if isinstance(x, tf.Variable) else x  # reads its value

    def device(self, x: Any) -> Any:
        return None  # TF places new tensors by its own device scope

    def is_traced(self, x: Any) -> bool:
        import tensorflow as tf

        if isinstance(x, tf.Variable):
            return not tf.executing_eagerly()
        return not hasattr(x, "numpy")  # graph tensors (tf.function, TF1) have no values

    def on_host(self, x: Any) -> bool:
        """Eager tensors in host memory (device ``.../device:CPU:0``): reading them costs no
        device synchronisation. GPU and TPU tensors, and every graph tensor, are not read."""
        if self.is_traced(x):
            return False
        device = x.device or ""
        return not device or ":CPU:" in device.upper()

    def uniform(self, xp: Any, shape: tuple[int, ...], rng: Any, like: Any) -> Any:
        import tensorflow as tf

        if isinstance(rng, tf.random.Generator):
            return rng.uniform(shape, dtype=tf.float32)
        if isinstance(rng, int) and not isinstance(rng, bool):
            return tf.random.stateless_uniform(shape, seed=[rng, 0], dtype=tf.float32)
        if rng is None:
            return tf.random.uniform(shape, dtype=tf.float32)
        raise TypeError(
            f"for TensorFlow, rng must be a tf.random.Generator, an int or None, "
            f"got {type(rng).__name__}"
        )
