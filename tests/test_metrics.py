"""smoothce.metrics on every backend, against plain NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoothce import metrics
from tests.backends import to_numpy

# --- plain NumPy references (float64, loops over bins: written differently on purpose) --------


def ref_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_bins(p: np.ndarray, y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    conf = p.max(axis=-1).ravel()
    correct = (p.argmax(axis=-1).ravel() == y.ravel()).astype(float)
    count, acc, cf = np.zeros(m), np.full(m, np.nan), np.full(m, np.nan)
    for b in range(m):
        lo, hi = b / m, (b + 1) / m
        sel = (conf > lo) & (conf <= hi) if b > 0 else conf <= hi
        count[b] = sel.sum()
        if sel.any():
            acc[b], cf[b] = correct[sel].mean(), conf[sel].mean()
    return count, cf, acc


def ref_ece(p: np.ndarray, y: np.ndarray, m: int) -> float:
    count, cf, acc = ref_bins(p, y, m)
    ok = count > 0
    return float(np.sum(count[ok] / count.sum() * np.abs(acc[ok] - cf[ok])))


def ref_nll(z: np.ndarray, y: np.ndarray) -> float:
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return float(np.mean(lse - np.take_along_axis(z, y[:, None], -1)[:, 0]))


def sample(rng: np.random.Generator, n: int = 300, k: int = 5, scale: float = 3.0):
    z = rng.normal(size=(n, k)) * scale
    # labels agree with the prediction most of the time, so bins hold right and wrong examples
    y = np.where(rng.random(n) < 0.7, z.argmax(-1), rng.integers(0, k, n))
    return z, y.astype(np.int64)


# --- softmax and logit norm ---------------------------------------------------------------------


def test_softmax_worked_example(xp):
    p = to_numpy(metrics.softmax(xp.asarray(np.array([1.5, 1.2, 1.0]))))
    np.testing.assert_allclose(p, [0.42601251, 0.31559783, 0.25838965], atol=1e-8)
    p5 = to_numpy(metrics.softmax(xp.asarray(np.array([7.5, 6.0, 5.0]))))
    np.testing.assert_allclose(p5, [0.76615721, 0.17095278, 0.06289001], atol=1e-8)


def test_softmax_matches_reference_and_axis(xp, rng):
    z = rng.normal(size=(4, 6, 3)) * 50  # large logits: the max shift must keep it finite
    for axis in (-1, 1):
        got = to_numpy(metrics.softmax(xp.asarray(z), axis=axis))
        want = np.moveaxis(ref_softmax(np.moveaxis(z, axis, -1)), -1, axis)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_logit_norm(xp, rng):
    z = rng.normal(size=(7, 4))
    np.testing.assert_allclose(
        to_numpy(metrics.logit_norm(xp.asarray(z))), np.linalg.norm(z, axis=1), rtol=1e-12
    )
    centered = z - z.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        to_numpy(metrics.logit_norm(xp.asarray(z), centered=True)),
        np.linalg.norm(centered, axis=1),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        to_numpy(metrics.logit_norm(xp.asarray(z), axis=0)), np.linalg.norm(z, axis=0), rtol=1e-12
    )


# --- ECE and reliability curve ------------------------------------------------------------------


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_reference(xp, rng, n_bins):
    z, y = sample(rng)
    got = float(to_numpy(metrics.expected_calibration_error(xp.asarray(z), xp.asarray(y), n_bins)))
    assert got == pytest.approx(ref_ece(ref_softmax(z), y, n_bins), abs=1e-12)
    p = ref_softmax(z)
    got_p = metrics.expected_calibration_error(
        xp.asarray(p), xp.asarray(y), n_bins, from_logits=False
    )
    assert float(to_numpy(got_p)) == pytest.approx(ref_ece(p, y, n_bins), abs=1e-12)


def test_ece_float32_and_small_labels(xp, rng):
    z, y = sample(rng, n=200, k=4)
    got = metrics.expected_calibration_error(
        xp.asarray(z.astype(np.float32)), xp.asarray(y.astype(np.int32))
    )
    assert float(to_numpy(got)) == pytest.approx(ref_ece(ref_softmax(z), y, 15), abs=1e-5)


def test_ece_edges_fall_into_the_lower_bin(xp):
    # confidences exactly on the edges 0.6 and 0.8 of 5 bins belong to (0.4, 0.6] and (0.6, 0.8]
    p = np.array([[0.6, 0.4], [0.8, 0.2], [0.6, 0.4], [0.8, 0.2]])
    y = np.array([0, 1, 1, 0])
    curve = metrics.reliability_curve(xp.asarray(p), xp.asarray(y), 5, from_logits=False)
    np.testing.assert_array_equal(to_numpy(curve.count), [0, 0, 2, 2, 0])
    np.testing.assert_allclose(to_numpy(curve.accuracy)[2:4], [0.5, 0.5])
    ece = metrics.expected_calibration_error(xp.asarray(p), xp.asarray(y), 5, from_logits=False)
    assert float(to_numpy(ece)) == pytest.approx(0.5 * 0.1 + 0.5 * 0.3, abs=1e-12)


def test_ece_perfect_and_worst(xp):
    # every prediction right with confidence 1: ECE 0; every one wrong with confidence 1: ECE 1
    z = np.array([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    assert float(
        to_numpy(metrics.expected_calibration_error(xp.asarray(z), xp.asarray(np.array([0, 1]))))
    ) == pytest.approx(0.0, abs=1e-12)
    assert float(
        to_numpy(metrics.expected_calibration_error(xp.asarray(z), xp.asarray(np.array([2, 2]))))
    ) == pytest.approx(1.0, abs=1e-12)


def test_reliability_curve_matches_reference(xp, rng):
    z, y = sample(rng, n=120, k=3, scale=1.0)
    curve = metrics.reliability_curve(xp.asarray(z), xp.asarray(y), 10)
    count, cf, acc = ref_bins(ref_softmax(z), y, 10)
    np.testing.assert_allclose(to_numpy(curve.edges), np.linspace(0, 1, 11), atol=1e-15)
    np.testing.assert_array_equal(to_numpy(curve.count), count)
    np.testing.assert_allclose(to_numpy(curve.confidence), cf, rtol=1e-12)  # NaN == NaN
    np.testing.assert_allclose(to_numpy(curve.accuracy), acc, rtol=1e-12)
    assert np.isnan(to_numpy(curve.accuracy)[0])  # max-prob of 3 classes is never <= 0.1


def test_ece_class_axis_and_batch_shape(xp, rng):
    z, y = sample(rng, n=60, k=4)
    zz = np.moveaxis(z.reshape(6, 10, 4), -1, 1)  # (6, K, 10), classes on axis 1
    got = metrics.expected_calibration_error(xp.asarray(zz), xp.asarray(y.reshape(6, 10)), axis=1)
    assert float(to_numpy(got)) == pytest.approx(ref_ece(ref_softmax(z), y, 15), abs=1e-12)


def test_ece_traces_under_jit_and_tf_function(rng):
    jax = pytest.importorskip("jax")
    tf = pytest.importorskip("tensorflow")

    z, y = sample(rng, n=80)
    want = ref_ece(ref_softmax(z), y, 15)
    jitted = jax.jit(metrics.expected_calibration_error)
    assert float(jitted(jax.numpy.asarray(z), jax.numpy.asarray(y))) == pytest.approx(want)
    graph = tf.function(lambda a, b: metrics.expected_calibration_error(a, b))
    assert float(graph(tf.constant(z), tf.constant(y))) == pytest.approx(want)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # wrong values are ValueErrors, wrong types and dtypes TypeErrors
        ({"n_bins": 0}, ValueError, "n_bins"),
        ({"n_bins": 2.5}, TypeError, "n_bins"),
        ({"labels": np.array([0, 1])}, ValueError, "shape"),
        ({"labels": np.array([0, 1, 5])}, ValueError, r"\[0, 3\)"),
        ({"labels": np.array([0.0, 1.0, 2.0])}, TypeError, "integer"),
        ({"logits": np.array([[1, 2, 3]] * 3)}, TypeError, "floating"),
    ],
)
def test_ece_bad_input(xp, kwargs, error, message):
    kwargs = dict(kwargs)  # the parametrised dict is shared between backends
    logits = kwargs.pop("logits", np.zeros((3, 3)))
    labels = kwargs.pop("labels", np.array([0, 1, 2]))
    with pytest.raises(error, match=message):
        metrics.expected_calibration_error(xp.asarray(logits), xp.asarray(labels), **kwargs)


# --- temperature scaling ------------------------------------------------------------------------


def test_fit_temperature_minimises_nll(xp, rng):
    z, _ = sample(rng, n=400, k=6, scale=1.0)
    true_t = 0.5  # labels drawn from softmax(z / 0.5): the logits are under-confident by 2×
    p = ref_softmax(z / true_t)
    y = np.array([rng.choice(6, p=row) for row in p])
    t = metrics.fit_temperature(xp.asarray(z), xp.asarray(y))
    assert isinstance(t, float)
    grid = np.exp(np.linspace(np.log(0.1), np.log(10), 4001))
    best = grid[np.argmin([ref_nll(z / g, y) for g in grid])]
    assert t == pytest.approx(best, rel=2e-3)
    assert 0.35 < t < 0.7  # and it recovers the temperature the labels were drawn with


def test_fit_temperature_overconfident_and_bounds(xp, rng):
    z, y = sample(rng, n=300, k=4, scale=1.0)
    assert metrics.fit_temperature(xp.asarray(z * 8), xp.asarray(y)) > 1.5  # softens
    # every prediction right: the NLL keeps falling as T -> 0, so the lower bound is returned
    z_right = np.eye(4)[y] * 3.0
    t = metrics.fit_temperature(xp.asarray(z_right), xp.asarray(y), bounds=(0.05, 5.0))
    assert t == pytest.approx(0.05, rel=1e-3)
    with pytest.raises(ValueError, match="bounds"):
        metrics.fit_temperature(xp.asarray(z), xp.asarray(y), bounds=(2.0, 1.0))


# --- noisy labels -------------------------------------------------------------------------------


def ref_noisy(y: np.ndarray, u: np.ndarray, rate: float, k: int) -> np.ndarray:
    out = y.copy()
    for i, (label, draw) in enumerate(zip(y, u, strict=True)):
        if draw < rate:
            out[i] = (label + 1 + min(int(draw / rate * (k - 1)), k - 2)) % k
    return out


def test_noisy_labels_with_draws_matches_reference(xp, rng):
    y = rng.integers(0, 7, 500)
    u = rng.random(500)
    got = metrics.noisy_labels(xp.asarray(y), 0.3, 7, draws=xp.asarray(u))
    out = to_numpy(got)
    np.testing.assert_array_equal(out, ref_noisy(y, u, 0.3, 7))
    assert out.dtype == y.dtype
    flipped = u < 0.3
    assert np.all(out[flipped] != y[flipped]) and np.all(out[~flipped] == y[~flipped])
    # every other class is reachable: the K − 1 offsets are all used
    assert set(((out - y) % 7)[flipped]) == set(range(1, 7))


def test_noisy_labels_uint8_and_rate_one(xp, rng):
    y = rng.integers(0, 3, 50).astype(np.uint8)
    u = rng.random(50)
    out = to_numpy(metrics.noisy_labels(xp.asarray(y), 1.0, 3, draws=xp.asarray(u)))
    assert out.dtype == np.uint8
    assert np.all(out != y) and out.max() < 3
    same = to_numpy(metrics.noisy_labels(xp.asarray(y), 0.0, 3, draws=xp.asarray(u)))
    np.testing.assert_array_equal(same, y)


def _framework_rng(name: str):
    if name == "torch":
        import torch

        return torch.Generator().manual_seed(0)
    if name == "jax":
        import jax

        return jax.random.key(0)
    if name == "tensorflow":
        import tensorflow as tf

        return tf.random.Generator.from_seed(0)
    return 0  # NumPy and array-api-strict: a NumPy seed


def test_noisy_labels_with_framework_rng(xp, rng):
    y = rng.integers(0, 10, 20000)
    out = to_numpy(metrics.noisy_labels(xp.asarray(y), 0.2, 10, rng=_framework_rng(xp.name)))
    assert out.shape == y.shape and 0 <= out.min() and out.max() < 10
    changed = np.mean(out != y)
    assert abs(changed - 0.2) < 0.015
    # the new class is uniform over the other 9: each offset gets about 1/9 of the flips
    offsets = np.bincount((out - y)[out != y] % 10, minlength=10)[1:]
    assert offsets.min() > 0.6 * offsets.mean()


def test_noisy_labels_errors(xp):
    y = xp.asarray(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="rate"):
        metrics.noisy_labels(y, 1.5, 3, rng=0 if xp.name != "jax" else None)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.noisy_labels(y, 0.1, 1)
    with pytest.raises(ValueError, match="draws of shape"):
        metrics.noisy_labels(y, 0.1, 3, draws=xp.asarray(np.zeros(2)))
    with pytest.raises(TypeError, match="integer"):
        metrics.noisy_labels(xp.asarray(np.zeros(3)), 0.1, 3)


def test_noisy_labels_jax_needs_a_key():
    jnp = pytest.importorskip("jax.numpy")

    with pytest.raises(ValueError, match=r"jax\.random\.key"):
        metrics.noisy_labels(jnp.asarray([0, 1]), 0.5, 2)


def test_noisy_labels_under_jit():
    jax = pytest.importorskip("jax")

    y = np.arange(8) % 4
    u = np.linspace(0, 0.99, 8)
    fn = jax.jit(lambda a, b: metrics.noisy_labels(a, 0.5, 4, draws=b))
    np.testing.assert_array_equal(
        np.asarray(fn(jax.numpy.asarray(y), jax.numpy.asarray(u))), ref_noisy(y, u, 0.5, 4)
    )


def test_ece_nan_free_for_one_example(xp):
    z = np.array([[0.2, 0.1]])
    ece = float(to_numpy(metrics.expected_calibration_error(xp.asarray(z), xp.asarray([0]))))
    assert not math.isnan(ece)
    assert ece == pytest.approx(1 - ref_softmax(z)[0, 0])
