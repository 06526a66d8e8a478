"""smoothce.torch against torch.nn.functional.cross_entropy: values, gradients, transforms, errors.

Every comparison runs the native loss with the same arguments (label_smoothing passed
explicitly) and requires equal results within float tolerance.
"""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import smoothce.torch as st  # noqa: E402

EPS_VALUES = (0.0, 0.1, 0.37, 1.0)
C = 5


def _tol(dtype: torch.dtype) -> dict[str, float]:
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 2e-6}


def _make(layout: str, kind: str, dtype: torch.dtype, seed: int = 0):
    """Logits and targets for one layout: (C,), (N, C) or (N, C, d1, d2)."""
    gen = torch.Generator().manual_seed(seed)
    shape = {"1d": (C,), "2d": (6, C), "4d": (3, C, 2, 4)}[layout]
    x = torch.randn(shape, generator=gen, dtype=dtype) * 3
    if kind == "int":
        batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
        y = torch.randint(0, C, batch, generator=gen)
    else:
        cdim = 0 if len(shape) == 1 else 1
        y = torch.softmax(torch.randn(shape, generator=gen, dtype=dtype), dim=cdim)
    w = torch.rand(C, generator=gen, dtype=dtype) + 0.5
    return x, y, w


def _value_and_grad(fn, x, y, upstream_seed: int = 1, **kwargs):
    """The loss and d(⟨loss, g⟩)/d x for a random upstream gradient g of the loss's shape."""
    xg = x.clone().requires_grad_(True)
    out = fn(xg, y, **kwargs)
    g = (
        torch.rand(
            out.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=out.dtype
        )
        + 0.5
    )
    (grad,) = torch.autograd.grad(out, xg, grad_outputs=g)
    return out.detach(), grad


def _all_ignored_mean(y, kwargs) -> bool:
    """Every index target ignored under 'mean': the loss is 0/0 = NaN ."""
    ignore = kwargs.get("ignore_index", -100)
    return (
        kwargs.get("reduction", "mean") == "mean"
        and not y.is_floating_point()
        and bool((y == ignore).all())
    )


def _assert_matches_native(x, y, tol, **kwargs):
    eps = kwargs.pop("label_smoothing")
    ours = _value_and_grad(st.cross_entropy, x, y, label_smoothing=eps, **kwargs)
    native = _value_and_grad(F.cross_entropy, x, y, label_smoothing=eps, **kwargs)
    if _all_ignored_mean(y, kwargs):  # values only; the gradient is test_all_ignored_gradient
        ours, native = ours[:1], native[:1]
    for a, b in zip(ours, native, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, equal_nan=True, **tol)


# --- values and gradients over the argument matrix ---------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("layout", ["1d", "2d", "4d"])
def test_index_targets_match_native(layout, weighted, reduction, dtype):
    x, y, w = _make(layout, "int", dtype)
    weight = w if weighted else None
    tol = _tol(dtype)
    for eps in EPS_VALUES:
        _assert_matches_native(x, y, tol, weight=weight, reduction=reduction, label_smoothing=eps)
        # ignore_index: the default -100 on some targets, then a real class index
        y_ign = y.clone()
        y_ign.view(-1)[::3] = -100
        _assert_matches_native(
            x, y_ign, tol, weight=weight, reduction=reduction, label_smoothing=eps
        )
        _assert_matches_native(
            x, y, tol, weight=weight, reduction=reduction, ignore_index=2, label_smoothing=eps
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("layout", ["1d", "2d", "4d"])
def test_probability_targets_match_native(layout, weighted, reduction, dtype):
    x, y, w = _make(layout, "prob", dtype)
    weight = w if weighted else None
    tol = _tol(dtype)
    for eps in EPS_VALUES:
        _assert_matches_native(x, y, tol, weight=weight, reduction=reduction, label_smoothing=eps)
        # torch accepts any negative ignore_index with probability targets (and ignores it)
        _assert_matches_native(
            x, y, tol, weight=weight, reduction=reduction, ignore_index=-1, label_smoothing=eps
        )


def test_default_label_smoothing_is_0_1():
    x, y, _ = _make("2d", "int", torch.float64)
    torch.testing.assert_close(st.cross_entropy(x, y), F.cross_entropy(x, y, label_smoothing=0.1))
    assert not torch.allclose(st.cross_entropy(x, y), F.cross_entropy(x, y))


def test_uint8_targets_and_ignore_255():
    x, y, _ = _make("2d", "int", torch.float64)
    y8 = y.to(torch.uint8)
    y8[::2] = 255
    _assert_matches_native(x, y8, _tol(torch.float64), ignore_index=255, label_smoothing=0.2)
    x4, y4, _ = _make("4d", "int", torch.float64)
    with pytest.raises(RuntimeError):  # torch's K-dim path takes int64 only; so does smoothce
        F.cross_entropy(x4, y4.to(torch.uint8))
    with pytest.raises(TypeError, match=r"4-D input must be int64, got torch.uint8"):
        st.cross_entropy(x4, y4.to(torch.uint8))


def test_probability_target_dtype_promotion_like_native():
    x, y, w = _make("2d", "prob", torch.float32)
    # float32 logits with float64 targets (or weight): native computes and returns float64
    for kwargs in ({"target": y.double()}, {"target": y, "weight": w.double()}):
        target = kwargs.pop("target")
        ours, g_ours = _value_and_grad(st.cross_entropy, x, target, **kwargs)
        native, g_native = _value_and_grad(
            F.cross_entropy, x, target, label_smoothing=0.1, **kwargs
        )
        assert ours.dtype == native.dtype == torch.float64
        assert g_ours.dtype == g_native.dtype == torch.float32
        torch.testing.assert_close(ours, native)
        torch.testing.assert_close(g_ours, g_native)


def test_edge_cases_like_native():
    x, y, _ = _make("2d", "int", torch.float32)
    all_ignored = torch.full_like(y, -100)
    for reduction in ("mean", "sum", "none"):
        ours = st.cross_entropy(x, all_ignored, reduction=reduction)
        native = F.cross_entropy(x, all_ignored, reduction=reduction, label_smoothing=0.1)
        torch.testing.assert_close(ours, native, equal_nan=True)
    assert torch.isnan(st.cross_entropy(x, all_ignored))  # 0/0, as in torch
    empty = torch.empty(0, C)
    for target in (torch.empty(0, dtype=torch.int64), torch.empty(0, C)):
        assert st.cross_entropy(empty, target, reduction="sum").item() == 0.0
        assert st.cross_entropy(empty, target, reduction="none").shape == (0,)
    assert torch.isnan(st.cross_entropy(empty, torch.empty(0, dtype=torch.int64)))


def test_empty_probability_batch_mean_is_nan_like_native():
    empty, target = torch.empty(0, C), torch.empty(0, C)
    assert torch.isnan(F.cross_entropy(empty, target, label_smoothing=0.1))
    assert torch.isnan(st.cross_entropy(empty, target))


def test_all_ignored_gradient_is_zero_like_native():
    x, _, _ = _make("2d", "int", torch.float32)
    y = torch.full((x.shape[0],), -100)
    ours = _value_and_grad(st.cross_entropy, x, y)[1]
    native = _value_and_grad(F.cross_entropy, x, y, label_smoothing=0.1)[1]
    assert torch.equal(native, torch.zeros_like(x))
    torch.testing.assert_close(ours, native)


def test_non_contiguous_inputs():
    base = torch.randn(3, 2 * C, 4, 6, dtype=torch.float64)
    x = base[:, ::2].transpose(2, 3)  # (3, C, 6, 4), strided and transposed
    y = torch.randint(0, C, (3, 4, 6)).transpose(1, 2)
    assert not x.is_contiguous() and not y.is_contiguous()
    _assert_matches_native(x, y, _tol(torch.float64), reduction="none", label_smoothing=0.2)
    p = torch.softmax(torch.randn(3, 6, C, 4, dtype=torch.float64), dim=2).transpose(1, 2)
    _assert_matches_native(x, p, _tol(torch.float64), label_smoothing=0.2)
    weight = torch.rand(2 * C, dtype=torch.float64)[::2]
    _assert_matches_native(x, y, _tol(torch.float64), weight=weight, label_smoothing=0.2)


@pytest.mark.parametrize("layout", ["2d", "4d"])
def test_deterministic_algorithms_mode_gives_the_same_result(layout):
    """Under torch.use_deterministic_algorithms the label update takes scatter_add_ instead
    of a scalar scatter_ (whose CUDA kernel that mode refuses); both give the same numbers."""
    x, y, _ = _make(layout, "int", torch.float64)
    results = []
    for deterministic in (False, True):
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(deterministic)
        try:
            z = x.clone().requires_grad_()
            loss = st.cross_entropy(z, y, label_smoothing=0.2)
            loss.backward()
        finally:
            torch.use_deterministic_algorithms(previous)
        results.append((loss.detach(), z.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)
    _assert_matches_native(x, y, _tol(torch.float64), label_smoothing=0.2)


# --- autograd --------------------------------------------------------------------------


def test_backward_saves_only_the_gradient():
    """One N×C tensor is saved, the gradient; the target is kept by reference (no copy), for
    second derivatives, and nothing else exists."""
    x, y, _ = _make("4d", "int", torch.float32)
    loss = st.cross_entropy(x.requires_grad_(), y)
    saved = [t for t in loss.grad_fn.saved_tensors if t is not None]
    assert len(saved) == 2 and saved[0].shape == x.shape
    assert saved[1].data_ptr() == y.data_ptr()  # the caller's target itself


@pytest.mark.parametrize(
    ("layout", "kind", "reduction", "weighted"),
    [
        ("2d", "int", "mean", True),
        ("4d", "int", "none", False),
        ("1d", "int", "sum", False),
        ("2d", "prob", "mean", True),
        ("4d", "prob", "none", True),
    ],
)
def test_gradcheck_float64(layout, kind, reduction, weighted):
    x, y, w = _make(layout, kind, torch.float64)
    if kind == "int" and layout != "1d":
        y.view(-1)[0] = -100
    weight = w if weighted else None
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: st.cross_entropy(a, y, weight, reduction=reduction, label_smoothing=0.3), (x,)
    )


def test_double_backward_matches_native():
    """Second derivatives (create_graph, nested torch.func.grad, forward mode, Hessians) are
    native's, through the core's closed-form Hessian-vector product."""
    x, y, w = _make("2d", "int", torch.float64)
    y[0] = -100
    for kw in ({}, {"weight": w}, {"reduction": "none"}, {"reduction": "sum"}):
        grads = []
        for fn, eps in ((st.cross_entropy, 0.3), (F.cross_entropy, 0.3)):
            a = x.clone().requires_grad_(True)
            out = fn(a, y, label_smoothing=eps, **kw)
            (g,) = torch.autograd.grad(out.sum(), a, create_graph=True)
            (gg,) = torch.autograd.grad((g.square() * torch.arange(C)).sum(), a)
            grads.append((g.detach(), gg))
        torch.testing.assert_close(grads[0], grads[1])
    hess = torch.func.hessian(lambda a: st.cross_entropy(a, y, label_smoothing=0.2))(x)
    native = torch.func.hessian(lambda a: F.cross_entropy(a, y, label_smoothing=0.2))(x)
    torch.testing.assert_close(hess, native)
    jac = torch.func.jacfwd(lambda a: st.cross_entropy(a, y, reduction="none"))(x)
    torch.testing.assert_close(
        jac,
        torch.func.jacfwd(lambda a: F.cross_entropy(a, y, reduction="none", label_smoothing=0.1))(
            x
        ),
    )


def test_soft_target_requires_grad_is_differentiated_like_native():
    x, p, _ = _make("2d", "prob", torch.float32)
    p.requires_grad_(True)
    grads = []
    for fn in (st.cross_entropy, lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1)):
        a, b = x.clone().requires_grad_(True), p.detach().clone().requires_grad_(True)
        fn(a, b).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1])
    with torch.no_grad():  # nothing is differentiated, so it is fine
        native = F.cross_entropy(x, p, label_smoothing=0.1)
        torch.testing.assert_close(st.cross_entropy(x, p), native)


def test_weight_requires_grad_raises_like_native():
    x, y, w = _make("2d", "int", torch.float32)
    w.requires_grad_(True)
    with pytest.raises(RuntimeError):
        F.cross_entropy(x, y, w)
    with pytest.raises(RuntimeError, match=r"not differentiable with respect to weight"):
        st.cross_entropy(x, y, w)


def test_func_grad_matches_native():
    x, y, w = _make("4d", "int", torch.float64)
    ours = torch.func.grad(lambda a: st.cross_entropy(a, y, w))(x)
    native = torch.func.grad(lambda a: F.cross_entropy(a, y, w, label_smoothing=0.1))(x)
    torch.testing.assert_close(ours, native)
    value_ours = torch.func.grad_and_value(lambda a: st.cross_entropy(a, y, w))(x)[1]
    torch.testing.assert_close(value_ours, F.cross_entropy(x, y, w, label_smoothing=0.1))


def test_vmap_matches_native():
    gen = torch.Generator().manual_seed(3)
    xb = torch.randn(4, 6, C, 3, dtype=torch.float64, generator=gen)  # 4 samples of (6, C, 3)
    yb = torch.randint(0, C, (4, 6, 3), generator=gen)
    yb[0, 0, 0] = -100
    wb = torch.rand(4, C, dtype=torch.float64, generator=gen)
    for reduction in ("mean", "sum", "none"):

        def ours(a, b, w, red=reduction):
            return st.cross_entropy(a, b, w, reduction=red)

        def native(a, b, w, red=reduction):
            return F.cross_entropy(a, b, w, reduction=red, label_smoothing=0.1)

        torch.testing.assert_close(torch.vmap(ours)(xb, yb, wb), torch.vmap(native)(xb, yb, wb))
    # per-sample gradients, vmap over a non-leading dim, nested vmap
    torch.testing.assert_close(
        torch.vmap(torch.func.grad(lambda a, b: st.cross_entropy(a, b)))(xb, yb),
        torch.vmap(torch.func.grad(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1)))(
            xb, yb
        ),
    )
    y0 = yb[0, :, 0]
    torch.testing.assert_close(
        torch.vmap(lambda a: st.cross_entropy(a, y0), in_dims=2)(xb[0]),
        torch.vmap(lambda a: F.cross_entropy(a, y0, label_smoothing=0.1), in_dims=2)(xb[0]),
    )
    x5, y5 = xb.reshape(2, 2, 6, C, 3), yb.reshape(2, 2, 6, 3)  # 2 x 2 samples of (6, C, 3)
    torch.testing.assert_close(
        torch.vmap(torch.vmap(st.cross_entropy))(x5, y5),
        torch.vmap(torch.vmap(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1)))(x5, y5),
    )


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    x, y, w = _make("4d", "int", torch.float32)
    y.view(-1)[1] = -100

    def step(a, b):
        return st.cross_entropy(a, b, w, label_smoothing=0.2)

    compiled = torch.compile(step, fullgraph=True)
    xc, xe = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss_c, loss_e = compiled(xc, y), step(xe, y)
    loss_c.backward()
    loss_e.backward()
    torch.testing.assert_close(loss_c, loss_e)
    torch.testing.assert_close(xc.grad, xe.grad)
    torch.testing.assert_close(loss_e, F.cross_entropy(x, y, w, label_smoothing=0.2))


def test_bf16_autocast_on_cpu_follows_native():
    x, y, w = _make("2d", "int", torch.float32)
    p = torch.softmax(torch.randn(x.shape), dim=1)
    cases = [
        (x, y, None),
        (x.bfloat16(), y, None),
        (x.bfloat16(), y, w),
        (x.bfloat16(), p, None),
        (x.bfloat16(), p.bfloat16(), None),
    ]
    for logits, target, weight in cases:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, g_ours = _value_and_grad(st.cross_entropy, logits, target, weight=weight)
            native, g_native = _value_and_grad(
                F.cross_entropy, logits, target, weight=weight, label_smoothing=0.1
            )
        assert ours.dtype == native.dtype == torch.float32  # cross_entropy autocasts to float32
        assert g_ours.dtype == g_native.dtype == logits.dtype
        torch.testing.assert_close(ours, native)
        torch.testing.assert_close(g_ours, g_native)


def test_half_precision_inputs_without_autocast():
    x, y, _ = _make("2d", "int", torch.float32)
    for dtype in (torch.bfloat16, torch.float16):
        ours, g_ours = _value_and_grad(st.cross_entropy, x.to(dtype), y)
        native, g_native = _value_and_grad(F.cross_entropy, x.to(dtype), y, label_smoothing=0.1)
        assert ours.dtype == native.dtype == dtype and g_ours.dtype == dtype
        # the core accumulates in float32, so it is at least as close to the float64 value
        exact = F.cross_entropy(x.to(dtype).double(), y, label_smoothing=0.1)
        assert abs(ours.double() - exact) <= abs(native.double() - exact) + 1e-2
        torch.testing.assert_close(g_ours.float(), g_native.float(), rtol=2e-2, atol=2e-3)


# --- errors --------------------------------------------------------------------------


def test_errors():
    x, y, w = _make("2d", "int", torch.float32)
    p = torch.softmax(x, dim=1)
    with pytest.raises(ValueError, match=r"label_smoothing.*-0.1"):
        st.cross_entropy(x, y, label_smoothing=-0.1)  # torch silently treats it as 0
    with pytest.raises(ValueError, match=r"label_smoothing.*1.5"):
        st.cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing"):
        st.cross_entropy(x, y, label_smoothing=math.nan)
    with pytest.raises(ValueError, match=r"label 5 is out of range"):
        st.cross_entropy(x, torch.tensor([0, 1, 5, 1, 0, 2]))
    with pytest.raises(ValueError, match=r"label -3 is out of range"):
        st.cross_entropy(x, torch.tensor([0, 1, -3, 1, 0, 2]))
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        st.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"ignore_index=0 is not supported for probability"):
        st.cross_entropy(x, p, ignore_index=0)
    with pytest.raises(TypeError, match=r"int64 or uint8, got torch.int32"):
        st.cross_entropy(x, y.int())
    with pytest.raises(TypeError, match=r"weight dtype torch.float64 differs"):
        st.cross_entropy(x, y, w.double())
    with pytest.raises(ValueError, match=r"fit neither form"):
        st.cross_entropy(x, y[:4])
    with pytest.raises(TypeError, match=r"must be torch.Tensor"):
        st.cross_entropy(x.numpy(), y)
    # native's positional order, legacy size_average/reduce included
    torch.testing.assert_close(
        st.cross_entropy(x, y, w, None, 2, None, "sum", 0.2),
        F.cross_entropy(x, y, w, None, 2, None, "sum", 0.2),
    )


# --- the nn.Module -------------------------------------------------------------------------


def test_module_matches_native_module():
    x, y, w = _make("4d", "int", torch.float64)
    ours = st.CrossEntropyLoss(w, ignore_index=1, reduction="sum", label_smoothing=0.25)
    native = nn.CrossEntropyLoss(w, ignore_index=1, reduction="sum", label_smoothing=0.25)
    torch.testing.assert_close(ours(x, y), native(x, y))
    assert st.CrossEntropyLoss().label_smoothing == 0.1
    assert "label_smoothing=0.25" in repr(ours)


def test_module_weight_is_a_buffer():
    w = torch.rand(C)
    loss = st.CrossEntropyLoss(w)
    assert dict(loss.named_buffers())["weight"] is w
    assert list(loss.state_dict()) == list(nn.CrossEntropyLoss(w).state_dict()) == ["weight"]
    assert list(st.CrossEntropyLoss().state_dict()) == []  # None buffer, as in torch
    loss64 = copy.deepcopy(loss).to(torch.float64)
    assert loss64.weight.dtype == torch.float64
    x, y, _ = _make("2d", "int", torch.float64)
    torch.testing.assert_close(loss64(x, y), F.cross_entropy(x, y, w.double(), label_smoothing=0.1))
    fresh = st.CrossEntropyLoss(torch.zeros(C))
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(fresh.weight, w)
    # a model holding the loss moves it along
    model = nn.Sequential(nn.Linear(3, C))
    model.loss = st.CrossEntropyLoss(w)
    model.double()
    assert model.loss.weight.dtype == torch.float64


def test_module_checks_settings_when_called_as_native_does():
    bad_eps, bad_reduction = (
        st.CrossEntropyLoss(label_smoothing=-0.05),
        st.CrossEntropyLoss(reduction="batchmean"),
    )
    nn.CrossEntropyLoss(reduction="batchmean")  # native constructs it too
    x, y, _ = _make("2d", "int", torch.float32)
    with pytest.raises(ValueError, match=r"label_smoothing"):
        bad_eps(x, y)
    with pytest.raises(ValueError, match=r"reduction"):
        bad_reduction(x, y)


# --- a real training loop ----------------------------------------------------------------


def _train(loss_fn: nn.Module, model: nn.Module, data, steps: int = 100) -> list[float]:
    x, y = data
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for step in range(steps):
        batch = slice((step % 4) * 64, (step % 4 + 1) * 64)
        opt.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_loop_follows_native_trajectory():
    gen = torch.Generator().manual_seed(7)
    centers = torch.randn(C, 10, generator=gen) * 2
    y = torch.randint(0, C, (256,), generator=gen)
    x = centers[y] + torch.randn(256, 10, generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, C))
    twin = copy.deepcopy(model)
    ours = _train(st.CrossEntropyLoss(), model, (x, y))
    native = _train(nn.CrossEntropyLoss(label_smoothing=0.1), twin, (x, y))
    assert ours[-1] < 0.5 * ours[0]  # it actually trains
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(native), rtol=1e-4, atol=1e-5)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- overwrite_input


def _linear_head(seed: int = 0):
    torch.manual_seed(seed)
    layer = nn.Linear(6, 40, dtype=torch.float64)
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randint(0, 40, (32,))
    return layer, x, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_overwrite_input_gives_the_same_gradients(reduction):
    layer, x, y = _linear_head()
    expected = []
    for overwrite in (False, True):
        layer.zero_grad()
        logits = layer(x)
        loss = st.cross_entropy(logits, y, reduction=reduction, overwrite_input=overwrite)
        loss.sum().backward() if reduction == "none" else loss.backward()
        expected.append((loss.detach().clone(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for plain, overwritten in zip(expected[0], expected[1], strict=True):
        torch.testing.assert_close(overwritten, plain, rtol=0, atol=0)


def test_overwrite_input_writes_the_gradient_into_the_logits():
    layer, x, y = _linear_head()
    logits = layer(x)
    reference = torch.func.grad(lambda z: F.cross_entropy(z, y, label_smoothing=0.1))(
        logits.detach()
    )
    st.cross_entropy(logits, y, overwrite_input=True)
    torch.testing.assert_close(logits.detach(), reference)


def test_overwrite_input_refuses_a_leaf_that_requires_grad():
    z = torch.randn(4, C, requires_grad=True)
    with pytest.raises(ValueError, match="leaf tensor that requires grad"):
        st.cross_entropy(z, torch.zeros(4, dtype=torch.int64), overwrite_input=True)


def test_overwrite_input_needs_contiguous_classes():
    layer, x, _ = _linear_head()
    # (N, C, d1) stored contiguously: each example's classes are strided, not contiguous
    logits = layer(x).reshape(4, 8, 40).transpose(1, 2).contiguous()
    with pytest.raises(ValueError, match="class axis last"):
        st.cross_entropy(logits, torch.zeros(4, 8, dtype=torch.int64), overwrite_input=True)


def test_overwrite_input_is_caught_when_another_node_saved_the_logits():
    layer, x, y = _linear_head()
    logits = layer(x)
    penalty = (logits**2).mean()  # pow saves the logits for its backward
    loss = st.cross_entropy(logits, y, overwrite_input=True) + penalty
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_overwrite_input_supports_a_second_backward():
    """retain_graph: the first backward leaves the gradient buffer as it was, so the second
    one is right too (it once raised; before that, it once was silently wrong)."""
    layer, x, y = _linear_head()
    loss = st.cross_entropy(layer(x), y, overwrite_input=True)
    loss.backward(retain_graph=True)
    first = layer.weight.grad.clone()
    loss.backward()
    torch.testing.assert_close(layer.weight.grad, 2 * first)


def test_default_mode_supports_a_second_backward():
    layer, x, y = _linear_head()
    loss = st.cross_entropy(layer(x), y)
    loss.backward(retain_graph=True)
    first = layer.weight.grad.clone()
    loss.backward()
    torch.testing.assert_close(layer.weight.grad, 2 * first)
