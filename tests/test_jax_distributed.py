"""smoothce.jax with ``axis_name`` (vocab parallelism), in one process.

``jax.vmap(..., axis_name="v")`` binds the axis name like ``jax.shard_map`` does (``psum``,
``pmax`` and ``axis_index`` work over the mapped axis), so the class slices can be mapped
over on one device: values, gradients, forward mode and Hessians against the unsharded loss,
and the errors. The multi-device run (4 host CPU devices, ``jax.shard_map``) is in
tests/test_distributed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

import smoothce.jax as sj  # noqa: E402

SHARDS, N, K = 4, 5, 12


def _split(a, axis=-1):
    """(..., K, ...) -> (SHARDS, ..., K/SHARDS, ...): contiguous class slices, mapped first."""
    return jnp.stack(jnp.split(a, SHARDS, axis=axis))


def _join(a, axis=-1):
    return jnp.concatenate(list(a), axis=axis)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(rng.normal(size=(N, K)) * 3)
    y = jnp.asarray(rng.integers(0, K, size=N))
    q = jnp.asarray(rng.dirichlet(np.ones(K), size=N))
    return z, y, q


CASES = {
    "integer": (
        lambda a, b, **k: sj.softmax_cross_entropy_with_integer_labels(
            a, b, label_smoothing=0.3, z_loss=1e-2, softcap=4.0, **k
        ),
        False,
    ),
    "dense": (lambda a, b, **k: sj.softmax_cross_entropy(a, b, label_smoothing=0.2, **k), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mapped_slices_match_the_unsharded_loss(case):
    fn, dense = CASES[case]
    z, y, q = _inputs()
    labels = q if dense else y
    mapped = jax.vmap(
        lambda a, b: fn(a, b, axis_name="v"), in_axes=(0, 0 if dense else None), axis_name="v"
    )
    lab = _split(labels) if dense else labels
    want = jax.jit(fn)(z, labels)
    got = jax.jit(mapped)(_split(z), lab)
    for row in got:  # every slice returns the global loss
        np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-12)

    # reverse mode: the cotangent of shard 0's loss reaches every slice (psum's transpose)
    argnums = (0, 1) if dense else 0
    grads = jax.jit(jax.grad(lambda a, b: mapped(a, b)[0].sum(), argnums=argnums))(_split(z), lab)
    want_grads = jax.jit(jax.grad(lambda a, b: fn(a, b).sum(), argnums=argnums))(z, labels)
    if not dense:
        grads, want_grads = (grads,), (want_grads,)
    for g, w in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(_join(g), w, rtol=1e-12, atol=1e-12)

    # forward mode: each slice's tangent is summed over the slices
    dz = jnp.asarray(np.random.default_rng(1).normal(size=z.shape))
    _, tangent = jax.jit(lambda a, d: jax.jvp(lambda x: mapped(x, lab), (a,), (d,)))(
        _split(z), _split(dz)
    )
    _, want_tangent = jax.jit(lambda a, d: jax.jvp(lambda x: fn(x, labels), (a,), (d,)))(z, dz)
    for row in tangent:
        np.testing.assert_allclose(row, want_tangent, rtol=1e-12, atol=1e-12)

    # second derivatives (the max is a shift without derivative; psum is linear)
    hess = jax.jit(jax.hessian(lambda a: mapped(a, lab)[0][1]))(_split(z))  # (S, N, k, S, N, k)
    want_hess = jax.jit(jax.hessian(lambda a: fn(a, labels)[1]))(z)  # (N, K, N, K)
    hess = jnp.transpose(hess, (1, 0, 2, 4, 3, 5)).reshape(want_hess.shape)
    np.testing.assert_allclose(hess, want_hess, rtol=1e-10, atol=1e-12)


def test_class_axis_not_last_and_a_differentiable_eps():
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.normal(size=(3, K, 2)))
    y = jnp.asarray(rng.integers(0, K, size=(3, 2)))
    eps = jnp.asarray(0.25)

    def loss(a, e, **kw):
        return sj.softmax_cross_entropy_with_integer_labels(a, y, 1, label_smoothing=e, **kw)

    mapped = jax.vmap(lambda a, e: loss(a, e, axis_name="v"), (0, None), axis_name="v")
    want = jax.jit(loss)(z, eps)
    np.testing.assert_allclose(jax.jit(mapped)(_split(z, 1), eps)[2], want, rtol=1e-12)
    d_eps = jax.jit(jax.grad(lambda e: mapped(_split(z, 1), e)[0].sum()))(eps)
    want = jax.jit(jax.grad(lambda e: loss(z, e).sum()))(eps)
    np.testing.assert_allclose(d_eps, want, rtol=1e-12)


def test_errors_are_clear():
    z, y, _ = _inputs()
    integer = sj.softmax_cross_entropy_with_integer_labels

    def in_map(fn):
        return jax.vmap(fn, axis_name="v")(_split(z))

    with pytest.raises(ValueError, match="no where mask"):
        in_map(lambda a: integer(a, y, where=jnp.ones(N, bool), axis_name="v"))
    with pytest.raises(ValueError, match="no where mask"):
        in_map(lambda a: sj.softmax_cross_entropy(a, a, -1, a > 0, axis_name="v"))
    with pytest.raises(ValueError, match="one class axis"):
        jax.vmap(
            lambda a: sj.softmax_cross_entropy(a, a, axis=(0, 1), axis_name="v"), axis_name="v"
        )(_split(z))
    with pytest.raises(ValueError, match="not bound here"):  # outside any map
        integer(z, y, axis_name="v")
    with pytest.raises(ValueError, match="not bound here"):  # a name the map does not bind
        in_map(lambda a: integer(a, y, axis_name="w"))
    with pytest.raises(TypeError, match="axis_name must be"):
        in_map(lambda a: integer(a, y, axis_name={"v": 1}))
    with pytest.raises(ValueError, match="not bound here"):
        sj.linear_softmax_cross_entropy_with_integer_labels(
            jnp.ones((N, 3)), jnp.ones((K, 3)), y, axis_name="v"
        )


def test_fused_linear_mapped_over_weight_slices():
    """The forward value (gradients of the fused form need shard_map: its backward pass runs
    its collectives, which a vmap outside grad no longer binds; tests/test_distributed.py)."""
    rng = np.random.default_rng(3)
    h, w, b = (jnp.asarray(rng.normal(size=s)) for s in ((N, 3), (K, 3), (K,)))
    y = jnp.asarray(rng.integers(0, K, size=N))

    def fused(a, c, d, **kw):
        return sj.linear_softmax_cross_entropy_with_integer_labels(
            a, c, y, linear_bias=d, label_smoothing=0.2, softcap=3.0, chunk_size=2, **kw
        )

    mapped = jax.vmap(lambda c, d: fused(h, c, d, axis_name="v"), axis_name="v")
    got = jax.jit(mapped)(_split(w, 0), _split(b, 0))
    want = jax.jit(fused)(h, w, b)
    for row in got:
        np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-12)
