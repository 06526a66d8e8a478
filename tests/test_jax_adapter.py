"""smoothce.jax against optax: values, derivatives of every order, transforms, sharding, training.

The reference is optax's own formulation,
``optax.softmax_cross_entropy(z, optax.smooth_labels(y, ε, where=...), where=...)``, differentiated
by JAX autodiff. x64 is enabled by tests/conftest.py.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from smoothce.jax import (  # noqa: E402
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

TOL = {jnp.float64: 1e-10, jnp.float32: 2e-5}

# jit for the tests' own derivative programs: one compiled program per case instead of eager
# JAX compiling every primitive per shape; XLA's backend at -O0 compiles it twice as fast
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# (logits shape, class axis)
LAYOUTS = [((6, 7), -1), ((6, 7), 0), ((3, 7, 4), 1), ((7,), 0)]


# ---------------------------------------------------------------- helpers


def _case(shape, axis, form, where_kind, dtype, seed=0):
    """Random logits, labels (integer / one-hot / soft), their dense form, and an optax mask.

    Returns (logits, labels, dense labels, mask passed to the adapter, full-shape class mask).
    The class mask keeps every label's class and masks one whole example where possible.
    """
    rng = np.random.default_rng(seed)
    ax = axis % len(shape)
    k = shape[ax]
    batch = shape[:ax] + shape[ax + 1 :]
    logits = rng.normal(size=shape) * 2.0
    index = rng.integers(0, k, size=batch)
    onehot = np.moveaxis(np.eye(k)[index], -1, ax)
    if form == "integer":
        labels, dense = index, onehot
    elif form == "onehot":
        labels = dense = onehot
    else:
        soft = rng.random(shape) + 0.05
        labels = dense = soft / soft.sum(axis=ax, keepdims=True)

    if where_kind is None:
        where = full = None
    elif where_kind == "class":
        full = rng.random(shape) > 0.35
        full = full | (onehot > 0)  # a label never points at a masked class
        if len(batch):
            first = (0,) * len(batch)
            full[(*first[:ax], slice(None), *first[ax:])] = False  # one example fully masked
        where = full
    else:  # per-example mask of the batch shape (optax inserts the class axis)
        keep = np.ones(batch, bool)
        if len(batch):
            keep[(0,) * len(batch)] = False
        where = keep
        full = np.broadcast_to(np.expand_dims(keep, ax), shape)
    assert full is None or (~full).any()  # the mask really masks something
    cast = lambda a: None if a is None else jnp.asarray(a, dtype)  # noqa: E731
    return (
        cast(logits),
        jnp.asarray(labels) if form == "integer" else cast(labels),
        cast(dense),
        None if where is None else jnp.asarray(where),
        None if full is None else jnp.asarray(full),
    )


def _optax(logits, dense, eps, axis, full):
    """optax's label-smoothed cross-entropy; ``full`` is the class mask (or None)."""
    if full is None:
        return optax.softmax_cross_entropy(
            logits, optax.smooth_labels(dense, eps, axis=axis), axis=axis
        )
    # a fully masked row would give K = 0 (ε/0) in smooth_labels; its loss is 0 either way
    k_mask = full | ~jnp.any(full, axis=axis, keepdims=True)
    q = optax.smooth_labels(dense, eps, axis=axis, where=k_mask)
    return optax.softmax_cross_entropy(logits, q, axis=axis, where=full)


def _optax_safe(logits, dense, eps, axis, full):
    """optax's formula with log-probabilities of masked classes set to 0 before the product.

    optax multiplies the labels by log p = −inf at masked classes and drops the product
    afterwards, so its derivatives with respect to labels and ε are NaN whenever a class is
    masked. This is the same loss with that product made safe, for those derivatives.
    """
    if full is None:
        return _optax(logits, dense, eps, axis, full)
    k_mask = full | ~jnp.any(full, axis=axis, keepdims=True)
    q = optax.smooth_labels(dense, eps, axis=axis, where=k_mask)
    log_p = jnp.where(full, jax.nn.log_softmax(logits, axis=axis, where=full), 0.0)
    return -jnp.sum(q * log_p, axis=axis)


def _ours(logits, labels, eps, axis, where, form):
    fn = softmax_cross_entropy_with_integer_labels if form == "integer" else softmax_cross_entropy
    return fn(logits, labels, axis=axis, where=where, label_smoothing=eps)


def _close(actual, expected, tol):
    actual = np.asarray(jnp.asarray(actual, jnp.float64))
    expected = np.asarray(jnp.asarray(expected, jnp.float64))
    assert actual.shape == expected.shape
    assert np.all(np.isfinite(actual)), actual
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


# ---------------------------------------------------------------- values and first derivatives


def _matrix():
    """float64 over every layout, mask and label form; float32 on the common layout only."""
    cases = []
    for shape, axis in LAYOUTS:
        for where_kind in (None, "class", "example"):
            if where_kind == "example" and len(shape) == 1:
                continue  # 1-D logits have no batch to mask
            forms = ("integer", "onehot", "soft") if len(shape) == 3 else ("integer", "soft")
            cases += [(shape, axis, f, where_kind, jnp.float64) for f in forms]
            if (shape, axis) == LAYOUTS[0]:
                forms = ("integer", "onehot", "soft")
                cases += [(shape, axis, f, where_kind, jnp.float32) for f in forms]
    return cases


@pytest.mark.parametrize(("shape", "axis", "form", "where_kind", "dtype"), _matrix())
def test_matches_optax(shape, axis, form, where_kind, dtype):
    logits, labels, dense, where, full = _case(shape, axis, form, where_kind, dtype)
    tol = TOL[dtype]
    eps = 0.15
    ours = lambda z, y=labels, e=eps: _ours(z, y, e, axis, where, form)  # noqa: E731
    ref = lambda z, y=dense, e=eps: _optax(z, y, e, axis, full)  # noqa: E731

    value = ours(logits)  # eagerly: the eager path (labels and masks read on the host)
    assert value.dtype == dtype
    assert value.shape == shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    _close(value, ref(logits), tol)
    if full is not None and value.ndim:
        assert value[(0,) * value.ndim] == 0  # the fully masked example

    rng = np.random.default_rng(1)
    cotangent = jnp.asarray(rng.normal(size=value.shape), dtype)
    direction = jnp.asarray(rng.normal(size=shape), dtype)

    @jit
    def pairs(z, y, q, e, cot, dz):
        mine = lambda z, y, e: _ours(z, y, e, axis, where, form)  # noqa: E731
        theirs = lambda z, q, e: _optax(z, q, e, axis, full)  # noqa: E731
        safe = lambda z, q, e: _optax_safe(z, q, e, axis, full)  # noqa: E731
        out = {
            # reverse mode (transposed JVP) and forward mode, logits
            "vjp": (
                jax.vjp(lambda z: mine(z, y, e), z)[1](cot)[0],
                jax.vjp(lambda z: theirs(z, q, e), z)[1](cot)[0],
            ),
            "jvp": (
                jax.jvp(lambda z: mine(z, y, e), (z,), (dz,))[1],
                jax.jvp(lambda z: theirs(z, q, e), (z,), (dz,))[1],
            ),
            "label_smoothing": (
                jax.grad(lambda e: jnp.vdot(cot, mine(z, y, e)))(e),
                jax.grad(lambda e: jnp.vdot(cot, safe(z, q, e)))(e),
            ),
        }
        if form != "integer":  # probability labels are differentiable, as in optax
            out["labels vjp"] = (
                jax.vjp(lambda y: mine(z, y, e), y)[1](cot)[0],
                jax.vjp(lambda q: safe(z, q, e), q)[1](cot)[0],
            )
            out["labels jvp"] = (
                jax.jvp(lambda y: mine(z, y, e), (y,), (dz,))[1],
                jax.jvp(lambda q: safe(z, q, e), (q,), (dz,))[1],
            )
        return out

    result = pairs(logits, labels, dense, jnp.asarray(eps, dtype), cotangent, direction)
    for name, (a, b) in result.items():
        try:
            _close(a, b, tol)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_optax_label_and_eps_derivatives_are_nan_under_a_mask_but_ours_are_not():
    """Why _optax_safe exists: a fact about optax, checked so that the workaround stays honest."""
    logits, labels, dense, where, full = _case((6, 7), -1, "soft", "class", jnp.float64)
    ours = jax.grad(
        lambda e: softmax_cross_entropy(logits, labels, label_smoothing=e, where=where).sum()
    )(0.1)
    theirs = jax.grad(lambda e: _optax(logits, dense, e, -1, full).sum())(0.1)
    assert np.isnan(theirs) and np.isfinite(ours)


def test_defaults_and_drop_in_for_optax():
    logits, labels, dense, _, _ = _case((5, 9), -1, "integer", None, jnp.float64)
    _close(
        softmax_cross_entropy_with_integer_labels(logits, labels),
        softmax_cross_entropy_with_integer_labels(logits, labels, label_smoothing=0.1),
        0,
    )
    _close(
        softmax_cross_entropy_with_integer_labels(logits, labels, label_smoothing=0.0),
        optax.softmax_cross_entropy_with_integer_labels(logits, labels),
        1e-12,
    )
    _close(
        softmax_cross_entropy(logits, dense, label_smoothing=0.0),
        optax.softmax_cross_entropy(logits, dense),
        1e-12,
    )
    # NumPy inputs are accepted, as optax accepts array-likes
    _close(
        softmax_cross_entropy_with_integer_labels(np.asarray(logits), np.asarray(labels)),
        softmax_cross_entropy_with_integer_labels(logits, labels),
        0,
    )


def test_bfloat16_loosely():
    logits, labels, dense, where, full = _case((8, 33), -1, "integer", "class", jnp.float64)
    low = logits.astype(jnp.bfloat16)
    wide = low.astype(jnp.float32)  # the same rounded logits, evaluated by optax in float32

    def ours(z):
        return softmax_cross_entropy_with_integer_labels(
            z, labels, label_smoothing=0.1, where=where
        )

    ref = lambda z: _optax(z, dense.astype(jnp.float32), 0.1, -1, full)  # noqa: E731
    value = ours(low)
    assert value.dtype == jnp.bfloat16
    _close(value, ref(wide), 2e-2)
    soft = jax.nn.softmax(jnp.asarray(np.random.default_rng(3).normal(size=(8, 33))))
    soft = soft.astype(jnp.bfloat16)

    @jit
    def derivatives(low, wide, e_low, e_wide):
        def mine_eps(e):
            value = softmax_cross_entropy_with_integer_labels(
                low, labels, label_smoothing=e, where=where
            )
            return value.astype(jnp.float32).sum()

        theirs_eps = lambda e: _optax_safe(wide, dense.astype(jnp.float32), e, -1, full).sum()  # noqa: E731
        return {
            "grad": (
                jax.grad(lambda z: ours(z).astype(jnp.float32).sum())(low),
                jax.grad(lambda z: ref(z).sum())(wide),
            ),
            "label_smoothing": (jax.grad(mine_eps)(e_low), jax.grad(theirs_eps)(e_wide)),
            "dense bfloat16 labels": (
                softmax_cross_entropy(low, soft),
                _optax(wide, soft.astype(jnp.float32), 0.1, -1, None),
            ),
        }

    result = derivatives(low, wide, jnp.asarray(0.1, jnp.bfloat16), jnp.float32(0.1))
    assert result["grad"][0].dtype == jnp.bfloat16
    for name, tol in (("grad", 1e-2), ("label_smoothing", 2e-2), ("dense bfloat16 labels", 2e-2)):
        _close(*result[name], tol)


# ---------------------------------------------------------------- higher order


@pytest.mark.parametrize("where_kind", [None, "class"])
@pytest.mark.parametrize(("form", "axis"), [("integer", -1), ("integer", 0), ("soft", 0)])
def test_jacobians_and_hessians(form, axis, where_kind):
    logits, labels, dense, where, full = _case((4, 5), axis, form, where_kind, jnp.float64)

    def derivatives(f, z):
        total = lambda z: f(z).sum()  # noqa: E731
        return jax.jacfwd(f)(z), jax.jacrev(f)(z), jax.hessian(total)(z)

    # jit keeps this quick (eager mode would dispatch every op of the nested traces);
    @jax.jit
    def both(z, y, q, m, full):
        ours = lambda z: _ours(z, y, 0.2, axis, m, form)  # noqa: E731
        ref = lambda z: _optax(z, q, 0.2, axis, full)  # noqa: E731
        return derivatives(ours, z), derivatives(ref, z)

    ours_d, ref_d = both(logits, labels, dense, where, full)
    for a, b in zip(ours_d, ref_d, strict=True):
        _close(a, b, 1e-10)
    assert np.abs(np.asarray(ours_d[2])).max() > 1e-3  # a real Hessian, not zeros from a dead rule


def test_third_order():
    """Differentiating the rule's own outputs again, in forward-over-reverse-over-forward."""
    logits, labels, dense, where, full = _case((3, 4), -1, "integer", "class", jnp.float64)

    def third(f, z):
        return jax.jacfwd(jax.jacrev(jax.jacfwd(lambda z: f(z).sum())))(z)

    @jax.jit
    def both(z, y, q, m, full):
        def ours(z):
            return softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=0.2, where=m)

        ref = lambda z: _optax(z, q, 0.2, -1, full)  # noqa: E731
        return third(ours, z), third(ref, z)

    got, expected = both(logits, labels, dense, where, full)
    assert np.abs(np.asarray(got)).max() > 1e-3
    _close(got, expected, 1e-9)


@pytest.mark.parametrize("where_kind", [None, "class"])
def test_full_hessian_over_logits_labels_and_eps(where_kind):
    logits, labels, _, where, full = _case((3, 4), -1, "soft", where_kind, jnp.float64)

    def ours(z, y, e):
        return softmax_cross_entropy(z, y, label_smoothing=e, where=where).sum()

    def ref(z, y, e):
        return _optax_safe(z, y, e, -1, full).sum()

    args = (logits, labels, jnp.asarray(0.3))
    h_ours, h_ref = jit(
        lambda *a: (
            jax.hessian(ours, argnums=(0, 1, 2))(*a),
            jax.hessian(ref, argnums=(0, 1, 2))(*a),
        )
    )(*args)
    for i in range(3):
        for j in range(3):
            _close(h_ours[i][j], h_ref[i][j], 1e-10)
    assert np.abs(np.asarray(h_ours[0][2])).max() > 1e-3  # d²L/dz dε is not silently 0


def test_integer_eps_cross_derivative():
    logits, labels, dense, _, _ = _case((4, 6), -1, "integer", None, jnp.float64)

    def ours(z, e):
        return softmax_cross_entropy_with_integer_labels(z, labels, label_smoothing=e).sum()

    def ref(z, e):
        return _optax(z, dense, e, -1, None).sum()

    both = jit(lambda z, e: [jax.grad(jax.grad(f, 1))(z, e) for f in (ours, ref)])
    _close(*both(logits, jnp.asarray(0.3)), 1e-12)


# ---------------------------------------------------------------- jit, vmap, bad labels


def test_jit_matches_eager():
    logits, labels, _, where, _ = _case((6, 7), 0, "integer", "class", jnp.float64)

    def step(z, y, m, e):
        loss = lambda z, e: softmax_cross_entropy_with_integer_labels(  # noqa: E731
            z, y, label_smoothing=e, axis=0, where=m
        ).mean()
        return jax.value_and_grad(loss, argnums=(0, 1))(z, e)

    eager = step(logits, labels, where, jnp.asarray(0.1))
    jitted = jax.jit(step)(logits, labels, where, jnp.asarray(0.1))
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        _close(b, a, 1e-12)
    # a Python ε stays static under jit and still gives the same numbers
    static = jax.jit(lambda z, y: step(z, y, where, 0.1))(logits, labels)
    _close(static[0], eager[0], 1e-12)


@pytest.mark.parametrize("bad", [7, -1])
def test_out_of_range_label_nan_under_jit_error_outside(bad):
    logits, labels, _, _, _ = _case((5, 7), -1, "integer", None, jnp.float64)
    broken = labels.at[2].set(bad)
    fn = softmax_cross_entropy_with_integer_labels
    with pytest.raises(ValueError, match=f"label {bad} is out of range"):
        fn(logits, broken)
    with pytest.raises(ValueError, match="out of range"):
        jax.grad(lambda z: fn(z, broken).sum())(logits)

    total = jax.jit(lambda z, y: fn(z, y).sum())(logits, broken)
    assert np.isnan(total)  # the sum carries the NaN: never a wrong finite number
    per_example = jax.jit(fn)(logits, broken)
    good = np.arange(5) != 2
    assert np.isnan(per_example[2])
    _close(per_example[good], fn(logits, labels)[good], 1e-12)
    grad = jax.jit(jax.grad(lambda z, y: fn(z, y).sum()))(logits, broken)
    assert np.all(np.isnan(grad[2]))
    _close(grad[good], jax.grad(lambda z: fn(z, labels).sum())(logits)[good], 1e-12)


def test_label_on_masked_class():
    logits, labels, _, _, _ = _case((4, 5), -1, "integer", None, jnp.float64)
    where = jnp.ones((4, 5), bool).at[1, labels[1]].set(False)
    fn = softmax_cross_entropy_with_integer_labels
    with pytest.raises(ValueError, match="masks out"):
        fn(logits, labels, where=where)
    value = jax.jit(lambda z, y, m: fn(z, y, where=m))(logits, labels, where)
    assert np.isnan(value[1]) and np.all(np.isfinite(value[np.array([0, 2, 3])]))


def test_vmap():
    logits, labels, dense, where, _ = _case((6, 7), -1, "integer", "class", jnp.float64)
    fn = softmax_cross_entropy_with_integer_labels
    per_row = jax.vmap(lambda z, y, m: fn(z, y, where=m))(logits, labels, where)
    _close(per_row, fn(logits, labels, where=where), 1e-12)

    @jit
    def pairs(logits, labels, dense, eps):
        grads = jax.vmap(jax.grad(lambda z, y: fn(z, y)))(logits, labels)
        return {
            "grads": (grads, jax.grad(lambda z: fn(z, labels).sum())(logits)),
            # one ε per example through vmap, differentiated too
            "per-example ε": (
                jax.vmap(lambda z, y, e: fn(z, y, label_smoothing=e))(logits, labels, eps),
                jax.vmap(lambda z, q, e: _optax(z, q, e, -1, None))(logits, dense, eps),
            ),
            "d per-example ε": (
                jax.vmap(jax.grad(lambda e, z, y: fn(z, y, label_smoothing=e)))(
                    eps, logits, labels
                ),
                jax.vmap(jax.grad(lambda e, z, q: _optax(z, q, e, -1, None)))(eps, logits, dense),
            ),
        }

    for name, (a, b) in pairs(logits, labels, dense, jnp.linspace(0.0, 0.9, 6)).items():
        try:
            _close(a, b, 1e-12)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
    # vmap over a batch axis that is not the leading one, with jit on top
    moved = jax.jit(jax.vmap(lambda z, y: fn(z, y), in_axes=(1, 0)))(logits.T, labels)
    _close(moved, fn(logits, labels), 1e-12)


def test_jit_with_labels_closed_over():
    """Concrete labels captured by a jitted function: no eager check can run, the math decides."""
    logits, labels, _, _, _ = _case((4, 5), -1, "integer", None, jnp.float64)
    fn = softmax_cross_entropy_with_integer_labels
    grad = jax.jit(jax.grad(lambda z: fn(z, labels).sum()))(logits)
    _close(grad, jax.grad(lambda z: fn(z, labels).sum())(logits), 1e-12)
    broken = labels.at[1].set(9)
    value = jax.jit(lambda z: fn(z, broken))(logits)
    grad = jax.jit(jax.grad(lambda z: fn(z, broken).sum()))(logits)
    assert np.isnan(value[1]) and np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(value[np.array([0, 2, 3])]))


# ---------------------------------------------------------------- bad input


def test_bad_input_is_named():
    logits, labels, dense, _, _ = _case((4, 5), -1, "integer", None, jnp.float64)
    fn = softmax_cross_entropy_with_integer_labels
    with pytest.raises(TypeError, match="needs integer labels, got dtype float64"):
        fn(logits, dense)
    with pytest.raises(TypeError, match=r"needs floating .* got dtype int"):
        softmax_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match="fit neither form"):
        fn(logits, labels[:3])
    with pytest.raises(ValueError, match="fit neither form"):
        softmax_cross_entropy(logits, dense[:, :4])
    with pytest.raises(TypeError, match="floating dtype, got int"):
        fn(labels[:, None] * jnp.ones((1, 5), jnp.int32), labels)
    for eps in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
            fn(logits, labels, label_smoothing=eps)
        with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
            jax.jit(lambda z, y, e=eps: fn(z, y, label_smoothing=e))(
                logits, labels
            )  # static ε: checked
    with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
        fn(logits, labels, label_smoothing=jnp.asarray(1.5))
    with pytest.raises(ValueError, match=r"label_smoothing must be a scalar, got .* \(2,\)"):
        fn(logits, labels, label_smoothing=jnp.asarray([0.1, 0.2]))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fn(logits, labels, axis=2)
    with pytest.raises(TypeError, match="boolean class mask, got dtype int"):
        fn(logits, labels, where=jnp.ones((4, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"does not broadcast to logits of shape \(4, 5\)"):
        fn(logits, labels, where=jnp.ones((3, 5), bool))
    with pytest.raises(ValueError, match=r"\(1, 4, 5\) does not broadcast to logits"):
        fn(logits, labels, where=jnp.ones((1, 4, 5), bool))


def test_integer_labels_cannot_be_differentiated_and_dense_ones_are():
    logits, _, dense, _, _ = _case((4, 5), -1, "onehot", None, jnp.float64)
    index = jnp.argmax(dense, axis=-1)
    with pytest.raises(TypeError, match="integer"):
        jax.grad(lambda y: softmax_cross_entropy_with_integer_labels(logits, y).sum())(index)
    g = jax.grad(lambda y: softmax_cross_entropy(logits, y, label_smoothing=0.1).sum())(dense)
    assert np.abs(np.asarray(g)).min() > 1e-6  # −(1 − ε)·log p: nonzero everywhere


# ---------------------------------------------------------------- data parallel and training

_SHARDING_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from smoothce.jax import softmax_cross_entropy, softmax_cross_entropy_with_integer_labels

    devices = jax.devices()
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(32, 11)))
    y = jnp.asarray(rng.integers(0, 11, 32))
    q = jax.nn.softmax(jnp.asarray(rng.normal(size=(32, 11))))

    def step(z, y, q, e):
        def total(z, q, e):
            a = softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=e).mean()
            return a + softmax_cross_entropy(z, q, label_smoothing=e).mean()
        losses = softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=e)
        return losses, jax.value_and_grad(total, argnums=(0, 1, 2))(z, q, e)

    mesh = Mesh(np.array(devices), ("batch",))
    rows = NamedSharding(mesh, P("batch", None))
    sharded = jax.jit(step)(
        jax.device_put(z, rows), jax.device_put(y, NamedSharding(mesh, P("batch"))),
        jax.device_put(q, rows), jnp.asarray(0.1),
    )
    one = jax.jit(step)(*jax.device_put((z, y, q, jnp.asarray(0.1)), devices[0]))
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(one))]
    losses, (_, (g_z, g_q, g_e)) = sharded
    print(json.dumps({
        "devices": len(devices),
        "max_diff": max(diffs),
        "finite": all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(sharded)),
        "losses_devices": len(losses.sharding.device_set),
        "grad_devices": len(g_z.sharding.device_set),
        "grad_shards": sorted({s.data.shape[0] for s in g_z.addressable_shards}),
        "grad_norm": float(jnp.linalg.norm(g_z)),
        "d_eps": float(g_e),
    }))
    """
)


def test_sharded_batch_matches_single_device():
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDING_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["finite"]
    assert result["grad_devices"] == 4 and result["losses_devices"] == 4
    assert result["grad_shards"] == [8]  # each device holds its 8 rows of the gradient
    assert result["grad_norm"] > 1e-3 and result["d_eps"] != 0.0
    assert result["max_diff"] < 1e-12


def _train(loss_fn, dtype, steps=100):
    """A two-layer MLP on a fixed synthetic batch, optax Adam; returns the loss per step."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 12)), dtype)
    y = jnp.asarray(rng.integers(0, 5, 64))
    params = {
        "w1": jnp.asarray(rng.normal(size=(12, 32)) / np.sqrt(12), dtype),
        "b1": jnp.zeros(32, dtype),
        "w2": jnp.asarray(rng.normal(size=(32, 5)) / np.sqrt(32), dtype),
        "b2": jnp.zeros(5, dtype),
    }
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    def objective(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return loss_fn(h @ p["w2"] + p["b2"], y).mean()

    # the batch is a jit argument, as in a real loop
    @jax.jit
    def step(p, s, x, y):
        value, grads = jax.value_and_grad(objective)(p, x, y)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    history = []
    for _ in range(steps):
        params, state, value = step(params, state, x, y)
        history.append(float(value))
    return np.asarray(history)


@pytest.mark.parametrize(("dtype", "tol"), [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_training_loop_follows_optax(dtype, tol):
    ours = _train(
        lambda z, y: softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=0.1), dtype
    )
    ref = _train(
        lambda z, y: optax.softmax_cross_entropy(
            z, optax.smooth_labels(jax.nn.one_hot(y, 5, dtype=z.dtype), 0.1)
        ),
        dtype,
    )
    assert ours[-1] < 0.6 * ours[0]  # it trains
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)
