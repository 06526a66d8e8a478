"""smoothce.torch.linear_cross_entropy: the fused, chunked linear + cross-entropy on torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import smoothce.torch as st  # noqa: E402
from tests.reference import reference  # noqa: E402

N, H, V = 29, 8, 13


def _inputs(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=gen, dtype=dtype, requires_grad=True)
    w = torch.randn(V, H, generator=gen, dtype=dtype, requires_grad=True)
    b = torch.randn(V, generator=gen, dtype=dtype, requires_grad=True)
    y = torch.randint(0, V, (N,), generator=gen)
    y[::4] = -100
    return h, w, b, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk", [4, 100])
def test_matches_native_linear_cross_entropy(reduction, chunk):
    h, w, b, y = _inputs()
    weight = torch.rand(V, dtype=torch.float64) + 0.5
    ours = st.linear_cross_entropy(
        h, w, y, linear_bias=b, weight=weight, reduction=reduction, chunk_size=chunk
    )
    native = F.linear_cross_entropy(
        h, w, y, linear_bias=b, weight=weight, reduction=reduction, label_smoothing=0.1
    )
    upstream = torch.rand_like(native) + 0.5  # not 1: a per-example upstream for "none"
    got = torch.autograd.grad(ours, (h, w, b), upstream)
    want = torch.autograd.grad(native, (h, w, b), upstream)
    torch.testing.assert_close(ours, native)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_targets_z_loss_and_softcap_against_the_reference(reduction):
    h, w, b, _ = _inputs()
    probs = torch.softmax(torch.randn(N, V, dtype=torch.float64), dim=1)
    out = st.linear_cross_entropy(
        h, w, probs, linear_bias=b, reduction=reduction, z_loss=1e-2, softcap=3.0, chunk_size=6
    )
    total = out.sum()
    total.backward()
    logits = (h @ w.T + b).detach().numpy()
    want, g = reference(logits, probs.numpy(), 0.1, reduction=reduction, z_loss=1e-2, softcap=3.0)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(h.grad.numpy(), g @ w.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), g.T @ h.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), g.sum(0), rtol=1e-9, atol=1e-12)


def test_gradcheck():
    h, w, b, y = _inputs()
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda a, c, d, r=reduction: st.linear_cross_entropy(
                a, c, y, linear_bias=d, reduction=r, chunk_size=5, z_loss=1e-2, softcap=2.0
            ),
            (h, w, b),
        )


def test_bfloat16_is_within_rounding_of_float32():
    h, w, b, y = _inputs(torch.float32)
    exact = st.linear_cross_entropy(h, w, y, linear_bias=b, chunk_size=8)
    exact.backward()
    low = [t.detach().bfloat16().requires_grad_() for t in (h, w, b)]
    half = st.linear_cross_entropy(low[0], low[1], y, linear_bias=low[2], chunk_size=8)
    half.backward()
    assert half.dtype == low[1].grad.dtype == torch.bfloat16
    # the logits themselves are bfloat16 products: compare with float32 on those inputs
    rounded = [t.detach().float() for t in low]
    reference_value = F.cross_entropy(
        rounded[0] @ rounded[1].T + rounded[2], y, label_smoothing=0.1
    )
    torch.testing.assert_close(half.float(), reference_value, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(low[1].grad.float(), w.grad, rtol=5e-2, atol=5e-3)


def test_autocast_runs_the_linear_layer_in_bfloat16():
    h, w, b, y = _inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = st.linear_cross_entropy(h, w, y, linear_bias=b)
        native = F.cross_entropy(F.linear(h, w, b), y, label_smoothing=0.1)
    value.backward()
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    torch.testing.assert_close(value.float(), native.float(), rtol=2e-2, atol=2e-2)


def test_compiled_training_step_matches_eager():
    torch._dynamo.reset()
    h, w, b, y = _inputs(torch.float32)

    def step(a, c, d):
        return st.linear_cross_entropy(a, c, y, linear_bias=d, chunk_size=8)

    compiled = torch.compile(step)
    value = compiled(h, w, b)
    grads = torch.autograd.grad(value, (h, w, b))
    eager = step(h, w, b)
    torch.testing.assert_close(value, eager)
    for a, c in zip(grads, torch.autograd.grad(eager, (h, w, b)), strict=True):
        torch.testing.assert_close(a, c)


def test_errors_are_also_runtime_errors():
    h, w, _, y = _inputs()
    with pytest.raises(RuntimeError, match="label 20 is out of range"):
        st.linear_cross_entropy(h, w, torch.full((N,), 20))
    with pytest.raises(ValueError, match="H = 8"):
        st.linear_cross_entropy(h[:, :5], w, y)


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_terms_match_reference(integer, reduction):
    """z_loss, softcap and spread on cross_entropy and CrossEntropyLoss, against the
    independent float64 reference (classes on dimension 1, as PyTorch lays them out)."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 6, 2)) * 4
    if integer:
        labels = rng.integers(0, 6, size=(5, 2))
        labels[1, 0] = -100
    else:
        labels = rng.dirichlet(np.ones(6), size=(5, 2)).transpose(0, 2, 1)
    kw = {"reduction": reduction, "z_loss": 1e-2, "softcap": 5.0, "spread": "others"}
    want_loss, want_grad = reference(
        logits, labels, 0.2, axis=1, ignore_index=-100 if integer else None, **kw
    )
    for fn in (st.cross_entropy, lambda a, b, **k: st.CrossEntropyLoss(**k)(a, b)):
        z = torch.tensor(logits, requires_grad=True)
        loss = fn(z, torch.tensor(labels), label_smoothing=0.2, **kw)
        loss.backward(torch.ones_like(loss))
        np.testing.assert_allclose(loss.detach().numpy(), want_loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-10, atol=1e-12)
