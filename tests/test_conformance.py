"""One set of cases through the core and every adapter: the semantics live once, in core.

Each case is run through ``smoothce.loss`` on every array library and through each framework
adapter that has the case's options, and compared with the independent float64 reference
(``tests/reference.py``). Per-example values are compared (``reduction="none"``) where an
adapter only returns per-example losses; the core and the torch adapter are also compared
reduced. A case an adapter cannot express (torch has no class mask, optax-style functions
have no class weights) is skipped for that adapter only, with the reason.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np
import pytest

import smoothce
from tests.backends import to_numpy
from tests.reference import reference


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    axis: int
    integer: bool = True
    eps: float = 0.2
    weight: bool = False
    ignore: bool = False
    mask: str | None = None  # None, "class" (some classes of some rows), "row" (a whole row)
    spread: str = "all"
    reduction: str = "mean"
    extra: dict = field(default_factory=dict)


CASES = [
    Case("plain", (5, 4), -1),
    Case("class axis first", (4, 5), 0),
    Case("N-d, class axis 1", (3, 4, 2, 2), 1),
    Case("probabilities", (5, 4), -1, integer=False),
    Case("weighted, ignored, sum", (6, 4), 1, weight=True, ignore=True, reduction="sum"),
    Case("weighted mean", (3, 4, 2), 1, weight=True, ignore=True),
    Case("class mask", (5, 6), -1, mask="class"),
    Case("fully masked row", (5, 6), -1, mask="row"),
    Case("spread over the others", (5, 4), -1, spread="others", eps=0.3),
    Case("ε = 1", (5, 4), -1, eps=1.0, reduction="none"),
]


def _data(case: Case):
    rng = np.random.default_rng(len(case.name))
    logits = rng.normal(size=case.shape) * 2
    ax = case.axis % len(case.shape)
    k = case.shape[ax]
    batch = tuple(d for i, d in enumerate(case.shape) if i != ax)
    where = None
    if case.mask is not None:
        where = np.ones(case.shape, bool)
        moved = np.moveaxis(where, ax, -1)  # a view: writes land in `where`
        if case.mask == "class":
            moved[..., -2:] = False  # the last two classes are padding
        else:
            moved.reshape(-1, k)[1] = False  # example 1 has no class at all
    if case.integer:
        labels = rng.integers(0, k - (2 if case.mask == "class" else 0), size=batch)
        if case.ignore:
            labels.reshape(-1)[::3] = -100
    else:
        labels = np.moveaxis(rng.dirichlet(np.ones(k), size=batch), -1, ax)
    weight = rng.uniform(0.5, 2.0, size=k) if case.weight else None
    return logits, labels, weight, where


def _expected(case: Case, logits, labels, weight, where, reduction: str):
    kw = {"axis": case.axis, "weight": weight, "where": where, "spread": case.spread}
    if case.ignore:
        kw["ignore_index"] = -100
    if where is not None:
        # the documented rule: a row with every class masked is an absent example
        ax = case.axis % len(case.shape)
        absent = ~np.moveaxis(where, ax, -1).any(axis=-1)
        if absent.any():
            where = where | np.expand_dims(absent, ax)
            kw["where"] = where
            if case.integer:
                labels = np.where(absent, -100, labels)
                kw["ignore_index"] = -100
            else:
                labels = np.where(np.expand_dims(absent, ax), 0.0, labels)
    loss, grad = reference(logits, labels, case.eps, reduction=reduction, **kw)
    return loss, grad


def _core_kwargs(case: Case, weight, where, reduction: str) -> dict:
    kw = {"axis": case.axis, "reduction": reduction, "spread": case.spread}
    if weight is not None:
        kw["weight"] = weight
    if where is not None:
        kw["where"] = where
    if case.ignore:
        kw["ignore_index"] = -100
    return kw


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_core_on_every_library(xp, case):
    logits, labels, weight, where = _data(case)
    for reduction in {case.reduction, "none"}:
        kw = _core_kwargs(case, weight, where, reduction)
        kw = {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        loss, grad = smoothce.loss_and_grad(xp.asarray(logits), xp.asarray(labels), case.eps, **kw)
        want_loss, want_grad = _expected(case, logits, labels, weight, where, reduction)
        np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=1e-10, atol=1e-12)


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_torch_adapter(case):
    _needs("torch")
    import torch

    import smoothce.torch as st

    if case.mask is not None or case.spread != "all":
        pytest.skip("torch's cross_entropy has no class mask and spreads ε over all classes")
    if len(case.shape) > 1 and case.axis % len(case.shape) != 1:
        pytest.skip("torch's class dimension is 1")
    logits, labels, weight, where = _data(case)
    x = torch.tensor(logits, requires_grad=True)
    loss = st.cross_entropy(
        x,
        torch.tensor(labels),
        None if weight is None else torch.tensor(weight),
        ignore_index=-100,
        reduction=case.reduction,
        label_smoothing=case.eps,
    )
    loss.sum().backward()
    want_loss, want_grad = _expected(case, logits, labels, weight, where, case.reduction)
    np.testing.assert_allclose(loss.detach().numpy(), want_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jax_adapter(case):
    _needs("jax")
    import jax
    import jax.numpy as jnp

    import smoothce.jax as sj

    if case.weight or case.ignore or case.spread != "all":
        pytest.skip("optax-style functions have no weights, ignore_index or spread")
    logits, labels, weight, where = _data(case)
    fn = sj.softmax_cross_entropy_with_integer_labels if case.integer else sj.softmax_cross_entropy
    w = None if where is None else jnp.asarray(where)

    def total(z):
        return fn(z, jnp.asarray(labels), case.axis, w, label_smoothing=case.eps).sum()

    per_example = fn(
        jnp.asarray(logits), jnp.asarray(labels), case.axis, w, label_smoothing=case.eps
    )
    grad = jax.grad(total)(jnp.asarray(logits))
    want_loss, want_grad = _expected(case, logits, labels, weight, where, "none")
    np.testing.assert_allclose(np.asarray(per_example), want_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_tensorflow_adapter(case):
    _needs("tensorflow")
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before tensorflow)
    import tensorflow as tf

    import smoothce.tensorflow as stf

    if case.weight or case.ignore or case.mask or case.spread != "all":
        pytest.skip("tf.nn-style functions have no weights, ignore_index, mask or spread")
    if case.integer and case.axis % len(case.shape) != len(case.shape) - 1:
        pytest.skip("the sparse tf.nn function takes the classes last")
    logits, labels, weight, where = _data(case)
    z, y = tf.constant(logits), tf.constant(labels)
    with tf.GradientTape() as tape:
        tape.watch(z)
        if case.integer:
            per_example = stf.sparse_softmax_cross_entropy_with_logits(
                y, z, label_smoothing=case.eps
            )
        else:
            per_example = stf.softmax_cross_entropy_with_logits(
                y, z, case.axis, label_smoothing=case.eps
            )
        total = tf.reduce_sum(per_example)
    want_loss, want_grad = _expected(case, logits, labels, weight, where, "none")
    np.testing.assert_allclose(per_example.numpy(), want_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tape.gradient(total, z).numpy(), want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_keras_adapter(case):
    _needs("keras")
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before tensorflow)
    import keras

    import smoothce.keras as sk

    if keras.backend.backend() != "tensorflow":
        pytest.skip("in-process Keras runs its default TensorFlow backend here")
    if case.weight or case.mask or case.spread != "all":
        pytest.skip("Keras's losses have no class weights, class mask or spread")
    logits, labels, weight, where = _data(case)
    if case.integer:
        per_example = sk.sparse_categorical_crossentropy(
            labels,
            logits,
            True,
            -100 if case.ignore else None,
            case.axis,
            label_smoothing=case.eps,
        )
    else:
        per_example = sk.categorical_crossentropy(labels, logits, True, case.eps, case.axis)
    want_loss, _ = _expected(case, logits, labels, weight, where, "none")
    np.testing.assert_allclose(np.asarray(per_example), want_loss, rtol=1e-6, atol=1e-7)
