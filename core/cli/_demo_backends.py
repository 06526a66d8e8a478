"""Gradients of the demo's MLP loss, one function per backend.

Every backend computes the same thing: the mean label-smoothed cross-entropy of
z = relu(x·W1 + b1)·W2 + b2 and its gradient with respect to (W1, b1, W2, b2). NumPy gets the
logits' gradient from ``smoothce.loss_and_grad`` and backpropagates through the MLP by hand;
the frameworks call their smoothce adapter and use their own autodiff. Parameters, data and
gradients cross the boundary as float32 NumPy arrays, so the optimiser, initialisation and batch
order are shared and the runs differ only in who differentiates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import smoothce

Params = dict[str, np.ndarray]
# (params, inputs, targets, eps) -> (loss, gradients); targets are int64 labels (N,) or
# float32 probabilities (N, K)
GradFn = Callable[[Params, np.ndarray, np.ndarray, float], tuple[float, Params]]

BACKENDS = ("numpy", "torch", "jax", "tensorflow")
_INSTALL = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}


def forward(params: Params, x: np.ndarray) -> np.ndarray:
    """The MLP's logits in NumPy (used for evaluation by every backend)."""
    h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    return h @ params["w2"] + params["b2"]


def make_grad_fn(backend: str) -> GradFn:
    """The gradient function for ``backend``; frameworks are imported only here."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "numpy":
        return _numpy_grad
    try:
        maker = {"torch": _torch_grad_fn, "jax": _jax_grad_fn, "tensorflow": _tf_grad_fn}[backend]
        return maker()
    except ImportError as err:
        raise RuntimeError(
            f"--backend {backend} needs {backend} and smoothce.{backend}, which could not be "
            f"imported ({err}). Install it (pip install 'smoothce[{_INSTALL[backend]}]') or "
            f"use --backend numpy."
        ) from err


@contextmanager
def few_threads(backend: str) -> Iterator[None]:
    """Run torch single-threaded while training (restored afterwards).

    The demo's matrices are tiny (64×128); torch's thread pool costs more than it gains there,
    about 10× per step on a busy 2-core machine.
    """
    if backend != "torch":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _numpy_grad(params: Params, x: np.ndarray, t: np.ndarray, eps: float) -> tuple[float, Params]:
    a1 = x @ params["w1"] + params["b1"]
    h = np.maximum(a1, 0.0)
    z = h @ params["w2"] + params["b2"]
    value, dz = smoothce.loss_and_grad(z, t, eps)  # dz = ∂(mean loss)/∂z, already divided by N
    da1 = (dz @ params["w2"].T) * (a1 > 0)
    grads = {
        "w2": h.T @ dz,
        "b2": dz.sum(axis=0),
        "w1": x.T @ da1,
        "b1": da1.sum(axis=0),
    }
    return float(value), grads


def _torch_grad_fn() -> GradFn:
    import torch

    from smoothce.torch import cross_entropy

    def grad_fn(params: Params, x: np.ndarray, t: np.ndarray, eps: float) -> tuple[float, Params]:
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        z = torch.relu(torch.from_numpy(x) @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        value = cross_entropy(z, torch.from_numpy(t), label_smoothing=eps)
        value.backward()
        return float(value.detach()), {k: v.grad.numpy() for k, v in p.items()}

    return grad_fn


def _jax_grad_fn() -> GradFn:
    import jax
    import jax.numpy as jnp

    import smoothce.jax as sj

    def mean_loss(p: Any, x: Any, t: Any, eps: float) -> Any:
        z = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        if jnp.issubdtype(t.dtype, jnp.integer):
            per_example = sj.softmax_cross_entropy_with_integer_labels(z, t, label_smoothing=eps)
        else:
            per_example = sj.softmax_cross_entropy(z, t, label_smoothing=eps)
        return jnp.mean(per_example)

    # ε is static: one compiled function per run, and no gradient with respect to it
    value_and_grad = jax.jit(jax.value_and_grad(mean_loss), static_argnums=3)

    def grad_fn(params: Params, x: np.ndarray, t: np.ndarray, eps: float) -> tuple[float, Params]:
        t = t.astype(np.int32) if t.dtype.kind in "iu" else t
        value, grads = value_and_grad(params, x, t, float(eps))
        return float(value), {k: np.asarray(v) for k, v in grads.items()}

    return grad_fn


def _tf_grad_fn() -> GradFn:
    import tensorflow as tf

    import smoothce.tensorflow as st

    # One graph per (ε, label kind); arguments go to the adapter positionally, as graph mode wants.
    @tf.function(reduce_retracing=True)
    def value_and_grads(w1: Any, b1: Any, w2: Any, b2: Any, x: Any, t: Any, eps: float) -> Any:
        with tf.GradientTape() as tape:
            tape.watch([w1, b1, w2, b2])
            z = tf.nn.relu(x @ w1 + b1) @ w2 + b2
            if t.dtype.is_integer:
                per_example = st.sparse_softmax_cross_entropy_with_logits(t, z, label_smoothing=eps)
            else:
                per_example = st.softmax_cross_entropy_with_logits(t, z, label_smoothing=eps)
            value = tf.reduce_mean(per_example)
        return value, tape.gradient(value, [w1, b1, w2, b2])

    def grad_fn(params: Params, x: np.ndarray, t: np.ndarray, eps: float) -> tuple[float, Params]:
        names = ("w1", "b1", "w2", "b2")
        value, grads = value_and_grads(
            *(tf.constant(params[k]) for k in names), tf.constant(x), tf.constant(t), float(eps)
        )
        return float(value), {k: g.numpy() for k, g in zip(names, grads, strict=True)}

    return grad_fn
