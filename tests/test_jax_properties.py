"""smoothce.jax equals optax's label smoothing on random problems (hypothesis).

For any shape, class axis (or tuple of class axes), ε in [0, 1], dtype, label form and mask,
``softmax_cross_entropy(z, y, axis, where, label_smoothing=ε)`` must equal
``optax.softmax_cross_entropy(z, optax.smooth_labels(y, ε), axis, where)`` and the integer
function must equal the same with one-hot labels, in value and in gradient (logits and ε).
x64 is enabled by tests/conftest.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from smoothce.jax import (  # noqa: E402
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

DTYPES = {"float64": jnp.float64, "float32": jnp.float32, "bfloat16": jnp.bfloat16}
# (rtol = atol) for values and gradients; bfloat16 is compared with optax in float32 on the
# same rounded logits, so only the result's rounding (and float32 accumulation) differs
TOL = {"float64": 1e-9, "float32": 5e-5, "bfloat16": 2e-2}


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    if ndim >= 2 and draw(st.booleans()):
        axis = tuple(draw(st.permutations(range(ndim)))[:2])  # two class axes, any order
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axis)  # negative too
    else:
        axis = draw(st.integers(-ndim, ndim - 1))
    axes = axis if isinstance(axis, tuple) else (axis,)
    shape = list(shape)
    for a in axes:
        shape[a] = max(shape[a], 2)  # at least two classes on each class axis
    shape = tuple(shape)
    batch_ndim = ndim - len(axes)
    mask = draw(st.sampled_from(["none", "class"] + (["example"] if batch_ndim else [])))
    return {
        "shape": shape,
        "axis": axis,
        "integer": draw(st.booleans()),
        "mask": mask,
        "eps": draw(st.floats(0.0, 1.0)),
        "dtype": draw(st.sampled_from(list(DTYPES))),
        "scale": draw(st.sampled_from([0.3, 3.0, 30.0])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _arrays(p):
    """Logits, labels, one-hot or soft dense labels, and the mask, as NumPy arrays."""
    rng = np.random.default_rng(p["seed"])
    shape, axis = p["shape"], p["axis"]
    ndim = len(shape)
    axes = tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))
    batch = tuple(d for i, d in enumerate(shape) if i not in axes)
    sizes = tuple(shape[a] for a in axes)
    k = math.prod(sizes)

    def layout(x):  # batch + (K,) -> the logits' layout (flat classes in the caller's order)
        x = x.reshape(batch + sizes)
        return np.moveaxis(x, tuple(range(len(batch), ndim)), axes)

    logits = rng.normal(size=shape) * p["scale"]
    index = rng.integers(0, k, size=batch)
    onehot = np.eye(k)[index]
    if p["integer"]:
        labels, dense = index, layout(onehot)
    else:
        soft = rng.random((*batch, k)) ** 3  # some labels near 0
        labels = dense = layout(soft / soft.sum(-1, keepdims=True))
    where = None
    if p["mask"] == "class":
        keep = (rng.random((*batch, k)) > 0.3) | (onehot > 0)
        if batch and rng.random() < 0.5:
            keep[(0,) * len(batch)] = False  # a fully masked example
        where = layout(keep)
    elif p["mask"] == "example":
        where = rng.random(batch) > 0.3
    return logits, labels, dense, where


def _optax(z, q, eps, axis, where):
    """optax's label smoothing, with log p of masked classes zeroed before the product (optax
    multiplies them by the labels first, which makes its ε-derivative NaN under a mask)."""
    if where is None:
        return optax.softmax_cross_entropy(z, optax.smooth_labels(q, eps, axis=axis), axis)
    if where.ndim != z.ndim:
        where = jnp.expand_dims(where, axis)
    where = jnp.broadcast_to(where, z.shape)
    k_mask = where | ~jnp.any(where, axis=axis, keepdims=True)  # a fully masked row: any K
    q = optax.smooth_labels(q, eps, axis=axis, where=k_mask)
    log_p = jnp.where(where, jax.nn.log_softmax(z, axis=axis, where=where), 0.0)
    return -jnp.sum(q * log_p, axis=axis)


@functools.partial(
    jax.jit,
    static_argnames=("axis", "integer"),
    compiler_options={"xla_backend_optimization_level": 0},  # compiles twice as fast
)
def _both(z, y, z_ref, q_ref, where, eps, *, axis, integer):
    fn = softmax_cross_entropy_with_integer_labels if integer else softmax_cross_entropy

    def ours(z, e):
        return fn(z, y, axis, where, label_smoothing=e).astype(jnp.float32).sum()

    def theirs(z, e):
        return _optax(z, q_ref, e, axis, where).sum()

    value = fn(z, y, axis, where, label_smoothing=eps)
    return (
        (value, _optax(z_ref, q_ref, eps.astype(z_ref.dtype), axis, where)),
        (jax.grad(ours, (0, 1))(z, eps), jax.grad(theirs, (0, 1))(z_ref, eps.astype(z_ref.dtype))),
    )


@settings(max_examples=25, deadline=None)
@given(p=problems())
def test_matches_optax(p):
    logits, labels, dense, where = _arrays(p)
    dtype = DTYPES[p["dtype"]]
    z = jnp.asarray(logits, dtype)
    wide = jnp.float32 if dtype == jnp.bfloat16 else dtype  # optax on the rounded logits
    y = jnp.asarray(labels) if p["integer"] else jnp.asarray(labels, dtype)
    q = jnp.asarray(dense, dtype).astype(wide)
    w = None if where is None else jnp.asarray(where)
    eps = jnp.asarray(p["eps"], dtype)
    (value, want), ((g_z, g_e), (want_z, want_e)) = _both(
        z, y, z.astype(wide), q, w, eps, axis=p["axis"], integer=p["integer"]
    )
    assert value.dtype == dtype and g_z.dtype == dtype and g_e.dtype == dtype
    tol = TOL[p["dtype"]]
    scale = max(1.0, float(np.max(np.abs(np.asarray(want, np.float64)), initial=0.0)))
    for got, expected, atol in (
        (value, want, tol * scale),
        (g_z, want_z, tol),
        (g_e, want_e, tol * scale * max(1, np.size(want))),  # a sum over the examples
    ):
        got = np.asarray(jnp.asarray(got, jnp.float64))
        expected = np.asarray(jnp.asarray(expected, jnp.float64))
        assert got.shape == expected.shape
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=tol, atol=atol)
