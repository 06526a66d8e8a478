"""The fused, chunked linear + cross-entropy against the float64 reference on the full logits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import smoothce
from tests.backends import get, to_numpy
from tests.reference import reference

N, H, V = 13, 6, 9

COMBINATIONS = list(
    itertools.product(
        (0.0, 0.2),  # ε
        ((0.0, None), (1e-2, 3.0)),  # (z_loss, softcap)
        ("mean", "sum", "none"),
        (True, False),  # integer labels
        (4, None),  # chunk size: 4 does not divide 13; None: one chunk
    )
)


def _problem(rng, integer, batch=(N,)):
    hidden = rng.normal(size=(*batch, H))
    w = rng.normal(size=(V, H))
    b = rng.normal(size=V)
    if integer:
        labels = rng.integers(0, V, size=batch)
        labels.reshape(-1)[::4] = -100
    else:
        labels = rng.dirichlet(np.ones(V), size=batch)
    return hidden, w, b, labels


@pytest.mark.parametrize(("eps", "terms", "reduction", "integer", "chunk"), COMBINATIONS)
def test_matches_reference(xp, rng, eps, terms, reduction, integer, chunk):
    hidden, w, b, labels = _problem(rng, integer)
    weight = rng.uniform(0.5, 2.0, size=V)
    z_loss, softcap = terms
    kw = {"reduction": reduction, "z_loss": z_loss, "softcap": softcap}
    if integer:
        kw["ignore_index"] = -100
    value, (d_h, d_w, d_b) = smoothce.linear_loss_and_grads(
        xp.asarray(hidden),
        xp.asarray(w),
        xp.asarray(labels),
        eps,
        linear_bias=xp.asarray(b),
        weight=xp.asarray(weight),
        chunk_size=chunk,
        **kw,
    )
    want, g = reference(hidden @ w.T + b, labels, eps, weight=weight, **kw)
    np.testing.assert_allclose(to_numpy(value), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(d_h), g @ w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_numpy(d_w), g.T @ hidden, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_numpy(d_b), g.sum(axis=0), rtol=1e-9, atol=1e-12)
    alone = smoothce.linear_loss(
        xp.asarray(hidden), xp.asarray(w), xp.asarray(labels), eps, linear_bias=xp.asarray(b),
        weight=xp.asarray(weight), chunk_size=chunk, **kw,
    )  # fmt: skip
    np.testing.assert_allclose(to_numpy(alone), to_numpy(value), rtol=1e-12)


def test_batch_shape_without_bias(xp, rng):
    hidden, w, _, labels = _problem(rng, True, batch=(3, 5))
    value, (d_h, d_w, d_b) = smoothce.linear_loss_and_grads(
        xp.asarray(hidden), xp.asarray(w), xp.asarray(labels), 0.1, ignore_index=-100,
        chunk_size=2,
    )  # fmt: skip
    want, g = reference(hidden @ w.T, labels, 0.1, ignore_index=-100)
    assert d_b is None and tuple(d_h.shape) == (3, 5, H)
    np.testing.assert_allclose(to_numpy(value), want, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(d_h), g @ w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        to_numpy(d_w), g.reshape(-1, V).T @ hidden.reshape(-1, H), rtol=1e-9, atol=1e-12
    )


def test_lse_from_the_same_pass(rng):
    hidden, w, b, labels = _problem(rng, True)
    _, lse = smoothce.linear_loss(hidden, w, labels, linear_bias=b, ignore_index=-100,
                                  chunk_size=3, return_lse=True)  # fmt: skip
    z = hidden @ w.T + b
    want = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    np.testing.assert_allclose(lse, want, rtol=1e-12)


def test_bfloat16_weight_gradient_is_accumulated_in_float32(rng):
    """64 one-row chunks: a bfloat16 running sum of d_W would drift far beyond the final
    rounding to bfloat16, which is all that float32 accumulation leaves."""
    torch = pytest.importorskip("torch")
    n, h, v = 64, 8, 16
    hidden = torch.tensor(rng.normal(size=(n, h)) + 2.0, dtype=torch.bfloat16)
    w = torch.tensor(rng.normal(size=(v, h)) * 0.1, dtype=torch.bfloat16)
    labels = torch.tensor(rng.integers(0, v, size=n))
    value, (_, d_w, _) = smoothce.linear_loss_and_grads(
        hidden, w, labels, 0.1, reduction="sum", chunk_size=1
    )
    assert value.dtype == d_w.dtype == torch.bfloat16
    h64, w64 = hidden.double().numpy(), w.double().numpy()
    want, g = reference(h64 @ w64.T, labels.numpy(), 0.1, reduction="sum")
    exact = g.T @ h64
    scale = np.abs(exact).max()
    ours = np.abs(d_w.double().numpy() - exact).max() / scale
    # the same per-chunk products summed in bfloat16, for contrast
    running = torch.zeros(v, h, dtype=torch.bfloat16)
    for i in range(n):
        running += torch.tensor(np.outer(g[i], h64[i]), dtype=torch.bfloat16)
    naive = np.abs(running.double().numpy() - exact).max() / scale
    assert ours <= 2.0**-8  # bfloat16's rounding of the final value
    assert naive > 2 * ours
    np.testing.assert_allclose(float(value), want, rtol=1e-2)


def test_bad_input_is_named():
    hidden, w = np.zeros((4, 3)), np.zeros((5, 3))
    with pytest.raises(ValueError, match="H = 3"):
        smoothce.linear_loss(np.zeros((4, 2)), w, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"linear_bias must have shape \(5,\)"):
        smoothce.linear_loss(hidden, w, np.zeros(4, dtype=int), linear_bias=np.zeros(4))
    with pytest.raises(ValueError, match="fit neither form"):
        smoothce.linear_loss(hidden, w, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="chunk_size"):
        smoothce.linear_loss(hidden, w, np.zeros(4, dtype=int), chunk_size=0)
    with pytest.raises(ValueError, match="label 5 is out of range"):
        smoothce.linear_loss(hidden, w, np.array([0, 1, 5, 2]))


def test_uses_in_place_chunks_on_numpy(monkeypatch, rng):
    """Several cache-sized blocks per chunk on the eager in-place path give the same numbers."""
    from smoothce._backends.numpy import NumPyInPlace

    monkeypatch.setattr(NumPyInPlace, "block_elements", 16)
    hidden, w, b, labels = _problem(rng, True)
    value, (d_h, _, _) = smoothce.linear_loss_and_grads(
        hidden, w, labels, 0.1, linear_bias=b, ignore_index=-100, chunk_size=5
    )
    want, g = reference(hidden @ w.T + b, labels, 0.1, ignore_index=-100)
    np.testing.assert_allclose(value, want, rtol=1e-10)
    np.testing.assert_allclose(d_h, g @ w, rtol=1e-9, atol=1e-12)
    assert get("numpy").name == "numpy"


class _OneShard:
    """The reducer of a single shard holding every class: the sharded code path (late "mean"
    denominator, combined sums) must give exactly the unsharded results."""

    def max(self, x):
        return x

    def sum(self, x):
        return x

    def offset(self, k):
        return 0

    def classes(self, k):
        return k


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sharded_path_with_class_weights_equals_unsharded(rng, reduction):
    from smoothce.internal import LossSpec, evaluate, evaluate_linear

    h, w = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    labels = np.array([0, 1, 2, -100, 4, 1])
    spec = LossSpec.build(
        0.1, weight=rng.uniform(0.5, 2.0, size=5), ignore_index=-100, reduction=reduction
    )
    sharded = spec.replace(shard=_OneShard())
    for want, got in (
        (evaluate_linear(spec, h, w, labels, grad=True, chunk_size=4),
         evaluate_linear(sharded, h, w, labels, grad=True, chunk_size=4)),
        (evaluate(spec, h @ w.T, labels, grad=True, target_mass=True),
         evaluate(sharded, h @ w.T, labels, grad=True, target_mass=True)),
    ):  # fmt: skip
        for a, b in zip(want, got, strict=True):
            if a is None:
                assert b is None
            else:
                np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
