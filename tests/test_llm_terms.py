"""z-loss and logit soft-capping in the core, on every array library, against the float64
reference written from the formulas (tests/reference.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import smoothce
from tests.backends import get, to_numpy
from tests.reference import reference

COMBINATIONS = list(
    itertools.product(
        (0.0, 0.15),  # ε
        (0.0, 1e-2),  # z_loss
        (None, 3.0),  # softcap
        ("mean", "sum", "none"),
        (True, False),  # integer labels
    )
)


def _problem(rng, integer, shape=(7, 6)):
    logits = rng.normal(size=shape) * 4
    if integer:
        labels = rng.integers(0, shape[-1], size=shape[:-1])
        labels.reshape(-1)[::3] = -100
    else:
        labels = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    return logits, labels


@pytest.mark.parametrize(("eps", "z_loss", "softcap", "reduction", "integer"), COMBINATIONS)
def test_matches_reference(xp, rng, eps, z_loss, softcap, reduction, integer):
    logits, labels = _problem(rng, integer)
    weight = rng.uniform(0.5, 2.0, size=6)
    kw = {"reduction": reduction, "z_loss": z_loss, "softcap": softcap}
    if integer:
        kw["ignore_index"] = -100
    loss, grad = smoothce.loss_and_grad(
        xp.asarray(logits), xp.asarray(labels), eps, weight=xp.asarray(weight), **kw
    )
    want_loss, want_grad = reference(logits, labels, eps, weight=weight, **kw)
    np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=1e-10, atol=1e-12)


def test_with_a_class_mask_and_the_class_axis_first(xp, rng):
    logits = rng.normal(size=(6, 5)) * 3
    labels = rng.integers(0, 4, size=5)
    where = np.ones((6, 1), bool)
    where[4:] = False  # the last two classes are padding
    kw = {"axis": 0, "where": where, "z_loss": 1e-3, "softcap": 2.0, "spread": "others"}
    loss, grad = smoothce.loss_and_grad(
        xp.asarray(logits), xp.asarray(labels), 0.2, **{**kw, "where": xp.asarray(where)}
    )
    want_loss, want_grad = reference(logits, labels, 0.2, **kw)
    np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=1e-10, atol=1e-13)
    assert np.all(to_numpy(grad)[4:] == 0)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_blocked_path_equals_reference(monkeypatch, rng, name):
    """Several row blocks (and threads): the cap's factor and the z-loss land in every block."""
    from smoothce._backends.numpy import NumPyInPlace
    from smoothce._backends.torch import TorchInPlace

    backend = get(name)
    for ops in (NumPyInPlace, TorchInPlace):
        monkeypatch.setattr(ops, "block_elements", 1 << 10)
    logits, labels = _problem(rng, True, shape=(64, 300))
    kw = {"ignore_index": -100, "z_loss": 1e-3, "softcap": 5.0}
    loss, grad = smoothce.loss_and_grad(backend.asarray(logits), backend.asarray(labels), 0.1, **kw)
    want_loss, want_grad = reference(logits, labels, 0.1, **kw)
    np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(grad), want_grad, rtol=1e-10, atol=1e-14)


def test_lse_comes_from_the_same_pass(xp, rng):
    logits, labels = _problem(rng, True)
    _, lse = smoothce.loss(
        xp.asarray(logits), xp.asarray(labels), 0.1, ignore_index=-100, reduction="none",
        softcap=4.0, return_lse=True,
    )  # fmt: skip
    capped = 4.0 * np.tanh(logits / 4.0)
    want = np.log(np.exp(capped - capped.max(-1, keepdims=True)).sum(-1)) + capped.max(-1)
    np.testing.assert_allclose(to_numpy(lse), want, rtol=1e-12)
    _, _, lse2 = smoothce.loss_and_grad(
        xp.asarray(logits), xp.asarray(labels), 0.1, ignore_index=-100, softcap=4.0,
        return_lse=True,
    )  # fmt: skip
    np.testing.assert_allclose(to_numpy(lse2), want, rtol=1e-12)


def test_large_logits_stay_finite(xp, rng):
    logits = np.where(rng.random((6, 10)) < 0.5, 1e4, -1e4) + rng.normal(size=(6, 10))
    labels = rng.integers(0, 10, size=6)
    for kw in ({"z_loss": 1e-4}, {"softcap": 30.0}, {"z_loss": 1e-4, "softcap": 30.0}):
        loss, grad = smoothce.loss_and_grad(
            xp.asarray(logits), xp.asarray(labels), 0.1, reduction="none", **kw
        )
        want_loss, _ = reference(logits, labels, 0.1, reduction="none", **kw)
        assert np.all(np.isfinite(to_numpy(grad)))
        np.testing.assert_allclose(to_numpy(loss), want_loss, rtol=1e-10)


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"z_loss": -1e-4}, ValueError, "z_loss"),
        ({"z_loss": float("nan")}, ValueError, "z_loss"),
        ({"z_loss": "1e-4"}, TypeError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"softcap": -30.0}, ValueError, "softcap"),
        ({"softcap": float("inf")}, ValueError, "softcap"),
        ({"softcap": True}, TypeError, "softcap"),
    ],
)
def test_invalid_values_raise(kw, error, message):
    with pytest.raises(error, match=message):
        smoothce.loss(np.zeros((2, 3)), np.array([0, 1]), **kw)


@pytest.mark.parametrize("kw", [{"z_loss": 1e-3}, {"softcap": 5.0}])
def test_terms_refused_with_probabilities_as_input(kw):
    from smoothce.internal import LossSpec

    with pytest.raises(ValueError, match="on logits"):
        LossSpec.build(0.1, probabilities=1e-7, **kw)
    LossSpec.build(0.1, probabilities=1e-7)  # without them: fine
