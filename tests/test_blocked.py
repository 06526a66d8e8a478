"""The blocked, in-place kernel path (eager NumPy and PyTorch) equals the plain out-of-place path.

array_api_strict arrays have no in-place primitives, so they always take the plain path: the
reference here. Shapes are chosen so that NumPy and torch split the rows into several blocks.
"""

from __future__ import annotations

import tracemalloc

import array_api_strict as xs
import numpy as np
import pytest

import smoothce
from smoothce._backends import _inplace, backend_of
from smoothce._backends.numpy import NumPyInPlace, float16
from smoothce._backends.torch import TorchInPlace
from tests.backends import get, to_numpy

IN_PLACE = ["numpy", "torch"]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2**13 elements, so that small test arrays still span many blocks and threads."""
    for ops in (NumPyInPlace, TorchInPlace):
        monkeypatch.setattr(ops, "block_elements", 1 << 13)


def _case(rng, n, k, integer):
    logits = rng.normal(size=(n, k)) * 3
    if integer:
        labels = rng.integers(0, k, size=n)
        labels[::4] = -100
    else:
        labels = rng.dirichlet(np.ones(k), size=n)
    return logits, labels


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reduction": "none"},
        {"weight": True},
        {"where": True},
        {"spread": "others", "reduction": "sum"},
        {"eps": 0.0, "weight": True},
    ],
    ids=["mean", "none", "weight", "where", "others", "eps0"],
)
def test_blocked_equals_plain(rng, name, integer, options):
    backend = get(name)
    n, k = 40, 9000
    logits, labels = _case(rng, n, k, integer)
    z = backend.asarray(logits)
    assert backend_of(z).inplace_ops(backend.namespace, z).block_elements < n * k  # several blocks
    kw = dict(options)
    eps = kw.pop("eps", 0.1)
    if kw.pop("weight", False):
        kw["weight"] = rng.uniform(0.5, 2, size=k)
    if kw.pop("where", False):
        where = np.ones(k, bool)
        where[-100:] = False
        kw["where"] = where
        if integer:
            labels = np.where(labels == -100, -100, labels % (k - 100))
    if integer:
        kw["ignore_index"] = -100
    plain = smoothce.loss_and_grad(
        xs.asarray(logits),
        xs.asarray(labels),
        eps,
        **{key: xs.asarray(v) if isinstance(v, np.ndarray) else v for key, v in kw.items()},
    )
    blocked = smoothce.loss_and_grad(
        z,
        backend.asarray(labels),
        eps,
        **{key: backend.asarray(v) if isinstance(v, np.ndarray) else v for key, v in kw.items()},
    )
    np.testing.assert_allclose(to_numpy(blocked[0]), to_numpy(plain[0]), rtol=1e-13)
    np.testing.assert_allclose(to_numpy(blocked[1]), to_numpy(plain[1]), rtol=1e-12, atol=1e-17)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("name", IN_PLACE)
def test_blocked_float16_equals_plain(rng, name):
    backend = get(name)
    logits = (rng.normal(size=(64, 3000)) * 3).astype(np.float16)
    labels = rng.integers(0, 3000, size=64)
    blocked = smoothce.loss_and_grad(backend.asarray(logits), backend.asarray(labels), 0.1)
    # the plain path on JAX, which has no in-place primitives
    plain = smoothce.loss_and_grad(get("jax").asarray(logits), get("jax").asarray(labels), 0.1)
    assert blocked[1].dtype == backend.asarray(logits).dtype
    np.testing.assert_allclose(to_numpy(blocked[0]), to_numpy(plain[0]), rtol=1e-3)
    np.testing.assert_allclose(to_numpy(blocked[1]), to_numpy(plain[1]), atol=1e-6)


@pytest.mark.parametrize("name", IN_PLACE)
def test_float32_exp_through_exp2_stays_within_a_few_ulp(name):
    """Large float32 CPU blocks take exp(a) = exp2(a·log2 e): ≤ 5 ulp where a > −10, and within
    the bound of rounding log2 e and the product to float32 (|a| ulp) plus exp2's own ulp."""
    backend = get(name)
    a = np.linspace(-80, 0, 1 << 16, dtype=np.float32)  # exp stays a normal float32
    assert a.size >= _inplace.EXP2_FROM
    x = backend.asarray(a)
    ops = backend_of(x).inplace_ops(backend.namespace, x)
    got = to_numpy(ops.exp(x, backend.asarray(np.empty_like(a))))
    exact = np.exp(a.astype(np.float64))
    ulps = np.abs(got - exact) / (np.finfo(np.float32).eps * exact)
    assert ulps[a > -10].max() <= 5
    assert (ulps <= 1 + np.abs(a)).all()


@pytest.mark.parametrize("name", IN_PLACE)
def test_float32_blocks_match_float64_reference(rng, name):
    """A float32 input big enough for the exp2 route agrees with the float64 plain path."""
    backend = get(name)
    logits = rng.normal(size=(64, 1000)) * 4
    labels = rng.integers(0, 1000, size=64)
    loss, grad = smoothce.loss_and_grad(
        backend.asarray(logits.astype(np.float32)), backend.asarray(labels), 0.1, reduction="none"
    )
    ref_loss, ref_grad = smoothce.loss_and_grad(
        xs.asarray(logits), xs.asarray(labels), 0.1, reduction="none"
    )
    np.testing.assert_allclose(to_numpy(loss), to_numpy(ref_loss), rtol=2e-6)
    np.testing.assert_allclose(to_numpy(grad), to_numpy(ref_grad), rtol=1e-5, atol=1e-9)


def test_numpy_float16_cast_matches_astype_bit_for_bit(rng):
    """The NumPy path's own float32 → float16 cast (fast for subnormal results) is astype's."""
    patterns = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65520, 1e6, 1e-45, -1e-45]
    edges += [2.0**-25, -(2.0**-25), 3 * 2.0**-26, 2.0**-24, 2.0**-14, 2.0**-14 * (1 - 2.0**-11)]
    for x in (
        patterns.view(np.float32),  # every exponent, random mantissas
        rng.standard_normal(1 << 16, dtype=np.float32) * np.float32(1e-6),  # mostly subnormal
        np.array(edges, dtype=np.float32),
    ):
        with np.errstate(over="ignore"):
            expected = x.astype(np.float16)
            got = float16(x)
        assert got.dtype == np.float16
        same = (got.view(np.uint16) == expected.view(np.uint16)) | np.isnan(expected)
        assert same.all()
        assert np.isnan(got[np.isnan(expected)]).all()


@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
def test_float16_gradient_is_the_float32_one_rounded(rng, monkeypatch, name, blocks):
    """float16 logits are computed in float32; the gradient is that result rounded once, the
    way astype rounds (mean over many classes: most entries are float16 subnormals)."""
    if blocks == "many blocks":
        for ops in (NumPyInPlace, TorchInPlace):
            monkeypatch.setattr(ops, "block_elements", 1 << 13)
    backend = get(name)
    logits = (rng.normal(size=(48, 3000)) * 3).astype(np.float16)
    y = backend.asarray(rng.integers(0, 3000, size=48))
    half = smoothce.grad(backend.asarray(logits), y, 0.1)
    single = smoothce.grad(backend.asarray(logits.astype(np.float32)), y, 0.1)
    expected = to_numpy(single).astype(np.float16)
    assert (expected == 0).mean() < 0.5 and (np.abs(expected) < 2.0**-14).mean() > 0.5
    got = to_numpy(half).astype(np.float16)  # float16 values survive the float32 round trip
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_overwrite_logits_equals_plain_and_reuses_the_buffer(rng, name, dtype):
    backend = get(name)
    logits, labels = _case(rng, 30, 5000, True)
    logits = logits.astype(dtype)
    y = backend.asarray(labels)
    expected = smoothce.loss_and_grad(backend.asarray(logits), y, 0.1, ignore_index=-100)
    z = backend.asarray(logits.copy())
    loss, grad = smoothce.loss_and_grad(z, y, 0.1, ignore_index=-100, overwrite_logits=True)
    np.testing.assert_array_equal(to_numpy(loss), to_numpy(expected[0]))
    np.testing.assert_array_equal(to_numpy(grad), to_numpy(expected[1]))
    np.testing.assert_array_equal(to_numpy(z), to_numpy(expected[1]))  # written in place
    overwritten = smoothce.grad(
        backend.asarray(logits.copy()), y, 0.1, ignore_index=-100, overwrite_logits=True
    )
    np.testing.assert_array_equal(to_numpy(overwritten), to_numpy(expected[1]))


def test_overwrite_logits_allocates_no_gradient_buffer(rng):
    n, k = 512, 8000  # several blocks of the default size
    logits = rng.standard_normal((n, k), dtype=np.float32)
    labels = rng.integers(0, k, size=n)
    tracemalloc.start()
    smoothce.loss_and_grad(logits, labels, 0.1, overwrite_logits=True)
    in_place_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    smoothce.loss_and_grad(logits, labels, 0.1)
    plain_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert in_place_peak < 0.05 * logits.nbytes
    assert plain_peak < 1.1 * logits.nbytes  # the gradient, plus cache-sized scratch


@pytest.mark.parametrize(
    ("backend", "prepare"),
    [
        ("jax", None),
        ("array_api_strict", None),
        ("tensorflow", None),
        ("torch", lambda t: t.requires_grad_()),
        ("numpy", np.asfortranarray),
        ("numpy", lambda a: a.T.copy().T),  # a transposed copy is not C-contiguous
    ],
    ids=["jax", "strict", "tensorflow", "torch-requires-grad", "fortran", "transposed"],
)
def test_overwrite_logits_refuses_what_it_cannot_write(rng, backend, prepare):
    xp = get(backend)
    logits = xp.asarray(rng.normal(size=(4, 5)))
    if prepare is not None:
        logits = prepare(logits)
    labels = xp.asarray(np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="overwrite=True needs"):
        smoothce.loss_and_grad(logits, labels, 0.1, overwrite_logits=True)


def test_overwrite_logits_needs_the_class_axis_last(rng):
    logits = rng.normal(size=(4, 5, 3))
    with pytest.raises(ValueError, match="class axis last"):
        smoothce.grad(logits, np.zeros((4, 3), dtype=np.int64), axis=1, overwrite_logits=True)
