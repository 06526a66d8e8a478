"""smoothce.jax's fused, chunked linear + cross-entropy: values and gradients under jit/vmap."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from smoothce.jax import linear_softmax_cross_entropy_with_integer_labels as fused  # noqa: E402
from tests.reference import reference  # noqa: E402

N, H, V = 13, 6, 9


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(N, H)),
        rng.normal(size=(V, H)),
        rng.normal(size=V),
        rng.integers(0, V, size=N),
        rng.uniform(0.5, 1.5, size=N),
    )


@pytest.mark.parametrize(("z_loss", "softcap"), [(0.0, None), (1e-2, 3.0)])
@pytest.mark.parametrize("chunk", [4, None])
def test_values_and_gradients_match_the_reference(z_loss, softcap, chunk):
    h, w, b, y, up = _inputs()

    def total(a, c, d):
        per_example = fused(
            a, c, jnp.asarray(y), linear_bias=d, z_loss=z_loss, softcap=softcap, chunk_size=chunk
        )
        return (per_example * up).sum(), per_example

    (_, value), grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True))(
        jnp.asarray(h), jnp.asarray(w), jnp.asarray(b)
    )
    want, g = reference(h @ w.T + b, y, 0.1, reduction="none", z_loss=z_loss, softcap=softcap)
    g = g * up[:, None]  # the per-example upstream, applied before the sums over tokens
    np.testing.assert_allclose(np.asarray(value), want, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(grads[0]), g @ w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grads[1]), g.T @ h, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grads[2]), g.sum(0), rtol=1e-9, atol=1e-12)


def test_vmap_over_a_batch_of_hidden_states():
    h, w, _, y, _ = _inputs()
    stacked = jnp.stack([jnp.asarray(h), 2 * jnp.asarray(h)])
    out = jax.vmap(lambda a: fused(a, jnp.asarray(w), jnp.asarray(y), chunk_size=5))(stacked)
    for i, scale in enumerate((1, 2)):
        want, _ = reference(scale * h @ w.T, y, 0.1, reduction="none")
        np.testing.assert_allclose(np.asarray(out[i]), want, rtol=1e-10)


def test_bfloat16_weight_gradient_in_float32_then_rounded():
    h, w, _, y, _ = _inputs()
    low_h, low_w = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    grads = jax.grad(lambda a, c: fused(a, c, jnp.asarray(y), chunk_size=1).sum(), (0, 1))(
        low_h, low_w
    )
    assert grads[1].dtype == jnp.bfloat16
    hh, ww = np.asarray(low_h, np.float64), np.asarray(low_w, np.float64)
    _, g = reference(hh @ ww.T, y, 0.1, reduction="sum")
    exact = g.T @ hh
    err = np.abs(np.asarray(grads[1], np.float64) - exact).max() / np.abs(exact).max()
    assert err <= 2.0**-7


def test_label_smoothing_must_be_a_number():
    h, w, _, y, _ = _inputs()
    with pytest.raises(TypeError, match="label_smoothing"):
        fused(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), label_smoothing=jnp.asarray(0.1))


@pytest.mark.parametrize("integer", [True, False])
def test_z_loss_and_softcap_keywords_with_hessians(integer):
    """The optax-style functions take z_loss and softcap; values, gradients and Hessians follow
    the reference (second order: JAX differentiates the core's own derivative)."""
    from smoothce.jax import softmax_cross_entropy, softmax_cross_entropy_with_integer_labels

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 5)) * 3
    labels = rng.integers(0, 5, size=4) if integer else rng.dirichlet(np.ones(5), size=4)
    fn = softmax_cross_entropy_with_integer_labels if integer else softmax_cross_entropy

    def total(z):
        return fn(z, jnp.asarray(labels), label_smoothing=0.1, z_loss=1e-2, softcap=4.0).sum()

    want, g = reference(logits, labels, 0.1, reduction="sum", z_loss=1e-2, softcap=4.0)
    np.testing.assert_allclose(float(total(jnp.asarray(logits))), want, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(jax.grad(total)(jnp.asarray(logits))), g, rtol=1e-9)
    hess = np.asarray(jax.hessian(total)(jnp.asarray(logits)))
    step = 1e-5
    numeric = np.zeros_like(hess)
    for i in np.ndindex(*logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += step
        down[i] -= step
        _, g_up = reference(up, labels, 0.1, reduction="sum", z_loss=1e-2, softcap=4.0)
        _, g_down = reference(down, labels, 0.1, reduction="sum", z_loss=1e-2, softcap=4.0)
        numeric[(..., *i)] = (g_up - g_down) / (2 * step)
    np.testing.assert_allclose(hess, numeric, rtol=1e-5, atol=1e-7)
