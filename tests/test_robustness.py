"""Robustness of the core: no corrupted data, no hang, no silent wrong value, on every library.

Each test here failed on smoothce 0.1 (issue #14) and pins the fixed behaviour.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smoothce
from smoothce import metrics
from tests.backends import get, to_numpy

# --- silent wrong values -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["0-d array", "numpy scalar"])
def test_eps_zero_array_with_a_minus_inf_logit(xp, kind):
    """−inf on a class that is not the label (the usual way to mask a class) with ε = 0 given
    as an array: the finite plain cross-entropy, not NaN from 0·(−inf)."""
    logits = np.array([[2.0, -np.inf, 0.5], [-np.inf, 1.0, 0.0]])
    labels = np.array([0, 2])
    eps = xp.asarray(np.float64(0.0)) if kind == "0-d array" else np.float64(0.0)
    loss, grad = smoothce.loss_and_grad(xp.asarray(logits), xp.asarray(labels), eps)
    want = smoothce.loss(logits, labels, 0.0)
    assert np.isfinite(want)
    np.testing.assert_allclose(to_numpy(loss), want, rtol=1e-12)
    assert np.all(np.isfinite(to_numpy(grad)))


@pytest.mark.parametrize("eps", [np.float32(0.1), np.float64(0.1), np.array(0.1)])
def test_eps_from_numpy_with_any_library(xp, eps):
    logits, labels = xp.asarray(np.ones((2, 3))), xp.asarray(np.array([0, 1]))
    np.testing.assert_allclose(
        to_numpy(smoothce.loss(logits, labels, eps)),
        smoothce.loss(np.ones((2, 3)), np.array([0, 1]), 0.1),
        rtol=1e-6,
    )


@pytest.mark.parametrize("eps", [True, False, np.True_])
def test_eps_bool_is_refused(xp, eps):
    with pytest.raises(TypeError, match="eps"):
        smoothce.loss(xp.asarray(np.ones((2, 3))), xp.asarray(np.array([0, 1])), eps)


def test_eps_bool_array_is_refused(xp):
    with pytest.raises(TypeError, match="eps"):
        smoothce.loss(
            xp.asarray(np.ones((2, 3))), xp.asarray(np.array([0, 1])), xp.asarray(np.True_)
        )


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"axis": np.int64(-1)}, "axis"), ({"ignore_index": np.int32(1)}, "ignore_index")],
)
def test_numpy_integers_are_integers(xp, kw, name):
    logits, labels = np.ones((3, 4)), np.array([0, 1, 2])
    ours = smoothce.loss(xp.asarray(logits), xp.asarray(labels), **kw)
    plain = {k: int(v) for k, v in kw.items()}
    np.testing.assert_allclose(to_numpy(ours), smoothce.loss(logits, labels, **plain))


@pytest.mark.parametrize("kw", [{"ignore_index": True}, {"axis": np.True_}])
def test_bool_integers_are_refused(kw):
    with pytest.raises(TypeError, match="bool"):
        smoothce.loss(np.ones((3, 4)), np.array([0, 1, 2]), **kw)


def test_smooth_labels_range_width_and_dtype(xp):
    labels = xp.asarray(np.array([0, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="label 3 is out of range"):
        smoothce.smooth_labels(labels, 0.1, num_classes=3)
    if xp.name != "array_api_strict":  # uint8 with K > 256: once wrapped around, rows summed to 1.9
        wide = smoothce.smooth_labels(
            xp.asarray(np.array([255, 3], dtype=np.uint8)), 0.1, num_classes=300
        )
        dense = to_numpy(wide)
        np.testing.assert_allclose(dense.sum(-1), 1.0, rtol=1e-6)
        assert dense[0, 255] == pytest.approx(0.9 + 0.1 / 300) and dense[0, 256 % 256] < 0.01
    probs = xp.asarray(np.full((2, 4), 0.25))  # floating labels keep their dtype (float64)
    assert smoothce.smooth_labels(probs, 0.1).dtype == probs.dtype


def test_smooth_labels_traced_bad_label_is_nan():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    dense = jax.jit(lambda y: smoothce.smooth_labels(y, 0.1, num_classes=3))(jnp.array([1, 5]))
    dense = np.asarray(dense)
    assert np.all(np.isfinite(dense[0])) and np.all(np.isnan(dense[1]))


def test_overwrite_refuses_labels_in_the_logits_buffer():
    buffer = np.random.default_rng(0).normal(size=(4, 6))
    logits, probs = buffer[:, :3], np.abs(buffer[:, 3:]) / np.abs(buffer[:, 3:]).sum(1, keepdims=1)
    same = np.ascontiguousarray(buffer)
    with pytest.raises(ValueError, match="share memory"):
        smoothce.loss_and_grad(same, same, 0.1, overwrite_logits=True)
    assert np.array_equal(same, np.ascontiguousarray(buffer))  # nothing was written
    assert logits.shape == probs.shape


def test_overwrite_with_an_empty_batch():
    z = np.zeros((0, 5))
    loss, grad = smoothce.loss_and_grad(z, np.zeros(0, dtype=int), 0.1, overwrite_logits=True)
    assert grad.shape == (0, 5) and np.isnan(loss)  # mean of nothing, as in PyTorch


def test_overwrite_with_a_per_example_mask_is_a_clear_error():
    z, where = np.zeros((4, 5)), np.ones((4, 5), bool)
    with pytest.raises(ValueError, match="mask with one row per example"):
        smoothce.grad(z, np.zeros(4, dtype=int), where=where, overwrite_logits=True)


def test_spread_others_with_one_kept_class_is_an_error(xp):
    where = np.ones((3, 4), bool)
    where[1, 1:] = False  # example 1 keeps only its label's class
    with pytest.raises(ValueError, match="at least 2 unmasked classes"):
        smoothce.loss(
            xp.asarray(np.zeros((3, 4))),
            xp.asarray(np.array([0, 0, 0])),
            spread="others",
            where=xp.asarray(where),
        )


def test_zero_classes_and_empty_batches(xp):
    with pytest.raises(ValueError, match="at least one class"):
        smoothce.loss(xp.asarray(np.zeros((3, 0))), xp.asarray(np.zeros(3, dtype=np.int64)))
    loss, grad = smoothce.loss_and_grad(
        xp.asarray(np.zeros((0, 4))), xp.asarray(np.zeros(0, dtype=np.int64)), reduction="sum"
    )
    assert float(to_numpy(loss)) == 0.0 and tuple(grad.shape) == (0, 4)


# --- traced code: NaN, never a finite wrong value -----------------------------------------


def _traced(name):
    """A function tracer for the library ``name``: f -> f run with no concrete values."""
    if name == "jax":
        jax = pytest.importorskip("jax")
        return jax.jit, lambda a: jax.numpy.asarray(a)
    if name == "tensorflow":
        tf = pytest.importorskip("tensorflow")
        return tf.function, tf.constant
    torch = pytest.importorskip("torch")

    def vmapped(f):  # one example of a batch of one: no concrete values inside
        def run(*args):
            out = torch.func.vmap(f)(*(x[None] for x in args))
            return tuple(o[0] for o in out) if isinstance(out, tuple) else out[0]

        return run

    return vmapped, torch.as_tensor


@pytest.mark.parametrize("name", ["jax", "tensorflow", "torch"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_traced_bad_label_gives_nan_loss_and_nan_gradient_row(name, reduction):
    trace, asarray = _traced(name)
    logits = np.random.default_rng(0).normal(size=(3, 4))
    labels = np.array([0, 9, 1])

    def loss_and_grad(z, y):
        return smoothce.loss_and_grad(z, y, 0.1, reduction=reduction)

    loss, grad = trace(loss_and_grad)(asarray(logits), asarray(labels))
    loss, grad = to_numpy(loss), to_numpy(grad)
    assert np.all(np.isnan(loss[1] if reduction == "none" else loss))
    assert np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(grad[[0, 2]])) if reduction == "none" else True


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_autodiff_through_the_core_gives_a_nan_row(name):
    """Differentiating smoothce.loss itself (not the adapters) under tracing: the bad example's
    gradient row is NaN, not 0 (a `where` would have hidden it)."""
    logits = np.random.default_rng(0).normal(size=(3, 4))
    labels = np.array([0, 9, 1])
    if name == "jax":
        jax = pytest.importorskip("jax")
        fn = jax.jit(jax.grad(lambda z, y: smoothce.loss(z, y, 0.1, reduction="sum")))
        grad = np.asarray(fn(jax.numpy.asarray(logits), jax.numpy.asarray(labels)))
    else:
        torch = pytest.importorskip("torch")

        def total(z, y):
            return smoothce.loss(z, y, 0.1, reduction="sum")

        z, y = torch.tensor(logits), torch.tensor(labels)
        grad = torch.func.vmap(torch.func.grad(total))(z[None], y[None])[0].numpy()
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[[0, 2]]))


@pytest.mark.parametrize("name", ["jax", "tensorflow", "torch"])
def test_traced_eps_outside_the_unit_interval_gives_nan(name):
    trace, asarray = _traced(name)
    logits, labels = np.zeros((2, 3)), np.array([0, 1])
    for eps in (-0.5, 1.5):
        fn = trace(lambda z, y, e: smoothce.loss(z, y, e, reduction="none"))
        value = to_numpy(fn(asarray(logits), asarray(labels), asarray(np.float64(eps))))
        assert np.all(np.isnan(value))


_INVALID = st.sampled_from(
    ["label above K", "negative label", "eps above 1", "negative eps", "label on masked class"]
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    invalid=_INVALID,
    n=st.integers(1, 4),
    k=st.integers(2, 6),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    seed=st.integers(0, 2**16),
)
def test_no_finite_value_for_invalid_input_under_tracing(invalid, n, k, reduction, seed):
    """Under jit every invalid input gives a NaN loss (per bad example, or the reduced value)
    and a NaN gradient row: never a finite number."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    labels = rng.integers(0, k, size=n)
    eps, where, bad = 0.1, None, 0
    if invalid == "label above K":
        labels[bad] = k + rng.integers(0, 5)
    elif invalid == "negative label":
        labels[bad] = -1 - rng.integers(0, 5)
    elif invalid == "eps above 1":
        eps, bad = 1.0 + rng.uniform(0.01, 2), None
    elif invalid == "negative eps":
        eps, bad = -rng.uniform(0.01, 2), None
    else:
        where = np.ones((n, k), bool)
        where[bad, labels[bad]] = False

    def fn(z, y, e, m):
        return smoothce.loss_and_grad(z, y, e, where=m, reduction=reduction)

    loss, grad = jax.jit(fn)(
        jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(eps),
        None if where is None else jnp.asarray(where),
    )  # fmt: skip
    loss, grad = np.asarray(loss), np.asarray(grad)
    rows = slice(None) if bad is None else bad
    assert np.all(np.isnan(loss[rows] if reduction == "none" else loss))
    assert np.all(np.isnan(grad[rows]))


# --- metrics ------------------------------------------------------------------------------


def test_fit_temperature_terminates_for_any_tol_and_refuses_nan_or_empty():
    z = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    y = np.array([0, 1, 1])
    t = metrics.fit_temperature(z, y, tol=1e-18)  # once an endless loop
    assert math.isfinite(t) and 0.01 < t < 100
    with pytest.raises(ValueError, match="finite"):
        metrics.fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="at least one example"):
        metrics.fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_noisy_labels_refuses_out_of_range_labels(xp):
    if xp.name == "jax":
        draws = xp.asarray(np.zeros(3))
        with pytest.raises(ValueError, match="label 3 is out of range"):
            metrics.noisy_labels(xp.asarray(np.array([0, 1, 3])), 0.5, 3, draws=draws)
        return
    with pytest.raises(ValueError, match="label 3 is out of range"):
        metrics.noisy_labels(xp.asarray(np.array([0, 1, 3])), 0.5, 3, rng=0)
    assert metrics.noisy_labels(np.array([0, 1]), np.float32(0.5), np.int64(3), rng=0).shape == (2,)


def test_ece_under_jit_with_a_label_at_or_above_k_is_nan():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    ece = jax.jit(metrics.expected_calibration_error)(jnp.zeros((3, 4)), jnp.array([0, 4, 1]))
    assert np.isnan(float(ece))


# --- processes and threads ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_hang_on_the_thread_pool():
    """The parent runs the blocked NumPy path (which starts the thread pool); a forked child
    must not wait forever on the pool's missing threads."""
    script = textwrap.dedent(
        """
        import os, sys, numpy as np, smoothce
        z = np.random.default_rng(0).standard_normal((512, 8000), dtype=np.float32)
        y = np.zeros(512, dtype=np.int64)
        smoothce.loss_and_grad(z, y, 0.1)  # several blocks: the pool is running
        pid = os.fork()
        if pid == 0:
            value, _ = smoothce.loss_and_grad(z, y, 0.1)
            os._exit(0 if np.isfinite(value) else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_thread_count_is_configurable():
    script = "from smoothce._backends.numpy import NumPyInPlace; print(NumPyInPlace.threads)"
    env = dict(os.environ, SMOOTHCE_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "1", out.stderr
    assert get("numpy").name == "numpy"
