"""Robustness of the PyTorch adapter (issue #14): what must not be overwritten, aliased or
silently wrong.

- ``overwrite_input=True`` refuses parameters and every view of one, leaving them untouched;
- ``.grad`` never aliases the buffer saved for backward while the graph is retained, so
  in-place changes to it (``zero_``, ``clip_grad_norm_``, an optimizer) cannot corrupt a
  second backward;
- probability labels and weights that require grad, through the core (``smoothce.loss`` on
  torch tensors), get native's gradients;
- traced bad labels and ε (``torch.func`` transforms) give NaN, never a plausible number.

torch.compile cases live in tests/test_torch_compile.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import smoothce  # noqa: E402
import smoothce.torch as st  # noqa: E402

C = 5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- overwrite_input and parameters --------------------------------------------------------


@pytest.mark.parametrize(
    "view",
    [
        lambda p: p,
        lambda p: p[:],
        lambda p: p.view(4, C),
        lambda p: p.reshape(4, C),
        lambda p: p[1:],
        lambda p: p.view(2, 2, C)[0],
        lambda p: p.unsqueeze(0).squeeze(0),
    ],
    ids=["parameter", "p[:]", "view", "reshape", "slice", "view of a view", "unsqueeze-squeeze"],
)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled-core"])
def test_overwrite_input_refuses_parameters_and_their_views(view, compiled):
    param = nn.Parameter(torch.randn(4, C, generator=_gen(0)))
    before = param.detach().clone()
    logits = view(param)
    target = torch.zeros(logits.shape[0], dtype=torch.int64)
    with pytest.raises(ValueError, match="leaf tensor that requires grad"):
        # (the compiled core checks before compiling anything)
        st.cross_entropy(logits, target, overwrite_input=True, compiled=compiled)
    assert torch.equal(param.detach(), before)
    assert param.grad is None


def test_overwrite_input_accepts_a_computed_view():
    """A view of computed logits (no leaf behind it) may be overwritten."""
    layer = nn.Linear(3, 2 * C)
    x, y = torch.randn(4, 3, generator=_gen(1)), torch.randint(0, C, (4,), generator=_gen(2))
    logits = layer(x)[:, :C].contiguous()
    reference = torch.func.grad(lambda z: F.cross_entropy(z, y, label_smoothing=0.1))(
        logits.detach()
    )
    st.cross_entropy(logits, y, overwrite_input=True).backward()
    torch.testing.assert_close(logits.detach(), reference)


# --- .grad never aliases what a retained graph still needs -----------------------------------


def _mutations():
    def zero(x, opt):
        x.grad.data.zero_()

    def clip(x, opt):
        torch.nn.utils.clip_grad_norm_([x], max_norm=1e-3)

    def step(x, opt):
        opt.step()
        opt.zero_grad(set_to_none=False)  # zeroes .grad in place

    def scale(x, opt):
        x.grad.mul_(-7.0)

    return {"zero_": zero, "clip_grad_norm_": clip, "optimizer": step, "mul_": scale}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("mutation", list(_mutations()))
def test_second_backward_is_unaffected_by_changes_to_grad(mutation, reduction):
    def second_gradient(fn):
        x = nn.Parameter(torch.randn(6, C, generator=_gen(3), dtype=torch.float64))
        y = torch.tensor([0, 1, 2, -100, 4, 0])
        opt = torch.optim.SGD([x], lr=0.1, momentum=0.9, weight_decay=0.1)
        out = fn(x, y, reduction=reduction, label_smoothing=0.2)
        loss = out if reduction == "mean" else (out * torch.arange(6.0)).sum()
        loss.backward(retain_graph=True)
        _mutations()[mutation](x, opt)
        x.grad = None
        loss.backward()
        return x.grad

    torch.testing.assert_close(second_gradient(st.cross_entropy), second_gradient(F.cross_entropy))


def test_first_gradient_is_not_the_saved_buffer_when_the_graph_is_retained():
    x = torch.randn(6, C, generator=_gen(4), requires_grad=True)
    loss = st.cross_entropy(x, torch.randint(0, C, (6,), generator=_gen(5)))
    (saved,) = [t for t in loss.grad_fn.saved_tensors if t is not None and t.shape == x.shape]
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    assert first.data_ptr() != saved.data_ptr()
    first.zero_()
    (second,) = torch.autograd.grad(loss, x)
    assert second.abs().sum() > 0


# --- gradients through the core ----------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_core_loss_differentiates_probability_labels_and_weight_like_native(reduction):
    """smoothce.loss on torch tensors that require grad takes the out-of-place path, which
    torch autograd differentiates: logits, probability labels and weight, as native (whose
    weight gradient exists for probability targets)."""
    gen = _gen(6)
    shape = (3, C, 4)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    p = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64), dim=1)
    w = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    upstream = torch.rand((3, 4) if reduction == "none" else (), generator=gen).double() + 0.5
    grads = []
    for fn in (
        lambda a, b, c: smoothce.loss(a, b, 0.2, axis=1, weight=c, reduction=reduction),
        lambda a, b, c: F.cross_entropy(a, b, c, reduction=reduction, label_smoothing=0.2),
    ):
        a, b, c = (t.clone().requires_grad_(True) for t in (x, p, w))
        out = fn(a, b, c)
        grads.append((out.detach(), *torch.autograd.grad(out, (a, b, c), upstream)))
    torch.testing.assert_close(grads[0], grads[1])


def test_core_loss_differentiates_index_labels_with_a_weight_that_requires_grad():
    gen = _gen(7)
    x = torch.randn(6, C, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 1])
    w = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    a, c = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    smoothce.loss(a, y, 0.3, weight=c, reduction="sum").backward()
    # native does not differentiate weight for index targets; the reference is explicit
    b, d = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    logp = torch.log_softmax(b, dim=1)
    q = torch.full_like(logp, 0.3 / C)
    q[torch.arange(6), y] += 0.7
    (-(q * d * logp).sum()).backward()
    torch.testing.assert_close((a.grad, c.grad), (b.grad, d.grad))


# --- traced bad values are NaN --------------------------------------------------------------


def test_traced_bad_label_gives_a_nan_loss_and_gradient_row():
    """Under vmap the labels are batched tensors, which nothing reads: a bad one makes its
    example's loss and its whole gradient row NaN, never 0; the others are untouched."""
    gen = _gen(8)
    x = torch.randn(4, 1, C, generator=gen, dtype=torch.float64)  # 4 samples of (1, C)
    y = torch.tensor([[0], [7], [-3], [-100]])  # good, too large, negative, ignored

    def loss(a, b):
        return st.cross_entropy(a, b, reduction="sum")

    grads, values = torch.vmap(torch.func.grad_and_value(loss))(x, y)
    assert torch.isfinite(values[0]) and torch.isnan(values[1:3]).all() and values[3] == 0
    assert torch.isfinite(grads[0]).all() and torch.isnan(grads[1:3]).all()
    assert torch.equal(grads[3], torch.zeros_like(grads[3]))
    good = torch.func.grad(loss)(x[0], y[0])
    torch.testing.assert_close(grads[0], good)
    # the mean over a batch with a bad label is NaN, not a plausible number
    means = torch.vmap(lambda a, b: st.cross_entropy(a, b))(x.view(2, 2, C), y.view(2, 2))
    assert torch.isnan(means).all()


def test_concrete_labels_are_read_and_raise_under_torch_func():
    """Labels that are plain CPU tensors (not transformed) are read, as in eager code."""
    x = torch.randn(3, C, dtype=torch.float64)
    y = torch.tensor([0, 9, 1])
    with pytest.raises(IndexError, match="label 9 is out of range"):
        torch.func.grad(lambda a: st.cross_entropy(a, y))(x)


def test_traced_eps_outside_the_unit_interval_gives_nan():
    gen = _gen(9)
    x = torch.randn(3, C, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    eps = torch.tensor([0.2, 1.5, -0.1, 1.0], dtype=torch.float64)

    def loss(e):
        return st.cross_entropy(x, y, label_smoothing=e)

    values = torch.vmap(loss)(eps)
    grads = torch.vmap(torch.func.grad(lambda e, a: st.cross_entropy(a, y, label_smoothing=e), 1))(
        eps, x.expand(4, 3, C)
    )
    assert torch.isfinite(values[[0, 3]]).all() and torch.isnan(values[[1, 2]]).all()
    assert torch.isfinite(grads[[0, 3]]).all() and torch.isnan(grads[[1, 2]]).all()
    torch.testing.assert_close(values[0], F.cross_entropy(x, y, label_smoothing=0.2))
    with pytest.raises(ValueError, match="label_smoothing"):  # eagerly read: raises
        st.cross_entropy(x, y, label_smoothing=eps[1])
