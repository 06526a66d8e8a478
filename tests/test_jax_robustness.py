"""smoothce.jax on bad and unusual input, device reads and memory.

- ε given as an array (JAX, NumPy scalar, 0-d NumPy) equal to 0, with a −inf logit off the
  label: finite (0·(−inf) never reaches the loss); ε as a bool: TypeError.
- Under jit a bad label or an ε outside [0, 1] cannot be checked: the loss is NaN and the bad
  example's gradient row is NaN (never 0, never a wrong finite number), for both functions and
  for ``smoothce.loss`` on JAX arrays.
- Nothing reads device values under jit (``jax.transfer_guard``), nothing reads them eagerly
  when the arrays are not on the host, and the eager check on the host reads the labels once.
- The compiled step's temporary memory, against optax's (``compiled.memory_analysis()``).

x64 is enabled by tests/conftest.py.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import smoothce  # noqa: E402
from smoothce._backends.jax import JaxBackend  # noqa: E402
from smoothce.jax import (  # noqa: E402
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SCI, SCE = softmax_cross_entropy_with_integer_labels, softmax_cross_entropy
FUNCTIONS = [SCI, SCE]
IDS = ["integer", "dense"]


def _problem(n=4, k=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(n, k)))
    index = jnp.asarray(rng.integers(0, k, n))
    return logits, index, jax.nn.one_hot(index, k, dtype=logits.dtype)


def _labels(fn, index, onehot):
    return index if fn is SCI else onehot


# ---------------------------------------------------------------- ε = 0 as an array, −inf logits

ZERO_EPS = {
    "python": 0.0,
    "jax": jnp.asarray(0.0),
    "jax float32": jnp.asarray(0.0, jnp.float32),
    "numpy scalar": np.float64(0.0),
    "numpy 0-d": np.asarray(0.0),
    "numpy int": np.int64(0),
}


@pytest.mark.parametrize("eps", list(ZERO_EPS))
@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_zero_eps_array_with_minus_inf_logit_is_finite(fn, eps):
    """The −inf logit is not the label: it has no target mass at ε = 0, so the loss is the
    finite plain cross-entropy (optax.safe_softmax_cross_entropy), eagerly and under jit."""
    z = jnp.asarray([[0.5, -jnp.inf, 2.0], [1.0, 0.5, -jnp.inf]])
    index = jnp.asarray([0, 1])
    y = _labels(fn, index, jax.nn.one_hot(index, 3, dtype=z.dtype))
    e = ZERO_EPS[eps]
    want = optax.safe_softmax_cross_entropy(z, jax.nn.one_hot(index, 3, dtype=z.dtype))
    value = fn(z, y, label_smoothing=e)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    grad = jax.grad(lambda z: fn(z, y, label_smoothing=e).sum())(z)
    np.testing.assert_allclose(grad, jax.nn.softmax(z) - jax.nn.one_hot(index, 3), atol=1e-12)
    if isinstance(e, jax.Array):  # an array ε traced under jit
        traced = jit(lambda z, e: fn(z, y, label_smoothing=e))(z, e)
        np.testing.assert_allclose(traced, want, rtol=1e-12)
    # the core on JAX arrays, with a JAX ε
    core = smoothce.loss(z, y, jnp.asarray(0.0), reduction="none")
    np.testing.assert_allclose(core, want, rtol=1e-12)


# ---------------------------------------------------------------- ε types


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_numpy_eps_is_accepted_and_checked_on_the_host(fn):
    z, index, onehot = _problem()
    y = _labels(fn, index, onehot)
    want = fn(z, y, label_smoothing=0.25)
    for eps in (np.float64(0.25), np.float32(0.25), np.asarray(0.25), np.asarray(0.25, np.float32)):
        np.testing.assert_allclose(fn(z, y, label_smoothing=eps), want, rtol=1e-7)
        # closed over under jit: a host constant, checked while tracing
        np.testing.assert_allclose(
            jit(lambda z, eps=eps: fn(z, y, label_smoothing=eps))(z), want, rtol=1e-7
        )
    for bad in (np.float64(1.5), np.asarray(-0.5)):
        with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\]"):
            fn(z, y, label_smoothing=bad)
        with pytest.raises(ValueError, match="label_smoothing must be a finite number"):
            jit(lambda z, bad=bad: fn(z, y, label_smoothing=bad))(z)


@pytest.mark.parametrize(
    "eps",
    [True, False, np.True_, np.asarray(True), jnp.asarray(True), jnp.asarray(False)],
    ids=["True", "False", "np.True_", "numpy bool 0-d", "jax True", "jax False"],
)
@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_bool_eps_is_refused(fn, eps):
    z, index, onehot = _problem()
    y = _labels(fn, index, onehot)
    with pytest.raises(TypeError, match="label_smoothing must be a number in"):
        fn(z, y, label_smoothing=eps)
    if isinstance(eps, jax.Array):  # refused by dtype under jit too
        with pytest.raises(TypeError, match="label_smoothing must be a number in"):
            jit(lambda z, e: fn(z, y, label_smoothing=e))(z, eps)


# ---------------------------------------------------------------- unreadable bad input: NaN


def test_bad_label_under_jit_makes_its_loss_and_gradient_row_nan():
    z, index, _ = _problem()
    broken = index.at[1].set(9)
    for name, loss in {
        "integer function": lambda z, y: SCI(z, y).sum(),
        "smoothce.loss mean": lambda z, y: smoothce.loss(z, y),
        "smoothce.loss sum": lambda z, y: smoothce.loss(z, y, 0.2, reduction="sum"),
    }.items():
        value, grad = jit(jax.value_and_grad(loss))(z, broken)
        assert np.isnan(value), name
        assert np.all(np.isnan(grad[1])), name
        good = np.array([0, 2, 3])
        want = jax.grad(loss)(z, index)  # the same rows with good labels
        np.testing.assert_allclose(grad[good], want[good], atol=1e-12, err_msg=name)
    per_example = jit(SCI)(z, broken)
    assert np.isnan(per_example[1]) and np.all(np.isfinite(per_example[np.array([0, 2, 3])]))
    core = jit(lambda z, y: smoothce.loss(z, y, reduction="none"))(z, broken)
    assert np.isnan(core[1]) and np.all(np.isfinite(core[np.array([0, 2, 3])]))


def test_debug_nans_and_checkify_turn_the_nan_into_an_error():
    """The documented ways to get an error under jit: ``jax.debug_nans`` re-runs the failing
    program eagerly, where the label check names the label; checkify reports the NaN."""
    from jax.experimental import checkify

    z, index, _ = _problem()
    broken = index.at[1].set(9)
    step = jax.jit(jax.value_and_grad(lambda z, y: SCI(z, y).mean()))
    with jax.debug_nans(True), pytest.raises(ValueError, match="label 9 is out of range"):
        step(z, broken)
    error, _ = checkify.checkify(step, errors=checkify.float_checks)(z, broken)
    assert "nan generated" in error.get()
    error, _ = checkify.checkify(step, errors=checkify.float_checks)(z, index)
    assert error.get() is None


@pytest.mark.parametrize("eps", [1.5, -0.25, float("nan")])
def test_traced_eps_outside_0_1_makes_the_loss_nan(eps):
    z, index, onehot = _problem()
    cases = {
        "integer": lambda z, e: SCI(z, index, label_smoothing=e).sum(),
        "dense": lambda z, e: SCE(z, onehot, label_smoothing=e).sum(),
        "smoothce.loss": lambda z, e: smoothce.loss(z, index, e),
        "smoothce.loss dense": lambda z, e: smoothce.loss(z, onehot, e),
    }
    for name, loss in cases.items():
        value, (g_z, g_e) = jit(jax.value_and_grad(loss, (0, 1)))(z, jnp.asarray(eps))
        assert np.isnan(value), name
        assert np.all(np.isnan(g_z)) and np.isnan(g_e), name
    # eagerly, a concrete ε on the host is read and refused
    with pytest.raises(ValueError, match="label_smoothing must be a finite number"):
        SCI(z, index, label_smoothing=jnp.asarray(eps))


# ---------------------------------------------------------------- device reads


def _step(fn, axis=-1):
    def loss(z, y, e, w):
        return fn(z, y, axis, w, label_smoothing=e).mean()

    return jax.value_and_grad(loss, (0, 2))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_nothing_is_transferred_under_jit(fn):
    """Every argument is already on the device; the traced program must move nothing between
    host and device (ε as a Python number is a constant baked into the program)."""
    z, index, onehot = _problem()
    y = _labels(fn, index, onehot)
    mask = jnp.ones((4, 5), bool).at[0].set(False).at[2, 3].set(index[2] == 3)
    example = jnp.asarray([True, False, True, True])
    eps = jnp.asarray(0.1)
    stepped = jit(_step(fn))
    fixed = jit(lambda z, y, w: fn(z, y, -1, w, label_smoothing=0.1).sum())
    by_hand = jit(jax.grad(lambda z, y: smoothce.loss(z, y, 0.1)))
    for w in (None, mask, example):  # compile (and check the numbers) before the guard
        stepped(z, y, eps, w)
        fixed(z, y, w)
    by_hand(z, y)
    with jax.transfer_guard("disallow"), jax.transfer_guard_device_to_host("disallow"):
        for w in (None, mask, example):
            _, (g_z, g_e) = stepped(z, y, eps, w)
            fixed(z, y, w)
        by_hand(z, y)
        # tracing and compiling afresh under the guard transfers nothing either
        jit(_step(fn))(z, y, eps, mask)
        jit(lambda z, y: smoothce.loss(z, y, 0.1, where=mask))(z, y)
    assert np.all(np.isfinite(g_z)) and np.isfinite(g_e)


class _Reads:
    """Counts (or forbids) reading a concrete JAX array's values on the host: ``int(x)``,
    ``bool(x)``, ``float(x)``, ``np.asarray(x)`` and ``x.tolist()`` all go through
    ``ArrayImpl._value`` (on a CPU-only machine JAX's transfer guard cannot see these reads)."""

    def __init__(self, monkeypatch, forbid=False):
        cls = type(jnp.zeros(()))
        original = cls._value
        self.count = 0

        def spy(array):
            self.count += 1
            if forbid:
                raise AssertionError("a device array's value was read")
            return original.fget(array)

        monkeypatch.setattr(cls, "_value", property(spy))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_no_eager_reads_when_arrays_are_not_on_the_host(fn, monkeypatch):
    """As on an accelerator: labels, masks and ε are not read (no device synchronisation);
    a bad label then gives NaN in its own row, eagerly too."""
    z, index, onehot = _problem()
    y = _labels(fn, index, onehot)
    mask = jnp.ones((4, 5), bool).at[0].set(False)
    example = jnp.asarray([True, False, True, True])
    broken = index.at[1].set(7)
    want = [_step(fn)(z, y, jnp.asarray(0.1), w) for w in (None, mask, example)]  # before the patch
    monkeypatch.setattr(JaxBackend, "on_host", lambda self, x: False)
    reads = _Reads(monkeypatch, forbid=True)
    got = [_step(fn)(z, y, jnp.asarray(0.1), w) for w in (None, mask, example)]
    if fn is SCI:
        bad = SCI(z, broken)
        bad_grad = jax.grad(lambda z: SCI(z, broken).sum())(z)
    assert reads.count == 0
    monkeypatch.undo()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    if fn is SCI:
        assert np.isnan(bad[1]) and np.all(np.isnan(bad_grad[1]))
        assert np.all(np.isfinite(bad[np.array([0, 2, 3])]))


def test_check_labels_true_reads_once_off_the_host(monkeypatch):
    """``check_labels=True`` (the way to get eager label errors on an accelerator) reads the
    labels' extremes in one transfer; ``check_labels=False`` reads nothing, even on the host."""
    z, index, _ = _problem()
    broken = index.at[1].set(7)
    monkeypatch.setattr(JaxBackend, "on_host", lambda self, x: False)
    reads = _Reads(monkeypatch)
    SCI(z, index, check_labels=True)
    assert reads.count == 1
    with pytest.raises(ValueError, match="label 7 is out of range"):
        SCI(z, broken, check_labels=True)
    monkeypatch.undo()
    reads = _Reads(monkeypatch, forbid=True)
    value = SCI(z, broken, check_labels=False)  # on the host, but not read
    monkeypatch.undo()
    assert np.isnan(value[1])
    with pytest.raises(TypeError, match="check_labels must be True, False or None"):
        SCI(z, index, check_labels=1)


def test_eager_label_check_on_the_host_reads_once(monkeypatch):
    """On the host the default check reads the labels' extremes with one transfer, in a plain
    call and in an eager ``jax.grad`` (the rule runs the core once). A JAX ε is read once to
    check its range; a class mask twice more (fully masked rows, labels on masked classes)."""
    z, index, onehot = _problem()
    mask = jnp.ones((4, 5), bool).at[0].set(False)

    def eager_grad():
        jax.grad(lambda z: SCI(z, index, label_smoothing=jnp.asarray(0.2)).sum())(z)

    SCI(z, index, where=mask)  # compile the eager primitives first
    eager_grad()
    counts = {}
    for name, call in {
        "plain": lambda: SCI(z, index),
        "grad, JAX ε": eager_grad,
        "class mask": lambda: SCI(z, index, where=mask),
        "dense labels": lambda: SCE(z, onehot),  # nothing to check
    }.items():
        reads = _Reads(monkeypatch)
        call()
        counts[name] = reads.count
        monkeypatch.undo()
    assert counts == {"plain": 1, "grad, JAX ε": 2, "class mask": 3, "dense labels": 0}


# ---------------------------------------------------------------- memory


def _temp_bytes(loss, shape, dtype):
    z = jax.ShapeDtypeStruct(shape, dtype)
    y = jax.ShapeDtypeStruct(shape[:1], jnp.int32)
    compiled = jax.jit(jax.value_and_grad(loss)).lower(z, y).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("this backend reports no memory analysis")
    return analysis.temp_size_in_bytes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_compiled_step_memory_against_optax(dtype):
    """Temporary memory of jit(value_and_grad) at 512 × 8192 (compiled, never run), in units
    of one N×V array of the logits' dtype (docs/jax.md records the numbers). float32: the
    gradient is the only N×V buffer, no temporaries. bfloat16: float32 work arrays, about 4
    units on XLA:CPU (its reductions read materialised float32 inputs), about half optax's."""
    n, v = 512, 8192
    unit = n * v * jnp.dtype(dtype).itemsize

    def ours(z, y):
        return SCI(z, y, label_smoothing=0.1).astype(jnp.float32).mean()

    def theirs(z, y):
        q = optax.smooth_labels(jax.nn.one_hot(y, v, dtype=z.dtype), 0.1)
        return optax.softmax_cross_entropy(z, q).astype(jnp.float32).mean()

    mine = _temp_bytes(ours, (n, v), dtype) / unit
    reference = _temp_bytes(theirs, (n, v), dtype) / unit
    assert mine <= reference
    if jax.default_backend() == "cpu":
        assert mine <= (0.1 if dtype == jnp.float32 else 4.1), mine
