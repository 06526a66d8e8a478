"""Bad input gets a clear error naming the value, on every backend; traced code gets NaN instead."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import smoothce
from tests.backends import to_numpy


@pytest.fixture
def problem(xp, rng):
    return xp.asarray(rng.normal(size=(4, 3))), xp.asarray(np.array([0, 2, 1, 2]))


@pytest.mark.parametrize("eps", [-0.1, 1.5, math.nan, math.inf])
def test_eps_outside_unit_interval(problem, eps):
    logits, labels = problem
    with pytest.raises(ValueError, match="eps"):
        smoothce.loss(logits, labels, eps)


@pytest.mark.parametrize("eps", ["0.1", True, np.True_, None])
def test_eps_of_the_wrong_type(problem, eps):
    logits, labels = problem
    with pytest.raises(TypeError, match="eps"):
        smoothce.loss(logits, labels, eps)


def test_eps_array_outside_unit_interval(xp, problem):
    logits, labels = problem
    with pytest.raises(ValueError, match=r"-0\.5"):
        smoothce.loss(logits, labels, xp.asarray(np.float64(-0.5)))


def test_eps_array_must_be_a_scalar(xp, problem):
    logits, labels = problem
    with pytest.raises(ValueError, match=r"eps must be a scalar, got an array of shape \(2,\)"):
        smoothce.loss(logits, labels, xp.asarray(np.array([0.1, 0.2])))


@pytest.mark.parametrize(("bad", "shown"), [(3, "label 3"), (-1, "label -1"), (7, "label 7")])
def test_label_out_of_range(xp, problem, bad, shown):
    logits, _ = problem
    labels = xp.asarray(np.array([0, bad, 1, 2]))
    with pytest.raises(ValueError, match=rf"{shown} is out of range.*\[0, 3\)"):
        smoothce.loss(logits, labels, 0.1)
    with pytest.raises(ValueError, match=shown):
        smoothce.grad(logits, labels, 0.1)


def test_ignore_index_is_not_out_of_range(xp, problem):
    logits, _ = problem
    labels = xp.asarray(np.array([0, -100, 1, 2]))
    assert np.isfinite(to_numpy(smoothce.loss(logits, labels, 0.1, ignore_index=-100)))
    with pytest.raises(ValueError, match="ignore_index=5"):
        smoothce.loss(logits, xp.asarray(np.array([0, -100, 1, 2])), 0.1, ignore_index=5)


def test_integer_logits(xp):
    with pytest.raises(TypeError, match="floating"):
        smoothce.loss(xp.asarray(np.ones((2, 3), dtype=np.int64)), xp.asarray(np.array([0, 1])))


def test_labels_fit_neither_form(xp, problem):
    logits, _ = problem
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):  # wrong shape
        smoothce.loss(logits, xp.asarray(np.zeros((4, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match="floating probabilities of shape"):  # float class indices
        smoothce.loss(logits, xp.asarray(np.zeros(4)))
    with pytest.raises(ValueError, match="integer class indices"):  # integer, logits' shape
        smoothce.loss(logits, xp.asarray(np.zeros((4, 3), dtype=np.int64)))


def test_weight_shape(xp, problem):
    logits, labels = problem
    with pytest.raises(ValueError, match=r"shape \(3,\).*got shape \(4,\)"):
        smoothce.loss(logits, labels, weight=xp.asarray(np.ones(4)))


def test_unknown_reduction_and_spread(problem):
    logits, labels = problem
    with pytest.raises(ValueError, match="'avg'"):
        smoothce.loss(logits, labels, reduction="avg")
    with pytest.raises(ValueError, match="'uniform'"):
        smoothce.loss(logits, labels, spread="uniform")


def test_spread_others_needs_two_classes(xp):
    with pytest.raises(ValueError, match="K=1"):
        smoothce.loss(xp.asarray(np.zeros((2, 1))), xp.asarray(np.array([0, 0])), spread="others")


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range(problem, axis):
    logits, labels = problem
    with pytest.raises(ValueError, match=f"axis {axis}"):
        smoothce.loss(logits, labels, axis=axis)


@pytest.mark.parametrize("axis", [True, 1.0, "1"])
def test_axis_of_the_wrong_type(problem, axis):
    logits, labels = problem
    with pytest.raises(TypeError, match="axis must be an integer"):
        smoothce.loss(logits, labels, axis=axis)


def test_ignore_index_with_probabilities(xp, problem):
    logits, _ = problem
    probs = xp.asarray(np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="ignore_index=0"):
        smoothce.loss(logits, probs, ignore_index=0)


def test_where_must_be_boolean_and_broadcast(xp, problem):
    logits, labels = problem
    with pytest.raises(TypeError, match="boolean"):
        smoothce.loss(logits, labels, where=xp.asarray(np.ones(3)))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        smoothce.loss(logits, labels, where=xp.asarray(np.ones(2, dtype=bool)))


def test_label_on_masked_class(xp, problem):
    logits, labels = problem
    where = xp.asarray(np.array([True, True, False]))
    with pytest.raises(ValueError, match="masks out"):
        smoothce.loss(logits, labels, where=where)


def test_mixed_libraries(xp, rng):
    other = "torch" if xp.name != "torch" else "numpy"
    from tests.backends import get

    logits = xp.asarray(rng.normal(size=(2, 3)))
    labels = get(other).asarray(np.array([0, 1]))
    with pytest.raises(TypeError, match="librar"):
        smoothce.loss(logits, labels)


def test_jax_jit_bad_label_gives_nan():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    labels = jnp.asarray([0, 9, -3])
    loss = jax.jit(lambda z, y: smoothce.loss(z, y, 0.1, reduction="none"))(logits, labels)
    grad = jax.jit(lambda z, y: smoothce.grad(z, y, 0.1, reduction="none"))(logits, labels)
    loss, grad = np.asarray(loss), np.asarray(grad)
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2])
    assert np.all(np.isfinite(grad[0])) and np.all(np.isnan(grad[1:]))
    mean = jax.jit(lambda z, y: smoothce.loss(z, y, 0.1))(logits, labels)
    assert np.isnan(float(mean))  # a bad example poisons the reduction instead of hiding


def test_tf_function_bad_label_gives_nan():
    tf = pytest.importorskip("tensorflow")

    logits = tf.constant(np.random.default_rng(0).normal(size=(3, 4)))
    labels = tf.constant([0, 9, 1])
    spec = [tf.TensorSpec([None, 4], tf.float64), tf.TensorSpec([None], tf.int32)]
    fn = tf.function(lambda z, y: smoothce.loss(z, y, 0.1, reduction="none"), input_signature=spec)
    loss = fn(logits, labels).numpy()
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isfinite(loss[2])
    mean = tf.function(lambda z, y: smoothce.loss(z, y, 0.1), input_signature=spec)
    assert np.isnan(mean(logits, labels).numpy())


def test_traced_where_and_mean_with_unknown_batch():
    """Graph mode with unknown batch size: the mean divides by the runtime count."""
    tf = pytest.importorskip("tensorflow")

    rng = np.random.default_rng(1)
    z, probs = rng.normal(size=(5, 4)), rng.dirichlet(np.ones(4), size=5)
    spec = [tf.TensorSpec([None, 4], tf.float64), tf.TensorSpec([None, 4], tf.float64)]
    fn = tf.function(lambda a, b: smoothce.loss_and_grad(a, b, 0.1), input_signature=spec)
    loss, grad = fn(tf.constant(z), tf.constant(probs))
    eager_loss, eager_grad = smoothce.loss_and_grad(z, probs, 0.1)
    np.testing.assert_allclose(loss.numpy(), eager_loss, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), eager_grad, rtol=1e-12)


def test_import_pulls_in_no_framework():
    code = (
        "import sys, numpy as np, smoothce\n"
        "smoothce.loss(np.zeros((2, 3)), np.array([0, 1]))\n"
        "print(sorted(m for m in ('torch', 'jax', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_jax_jit_with_concrete_labels_closed_over():
    """Labels captured by a jitted function are concrete, yet reductions on them are staged."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    good, bad = jnp.asarray([0, 3, 1]), jnp.asarray([0, 4, 1])
    value = jax.jit(lambda z: smoothce.loss(z, good, 0.1))(logits)
    np.testing.assert_allclose(float(value), float(smoothce.loss(logits, good, 0.1)), rtol=1e-12)
    assert np.isnan(float(jax.jit(lambda z: smoothce.loss(z, bad, 0.1))(logits)))
