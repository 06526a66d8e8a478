"""smoothce.jax conforms to optax: every test here runs optax on the same inputs.

The reference is optax's documented behaviour: ``softmax_cross_entropy(logits, labels, axis=-1,
where=None)`` and ``softmax_cross_entropy_with_integer_labels`` in that positional order, a
tuple ``axis`` flattened into one class axis (integer labels are flat indices into it), a
``where`` with fewer dimensions than the logits expanded at ``axis`` (a per-example mask), and
label smoothing as ``optax.smooth_labels``. Where smoothce deliberately differs, the test pins
the difference (the last section; docs/jax.md lists them). x64 is enabled by tests/conftest.py.

Each case compiles ours and optax's values and derivatives in one ``jax.jit``: eager JAX would
compile every primitive once per shape, which costs more than the one program.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from smoothce.jax import (  # noqa: E402
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

EPS = 0.15

# ---------------------------------------------------------------- data and references


def _axes(shape, axis):
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % len(shape) for a in axes)


def _to_layout(x, shape, axis):
    """An array of shape batch + (K,) (batch-major, flat classes) in the logits' layout."""
    axes = _axes(shape, axis)
    sizes = tuple(shape[a] for a in axes)
    nb = len(shape) - len(axes)
    x = x.reshape(x.shape[:nb] + sizes)
    return np.moveaxis(x, tuple(range(nb, nb + len(axes))), axes)


def _data(shape, axis, integer, where_kind, seed=0):
    """Logits, labels (integer flat indices or soft rows), dense labels, ``where`` as passed.

    The class mask keeps every label's class and masks one example completely; the
    per-example mask (the batch shape) masks the first example.
    """
    rng = np.random.default_rng(seed)
    axes = _axes(shape, axis)
    batch = tuple(d for i, d in enumerate(shape) if i not in axes)
    k = math.prod(shape[a] for a in axes)
    logits = rng.normal(size=shape) * 2.0
    index = rng.integers(0, k, size=batch)
    onehot = np.eye(k)[index]  # batch + (K,)
    if integer:
        labels, dense = index, _to_layout(onehot, shape, axis)
    else:
        soft = rng.random((*batch, k)) + 0.05
        labels = dense = _to_layout(soft / soft.sum(-1, keepdims=True), shape, axis)
    where = None
    if where_kind == "class":
        keep = (rng.random((*batch, k)) > 0.35) | (onehot > 0)
        keep[(0,) * len(batch)] = False  # one example with every class masked
        where = _to_layout(keep, shape, axis)
    elif where_kind == "example":
        where = np.ones(batch, bool)
        where[(0,) * len(batch)] = False
    return logits, labels, dense, where


def _full_mask(logits, where, axis):
    """optax's rule for a ``where`` with fewer dimensions, then broadcast to the logits."""
    if where is None:
        return None
    if where.ndim != logits.ndim:
        where = jnp.expand_dims(where, axis)
    return jnp.broadcast_to(where, logits.shape)


def optax_loss(logits, dense, eps, axis=-1, where=None):
    """optax's label smoothing: ``softmax_cross_entropy(z, smooth_labels(y, ε, where=...))``.

    A fully masked example would give K = 0 (ε/0) in smooth_labels; its loss is 0 anyway, so
    it counts all K there.
    """
    full = _full_mask(logits, where, axis)
    k_mask = None if full is None else full | ~jnp.any(full, axis=axis, keepdims=True)
    q = optax.smooth_labels(dense, eps, axis=axis, where=k_mask)
    return optax.softmax_cross_entropy(logits, q, axis, where)


def optax_integer_loss(logits, index, eps, axis=-1, where=None):
    """The same loss from optax's integer-label function (its own tuple-axis flat indices):
    (1 − ε)·CE(z, y) + ε·CE(z, uniform over the unmasked classes)."""
    full = _full_mask(logits, where, axis)
    k_mask = None if full is None else full | ~jnp.any(full, axis=axis, keepdims=True)
    uniform = optax.smooth_labels(jnp.zeros_like(logits), 1.0, axis=axis, where=k_mask)
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, index, axis, where)
    return (1 - eps) * plain + eps * optax.softmax_cross_entropy(logits, uniform, axis, where)


def optax_safe_loss(logits, dense, eps, axis=-1, where=None):
    """optax's formula with the log-probabilities of masked classes set to 0 before the
    product: optax's own derivatives with respect to labels and ε are NaN under a mask (it
    multiplies by log p = −inf and discards the product), this form's are the true ones."""
    full = _full_mask(logits, where, axis)
    if full is None:
        return optax_loss(logits, dense, eps, axis)
    k_mask = full | ~jnp.any(full, axis=axis, keepdims=True)
    q = optax.smooth_labels(dense, eps, axis=axis, where=k_mask)
    log_p = jnp.where(full, jax.nn.log_softmax(logits, axis=axis, where=full), 0.0)
    return -jnp.sum(q * log_p, axis=axis)


def ours(logits, labels, eps, axis=-1, where=None, integer=True):
    fn = softmax_cross_entropy_with_integer_labels if integer else softmax_cross_entropy
    return fn(logits, labels, axis, where, label_smoothing=eps)


def _close(actual, expected, tol):
    actual = np.asarray(jnp.asarray(actual, jnp.float64))
    expected = np.asarray(jnp.asarray(expected, jnp.float64))
    assert actual.shape == expected.shape
    assert np.all(np.isfinite(actual)), actual
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


# XLA's backend at -O0 compiles these small test programs about twice as fast, same numbers
FAST = {"xla_backend_optimization_level": 0}
jit = functools.partial(jax.jit, compiler_options=FAST)


@functools.partial(jit, static_argnames=("axis", "integer"))
def _first_order(z, y, q, where, e, cot, dz, dq, *, axis, integer):
    """Ours and optax's values, VJPs and JVPs (logits, ε, dense labels), in one program."""
    mine = lambda z, y, e: ours(z, y, e, axis, where, integer)  # noqa: E731
    ref = lambda z: optax_loss(z, q, e, axis, where)  # noqa: E731
    safe = lambda z, q, e: optax_safe_loss(z, q, e, axis, where)  # noqa: E731
    out = {}
    if integer:
        value, pull = jax.vjp(lambda z, e: mine(z, y, e), z, e)
        g_z, g_e = pull(cot)
        (s_e,) = jax.vjp(lambda e: safe(z, q, e), e)[1](cot)
        out["integer_variant"] = value, optax_integer_loss(z, y, e, axis, where)
        tangent = jax.jvp(lambda z: mine(z, y, e), (z,), (dz,))[1]
        want = jax.jvp(lambda z: safe(z, q, e), (z,), (dz,))[1]
    else:
        value, pull = jax.vjp(lambda z, e, y: mine(z, y, e), z, e, y)
        g_z, g_e, g_y = pull(cot)
        s_e, s_q = jax.vjp(lambda e, q: safe(z, q, e), e, q)[1](cot)
        out["vjp_labels"] = g_y, s_q
        # forward mode in logits and labels together
        tangent = jax.jvp(lambda z, y: mine(z, y, e), (z, y), (dz, dq))[1]
        want = jax.jvp(lambda z, q: safe(z, q, e), (z, q), (dz, dq))[1]
    ref_value, ref_pull = jax.vjp(ref, z)
    out["value"] = value, ref_value
    out["vjp_logits"] = g_z, ref_pull(cot)[0]
    out["vjp_eps"] = g_e, s_e
    out["jvp"] = tangent, want
    return out


def _check_first_order(shape, axis, integer, where_kind, dtype=jnp.float64, tol=1e-10):
    logits, labels, dense, where = _data(shape, axis, integer, where_kind)
    z = jnp.asarray(logits, dtype)
    y = jnp.asarray(labels) if integer else jnp.asarray(labels, dtype)
    q = jnp.asarray(dense, dtype)
    w = None if where is None else jnp.asarray(where)
    rng = np.random.default_rng(1)
    batch = tuple(d for i, d in enumerate(shape) if i not in _axes(shape, axis))
    cot = jnp.asarray(rng.normal(size=batch), dtype)
    dz = jnp.asarray(rng.normal(size=shape), dtype)
    dq = jnp.asarray(rng.normal(size=shape), dtype)
    out = _first_order(z, y, q, w, jnp.asarray(EPS, dtype), cot, dz, dq, axis=axis, integer=integer)
    value = out["value"][0]
    assert value.dtype == dtype and value.shape == batch
    if where_kind is not None:
        assert float(value[(0,) * len(batch)]) == 0.0  # the fully masked example
    for name, (a, b) in out.items():
        try:
            _close(a, b, tol)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
    return out


# ---------------------------------------------------------------- positional order


def _check_pairs(pairs, tol):
    """``pairs``: {name: (ours, optax's)}."""
    for name, (a, b) in pairs.items():
        try:
            _close(a, b, tol)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_positional_order_is_optax():
    """``f(z, y, 0)`` is axis=0, ``f(z, y, axis, where)`` as in optax; ε is keyword-only."""
    logits, index, dense, _ = _data((4, 6), 0, True, None)
    z, y, q = jnp.asarray(logits), jnp.asarray(index), jnp.asarray(dense)
    z3, y3, _, _ = _data((3, 2, 4), (0, 2), True, None)
    mask = jnp.asarray(np.arange(6) != 2)  # the batch shape: a per-example mask, positionally
    sci, sce = softmax_cross_entropy_with_integer_labels, softmax_cross_entropy
    opi, ope = optax.softmax_cross_entropy_with_integer_labels, optax.softmax_cross_entropy

    @jit
    def pairs(z, y, q, mask, z3, y3):
        return {
            "integer, axis 0": (sci(z, y, 0, label_smoothing=0.0), opi(z, y, 0)),
            "dense, axis 0": (sce(z, q, 0, label_smoothing=0.0), ope(z, q, 0)),
            "integer, where": (sci(z, y, 0, mask, label_smoothing=0.0), opi(z, y, 0, mask)),
            "dense, where": (sce(z, q, 0, mask, label_smoothing=0.0), ope(z, q, 0, mask)),
            "tuple": (sci(z3, y3, (0, 2), label_smoothing=0.0), opi(z3, y3, (0, 2))),
        }

    result = pairs(z, y, q, mask, jnp.asarray(z3), jnp.asarray(y3))
    _check_pairs(result, 1e-12)
    eager = sci(z, y, 0, label_smoothing=0.0)  # the same eagerly
    assert eager.shape == (6,)
    _close(eager, result["integer, axis 0"][1], 1e-12)
    for fn, labels in ((sci, y), (sce, q)):
        with pytest.raises(TypeError):
            fn(z, labels, 0, None, 0.1)  # label_smoothing is keyword-only


def test_axis_none_is_every_axis():
    logits, _, dense, _ = _data((3, 4), (0, 1), False, None)
    z, q = jnp.asarray(logits), jnp.asarray(dense)
    both = jit(lambda z, q: (sce_all(z, q), optax_loss(z, q, EPS, axis=None)))
    _check_pairs({"axis=None": both(z, q)}, 1e-12)


def sce_all(z, q):
    return softmax_cross_entropy(z, q, None, label_smoothing=EPS)


# ---------------------------------------------------------------- values and first derivatives

LAYOUTS = {
    "last": ((5, 6), -1),
    "first": ((6, 5), 0),
    "middle": ((3, 6, 2), 1),
}


@pytest.mark.parametrize("where_kind", [None, "class", "example"])
@pytest.mark.parametrize("integer", [True, False], ids=["integer", "dense"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_first_order(layout, integer, where_kind):
    shape, axis = LAYOUTS[layout]
    _check_first_order(shape, axis, integer, where_kind)


TUPLE_AXES = [((3, 4, 2, 5), (1, 2)), ((4, 3, 5), (2, 0))]


@pytest.mark.parametrize(
    ("layout", "integer", "where_kind"),
    [
        (0, True, None),
        (0, True, "class"),
        (0, True, "example"),
        (0, False, "class"),
        (1, True, "class"),
        (1, False, None),
        (1, False, "example"),
    ],
)
def test_tuple_axis(layout, integer, where_kind):
    """Several class axes in the caller's order (optax's ``axis=(2, 0)`` flattens axis 2
    major); integer labels are flat indices, checked against optax's integer function too."""
    shape, axis = TUPLE_AXES[layout]
    _check_first_order(shape, axis, integer, where_kind)


@pytest.mark.parametrize("integer", [True, False], ids=["integer", "dense"])
def test_float32(integer):
    """float32 in, float32 out (float64 is every other test's dtype)."""
    _check_first_order((5, 6), -1, integer, "class", jnp.float32, 2e-5)


@pytest.mark.parametrize("integer", [True, False], ids=["integer", "dense"])
def test_bfloat16(integer):
    """bfloat16 logits: accumulated in float32, returned in bfloat16; optax evaluates the
    same rounded logits in float32."""
    logits, labels, dense, where = _data((6, 33), -1, integer, "class")
    low = jnp.asarray(logits, jnp.bfloat16)
    wide = low.astype(jnp.float32)
    y = jnp.asarray(labels) if integer else jnp.asarray(labels, jnp.bfloat16)
    q = (jnp.asarray(dense, jnp.bfloat16) if not integer else jnp.asarray(dense)).astype(
        jnp.float32
    )
    w = jnp.asarray(where)

    @jit
    def both(low, wide, e):
        total = lambda z: ours(z, y, e, -1, w, integer).astype(jnp.float32).sum()  # noqa: E731
        ref = lambda z: optax_loss(z, q, e.astype(jnp.float32), -1, w).sum()  # noqa: E731
        return (
            ours(low, y, e, -1, w, integer),
            jax.grad(total)(low),
            optax_loss(wide, q, e.astype(jnp.float32), -1, w),
            jax.grad(ref)(wide),
        )

    value, grad, want_value, want_grad = both(low, wide, jnp.asarray(0.1, jnp.bfloat16))
    assert value.dtype == grad.dtype == jnp.bfloat16
    _close(value, want_value, 2e-2)
    _close(grad, want_grad, 1e-2)


# ---------------------------------------------------------------- higher order, vmap, jit


@pytest.mark.parametrize(
    ("shape", "axis", "integer", "where_kind"),
    [
        ((3, 4), 0, True, "class"),
        ((2, 4, 3), 1, False, "example"),
        ((2, 3, 2), (2, 0), True, "class"),
    ],
    ids=["first-integer-class", "middle-dense-example", "tuple-integer-class"],
)
def test_forward_and_reverse_mode(shape, axis, integer, where_kind):
    """jacfwd, jacrev and the Hessian of the summed loss, against optax's autodiff."""
    logits, labels, dense, where = _data(shape, axis, integer, where_kind)
    w = jnp.asarray(where)

    @jit
    def both(z, y, q):
        mine = lambda z: ours(z, y, 0.2, axis, w, integer)  # noqa: E731
        ref = lambda z: optax_loss(z, q, 0.2, axis, w)  # noqa: E731
        return [
            (d(mine)(z), d(ref)(z))
            for d in (
                jax.jacfwd,
                jax.jacrev,
                lambda f: jax.hessian(lambda z: f(z).sum()),  # jacfwd over jacrev
            )
        ]

    y = jnp.asarray(labels)
    for got, want in both(jnp.asarray(logits), y, jnp.asarray(dense)):
        _close(got, want, 1e-10)
    assert np.abs(np.asarray(got)).max() > 1e-3  # a real Hessian, not zeros


def test_vmap_and_jit():
    """vmap over a batch axis (leading or not), over ε, and with tuple class axes, under jit."""
    logits, labels, dense, where = _data((4, 3, 5), (1, 2), True, "class")
    z, y, q, w = map(jnp.asarray, (logits, labels, dense, where))
    fn = softmax_cross_entropy_with_integer_labels

    @jit
    def both(z, y, q, w, eps):
        # one example at a time: the class axes are (0, 1) of each (3, 5) slice
        per_row = jax.vmap(lambda z, y, w: fn(z, y, (0, 1), w, label_smoothing=EPS))(z, y, w)
        grads = jax.vmap(jax.grad(lambda z, y, w: fn(z, y, (0, 1), w, label_smoothing=EPS)))(
            z, y, w
        )
        moved = jax.vmap(lambda z, y: fn(z, y, (0, 1), label_smoothing=EPS), in_axes=(2, 0))(
            jnp.moveaxis(z, 0, 2), y
        )
        per_eps = jax.vmap(lambda z, y, e: fn(z, y, (0, 1), label_smoothing=e))(z, y, eps)
        d_eps = jax.vmap(jax.grad(lambda e, z, y: fn(z, y, (0, 1), label_smoothing=e)))(eps, z, y)
        ref = lambda z, e: optax_loss(z, q, e, (1, 2), w)  # noqa: E731
        ref_eps = jax.vmap(lambda z, q, e: optax_loss(z, q, e, (0, 1)))
        return {
            "per_row": (per_row, ref(z, EPS)),
            "grads": (grads, jax.grad(lambda z: ref(z, EPS).sum())(z)),
            "moved": (moved, optax_loss(z, q, EPS, (1, 2))),
            "per_eps": (per_eps, ref_eps(z, q, eps)),
            "d_eps": (
                d_eps,
                jax.vmap(jax.grad(lambda e, z, q: optax_loss(z, q, e, (0, 1))))(eps, z, q),
            ),
        }

    for name, (a, b) in both(z, y, q, w, jnp.linspace(0.0, 0.9, 4)).items():
        try:
            _close(a, b, 1e-10)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


# ---------------------------------------------------------------- deliberate differences


def test_difference_default_smoothing_is_0_1():
    logits, index, dense, _ = _data((4, 6), -1, True, None)
    z, y, q = jnp.asarray(logits), jnp.asarray(index), jnp.asarray(dense)

    @jit
    def pairs(z, y, q):
        smoothed = optax_loss(z, q, 0.1)
        return {
            "integer": (softmax_cross_entropy_with_integer_labels(z, y), smoothed),
            "dense": (softmax_cross_entropy(z, q), smoothed),
            "optax's default": (optax.softmax_cross_entropy(z, q), optax_loss(z, q, 0.0)),
        }

    result = pairs(z, y, q)
    _check_pairs(result, 1e-12)
    assert not np.allclose(result["integer"][0], result["optax's default"][0])


def test_difference_label_on_a_masked_class():
    """optax gives a finite number (lse over the kept classes minus the masked logit); we raise
    eagerly and give NaN for that example under jit."""
    logits, index, _, _ = _data((4, 6), -1, True, None)
    z, y = jnp.asarray(logits), jnp.asarray(index)
    where = jnp.ones((4, 6), bool).at[1, index[1]].set(False)
    fn = softmax_cross_entropy_with_integer_labels
    with pytest.raises(ValueError, match="masks out"):
        fn(z, y, -1, where)

    @jit
    def both(z, y, w):
        theirs = optax.softmax_cross_entropy_with_integer_labels(z, y, -1, w)
        return fn(z, y, -1, w), theirs, optax_loss(z, jax.nn.one_hot(y, 6), 0.1, -1, w)

    value, theirs, smoothed = both(z, y, where)
    assert np.all(np.isfinite(theirs))
    assert np.isnan(value[1])
    others = np.array([0, 2, 3])
    _close(value[others], smoothed[others], 1e-12)


@pytest.mark.parametrize("bad", [6, -1])
def test_difference_out_of_range_labels(bad):
    """optax gives NaN for a label ≥ K and silently wraps −1 to the last class; we raise
    eagerly (an error that is both ValueError and IndexError) and give NaN under jit."""
    logits, index, _, _ = _data((4, 6), -1, True, None)
    z = jnp.asarray(logits)
    y = jnp.asarray(index).at[2].set(bad)
    theirs = jit(optax.softmax_cross_entropy_with_integer_labels)(z, y)
    if bad >= 6:
        assert np.isnan(theirs[2])
    else:
        _close(theirs[2], optax.softmax_cross_entropy_with_integer_labels(z[2], 5), 1e-12)
    fn = softmax_cross_entropy_with_integer_labels
    with pytest.raises(ValueError, match=f"label {bad} is out of range") as info:
        fn(z, y, label_smoothing=0.0)
    assert isinstance(info.value, IndexError)
    value = jit(lambda z, y: fn(z, y, label_smoothing=0.0))(z, y)
    assert np.isnan(value[2]) and np.all(np.isfinite(value[np.array([0, 1, 3])]))


def test_unnormalised_probability_labels_get_the_true_derivative_as_in_optax():
    """Labels that do not sum to 1 are used as they are: ∂L/∂z = T·p − t with T = Σ t, the
    derivative of the loss as written (optax's autodiff gives the same; tf.nn's and PyTorch's
    p − t assume T = 1)."""
    rng = np.random.default_rng(4)
    z = jnp.asarray(rng.normal(size=(3, 5)))
    q = jnp.asarray(rng.random((3, 5)) * 2.0)  # rows sum to about 5

    @jit
    def pairs(z, q):
        mine = lambda z: softmax_cross_entropy(z, q, label_smoothing=EPS)  # noqa: E731
        ref = lambda z: optax_loss(z, q, EPS)  # noqa: E731
        grad = jax.grad(lambda z: mine(z).sum())(z)
        t = (1 - EPS) * q + EPS / 5
        mass = t.sum(-1, keepdims=True)
        return {
            "value": (mine(z), ref(z)),
            "grad": (grad, jax.grad(lambda z: ref(z).sum())(z)),
            "T·p − t": (grad, mass * jax.nn.softmax(z) - t),
            "T": (mass, q.sum(-1, keepdims=True) * (1 - EPS) + EPS),
        }

    result = pairs(z, q)
    _check_pairs(result, 1e-12)
    assert np.abs(np.asarray(result["T"][0]) - 1.0).min() > 0.5  # p − t would differ


@pytest.mark.parametrize("integer", [True, False], ids=["integer", "dense"])
def test_difference_label_and_eps_derivatives_under_a_mask(integer):
    """optax's derivatives with respect to ε (and dense labels) are NaN whenever a class is
    masked; ours are finite, and equal the NaN-safe form of optax's formula."""
    logits, labels, dense, where = _data((5, 6), -1, integer, "class")
    z, q, w = jnp.asarray(logits), jnp.asarray(dense), jnp.asarray(where)
    y = jnp.asarray(labels)

    @jit
    def derivatives(z, y, q, w, e):
        theirs = jax.grad(lambda e, q: optax_loss(z, q, e, -1, w).sum(), (0, 1))(e, q)
        safe = jax.grad(lambda e, q: optax_safe_loss(z, q, e, -1, w).sum(), (0, 1))(e, q)
        if integer:
            mine = jax.grad(lambda e: ours(z, y, e, -1, w, True).sum())(e), None
        else:
            mine = jax.grad(lambda e, y: ours(z, y, e, -1, w, False).sum(), (0, 1))(e, y)
        return theirs, safe, mine

    theirs, safe, mine = derivatives(z, y, q, w, jnp.asarray(EPS))
    assert np.isnan(theirs[0]) and np.isnan(np.asarray(theirs[1])).any()
    _close(mine[0], safe[0], 1e-12)
    if not integer:
        _close(mine[1], safe[1], 1e-12)


def test_difference_minus_inf_logit_without_target_mass():
    """A −inf logit where the target is 0 (ε = 0): optax.softmax_cross_entropy multiplies
    0·(−inf) and returns NaN; ours is finite, as optax.safe_softmax_cross_entropy."""
    z = jnp.asarray([[0.0, -jnp.inf, 2.0], [1.0, 0.5, -jnp.inf]])
    q = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = jnp.asarray([0, 1])

    @jit
    def all_four(z, q, y):
        return (
            optax.softmax_cross_entropy(z, q),
            optax.safe_softmax_cross_entropy(z, q),
            softmax_cross_entropy(z, q, label_smoothing=0.0),
            softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=0.0),
        )

    theirs, want, dense, integer = all_four(z, q, y)
    assert np.all(np.isnan(theirs))
    _check_pairs({"dense": (dense, want), "integer": (integer, want)}, 1e-12)


def test_difference_argument_checks():
    """optax computes something for each of these; smoothce refuses them."""
    logits, index, dense, _ = _data((4, 6), -1, True, None)
    z, y, q = jnp.asarray(logits), jnp.asarray(index), jnp.asarray(dense)
    onehot = jax.nn.one_hot(y, 6, dtype=int)

    @jit
    def theirs(z, q, onehot, e):
        return optax.softmax_cross_entropy(z, onehot), optax_loss(z, q, e)

    assert all(np.all(np.isfinite(v)) for v in theirs(z, q, onehot, 1.5))
    with pytest.raises(TypeError, match="use softmax_cross_entropy_with_integer_labels"):
        softmax_cross_entropy(z, onehot)
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 1\]"):
        softmax_cross_entropy(z, q, label_smoothing=1.5)
    traced = jit(lambda e: softmax_cross_entropy(z, q, label_smoothing=e))(1.5)
    assert np.all(np.isnan(traced))  # a traced ε cannot be checked: NaN, never a wrong number
