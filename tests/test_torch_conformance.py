"""smoothce.torch against torch.nn.functional.cross_entropy, feature by documented feature.

Each test is written from what PyTorch documents for ``F.cross_entropy`` and runs the native
function on the same arguments in the same test: layouts (C,), (N, C), (N, C, d1, ..., dk),
index and probability targets, weights, ``ignore_index``, reductions, the positional order
with the legacy ``size_average``/``reduce`` flags, float16 to float64, non-contiguous tensors,
forward-mode AD, double backward, Hessians, gradients with respect to probability targets,
batched gradients and the error classes. Where smoothce deliberately differs, the test pins
the difference (docs/torch.md, "Differences from native").
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import smoothce.torch as st  # noqa: E402

C = 5
SHAPES = {"1d": (C,), "2d": (6, C), "3d": (3, C, 4), "5d": (2, C, 3, 2, 2)}
DTYPES = {
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f32": torch.float32,
    "f64": torch.float64,
}


def native(*args, **kwargs):
    """F.cross_entropy with smoothce's default ε passed explicitly."""
    if len(args) < 8:
        kwargs.setdefault("label_smoothing", 0.1)
    return F.cross_entropy(*args, **kwargs)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(shape, dtype=torch.float64, seed=0, contiguous=True):
    """Random logits; non-contiguous ones are a strided, permuted view of a larger tensor."""
    gen = _gen(seed)
    if contiguous or len(shape) == 1:
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
        if not contiguous:  # (C,): every other element
            x = (torch.randn(2 * shape[0], generator=gen, dtype=torch.float64) * 2)[::2]
        return x.to(dtype)
    big = torch.randn((*shape[::-1][:-1], 2 * shape[0]), generator=gen, dtype=torch.float64)
    x = (big * 2)[..., ::2].permute(*range(len(shape) - 1, -1, -1))  # reversed dims, strided
    assert x.shape == shape and not x.is_contiguous()
    return x.to(dtype)


def _index_target(shape, seed=1, contiguous=True):
    batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
    y = torch.randint(0, C, batch, generator=_gen(seed))
    if not contiguous and len(batch) > 1:
        y = y.transpose(0, -1).contiguous().transpose(0, -1)
        assert not y.is_contiguous()
    return y


def _prob_target(shape, dtype=torch.float64, seed=2, contiguous=True):
    dim = 0 if len(shape) == 1 else 1
    p = torch.softmax(torch.randn(shape, generator=_gen(seed), dtype=torch.float64), dim=dim)
    if not contiguous and len(shape) > 1:
        p = p.transpose(0, -1).contiguous().transpose(0, -1)
    return p.to(dtype)


def _tolerance(dtype):
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    if dtype == torch.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    # smoothce accumulates 16-bit inputs in float32, native in 16 bits: one 16-bit rounding
    return {"rtol": 2e-2, "atol": 4e-3}


def _value_and_grads(fn, x, target, *args, upstream_seed=3, **kwargs):
    """The loss and d⟨loss, g⟩/d(input, target) for a random upstream gradient g."""
    x = x.detach().requires_grad_(True)
    wants_target = target.is_floating_point()
    if wants_target:
        target = target.detach().requires_grad_(True)
    out = fn(x, target, *args, **kwargs)
    g = torch.rand(out.shape, generator=_gen(upstream_seed), dtype=torch.float64) + 0.5
    inputs = (x, target) if wants_target else (x,)
    grads = torch.autograd.grad(out, inputs, grad_outputs=g.to(out.dtype))
    return (out.detach(), *grads)


def _assert_same(ours, theirs, dtype):
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, equal_nan=True, **_tolerance(dtype))


# --- layouts, dtypes, targets, weights, reductions --------------------------------------------


@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("layout", list(SHAPES))
def test_every_layout_and_dtype(layout, dtype, contiguous):
    """Index and probability targets, with and without weights, every reduction."""
    shape = SHAPES[layout]
    x = _logits(shape, dtype, contiguous=contiguous)
    y = _index_target(shape, contiguous=contiguous)
    p = _prob_target(shape, dtype, contiguous=contiguous)
    w = (torch.rand(2 * C, generator=_gen(4), dtype=torch.float64) + 0.5)[::2].to(dtype)
    for target, weight, reduction in (
        (y, None, "mean"),
        (y, w, "none"),
        (p, None, "sum"),
        (p, w, "mean"),
        (p, w, "none"),
    ):
        kwargs = {"weight": weight, "reduction": reduction, "label_smoothing": 0.2}
        ours = _value_and_grads(st.cross_entropy, x, target, **kwargs)
        theirs = _value_and_grads(F.cross_entropy, x, target, **kwargs)
        _assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("layout", ["2d", "5d"])
def test_ignore_index_and_reductions(layout):
    shape = SHAPES[layout]
    x, y = _logits(shape), _index_target(shape)
    w = torch.rand(C, generator=_gen(5), dtype=torch.float64) + 0.5
    y_default = y.clone()
    y_default.view(-1)[::3] = -100
    for target, ignore in ((y_default, -100), (y, 2), (y, -7)):
        for reduction in ("mean", "sum", "none"):
            for weight in (None, w):
                kwargs = {"weight": weight, "ignore_index": ignore, "reduction": reduction}
                _assert_same(
                    _value_and_grads(st.cross_entropy, x, target, label_smoothing=0.3, **kwargs),
                    _value_and_grads(F.cross_entropy, x, target, label_smoothing=0.3, **kwargs),
                    torch.float64,
                )


def test_positional_calls_in_native_order():
    """(input, target, weight, size_average, ignore_index, reduce, reduction,
    label_smoothing), the legacy flags mapped onto reduction as native maps them."""
    x, y = _logits((6, C)), _index_target((6, C))
    y[1] = 3
    w = torch.rand(C, generator=_gen(6), dtype=torch.float64)
    calls = [
        (w, None, 3, None, "sum", 0.2),
        (w, None, -100, None, "none", 0.0),
        (None, False, -100, None, "mean", 0.3),  # size_average=False: sum
        (w, True, 3, False, "mean", 0.3),  # reduce=False: none
        (None, None, -100, True, "none", 0.1),  # reduce=True, size_average default: mean
    ]
    for args in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = st.cross_entropy(x, y, *args)
            theirs = F.cross_entropy(x, y, *args)
        torch.testing.assert_close(ours, theirs)
        legacy = args[1] is not None or args[3] is not None
        assert len(caught) == 2 * legacy  # both warn about the legacy flags, or neither
    # the module takes the same leading arguments in the same order
    module = st.CrossEntropyLoss(w, None, 3, None, "sum", 0.2)
    torch.testing.assert_close(
        module(x, y), torch.nn.CrossEntropyLoss(w, None, 3, None, "sum", 0.2)(x, y)
    )


# --- autograd beyond the first derivative ------------------------------------------------------


def _functions(target, **kwargs):
    def ours(a, b=target):
        return st.cross_entropy(a, b, **kwargs)

    def theirs(a, b=target):
        return native(a, b, **kwargs)

    return ours, theirs


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_forward_mode_ad(kind):
    """torch.func.jvp, jacfwd and torch.autograd.forward_ad, also along the target."""
    shape = (4, C, 3)
    x = _logits(shape)
    target = _index_target(shape) if kind == "index" else _prob_target(shape)
    if kind == "index":
        target[0, 0] = -100
    w = torch.rand(C, generator=_gen(7), dtype=torch.float64) + 0.5
    ours, theirs = _functions(target, weight=w, reduction="none")
    tx = torch.randn(shape, generator=_gen(8), dtype=torch.float64)
    torch.testing.assert_close(
        torch.func.jvp(ours, (x,), (tx,)), torch.func.jvp(theirs, (x,), (tx,))
    )
    torch.testing.assert_close(torch.func.jacfwd(ours)(x), torch.func.jacfwd(theirs)(x))
    if kind == "prob":
        ty = torch.randn(shape, generator=_gen(9), dtype=torch.float64)
        args, tangents = (x, target), (tx, ty)
        torch.testing.assert_close(
            torch.func.jvp(lambda a, b: ours(a, b), args, tangents),
            torch.func.jvp(lambda a, b: theirs(a, b), args, tangents),
        )
        torch.testing.assert_close(
            torch.func.jacfwd(ours, argnums=1)(x, target),
            torch.func.jacfwd(theirs, argnums=1)(x, target),
        )
    fwad = torch.autograd.forward_ad
    results = []
    for fn in (ours, theirs):
        with fwad.dual_level():
            dual_target = fwad.make_dual(target, ty) if kind == "prob" else target
            out = fn(fwad.make_dual(x, tx), dual_target)
            results.append(fwad.unpack_dual(out))
    torch.testing.assert_close(results[0].primal, results[1].primal)
    torch.testing.assert_close(results[0].tangent, results[1].tangent)


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_double_backward(kind):
    """gradgradcheck passes, and the second derivatives (create_graph) are native's, with
    respect to the input and to a probability target that requires grad."""
    shape = (3, C, 2)
    x = _logits(shape).requires_grad_(True)
    w = torch.rand(C, generator=_gen(10), dtype=torch.float64) + 0.5
    if kind == "index":
        y = _index_target(shape)
        y[0, 1] = -100
        inputs = (x,)

        def ours(a):
            return st.cross_entropy(a, y, w, reduction="none", label_smoothing=0.3)

        def theirs(a):
            return F.cross_entropy(a, y, w, reduction="none", label_smoothing=0.3)
    else:
        p = _prob_target(shape).requires_grad_(True)
        inputs = (x, p)

        def ours(a, b):
            return st.cross_entropy(a, b, w, label_smoothing=0.3)

        def theirs(a, b):
            return F.cross_entropy(a, b, w, label_smoothing=0.3)

    assert torch.autograd.gradgradcheck(ours, inputs)
    second = []
    for fn in (ours, theirs):
        out = fn(*inputs)
        firsts = torch.autograd.grad(out.sum(), inputs, create_graph=True)
        penalty = sum((g.square() * torch.arange(1.0, C + 1).view(1, C, 1)).sum() for g in firsts)
        second.append(torch.autograd.grad(penalty, inputs))
    torch.testing.assert_close(second[0], second[1])


def test_hessian():
    """torch.func.hessian, over the input and over (input, probability target)."""
    shape = (3, C)
    x, y, p = _logits(shape), _index_target(shape), _prob_target(shape)
    y[1] = -100
    ours, theirs = _functions(y, label_smoothing=0.25)
    torch.testing.assert_close(torch.func.hessian(ours)(x), torch.func.hessian(theirs)(x))
    ours, theirs = _functions(p, reduction="sum")
    h_ours = torch.func.hessian(ours, argnums=(0, 1))(x, p)
    h_theirs = torch.func.hessian(theirs, argnums=(0, 1))(x, p)
    torch.testing.assert_close(h_ours, h_theirs)


def test_probability_target_gradients():
    """Gradients with respect to a probability target: backward, torch.func.grad and
    per-sample through vmap, as native computes them."""
    shape = (4, C, 3)
    x, p = _logits(shape), _prob_target(shape)
    w = torch.rand(C, generator=_gen(11), dtype=torch.float64) + 0.5
    _assert_same(
        _value_and_grads(st.cross_entropy, x, p, w, reduction="none"),
        _value_and_grads(native, x, p, w, reduction="none"),
        torch.float64,
    )
    ours, theirs = _functions(p, weight=w)
    for argnums in (1, (0, 1)):
        torch.testing.assert_close(
            torch.func.grad(ours, argnums=argnums)(x, p),
            torch.func.grad(theirs, argnums=argnums)(x, p),
        )
    samples = (x[:, None], p[:, None])  # 4 samples of shape (1, C, 3)
    torch.testing.assert_close(
        torch.vmap(torch.func.grad(ours, argnums=1))(*samples),
        torch.vmap(torch.func.grad(theirs, argnums=1))(*samples),
    )


def test_weight_gradient_as_native():
    """Native differentiates weight for probability targets (smoothce: through the core's
    array ops) and refuses it for class indices (both raise a RuntimeError)."""
    shape = (3, C, 2)
    x, p, y = _logits(shape), _prob_target(shape), _index_target(shape)
    w = torch.rand(C, generator=_gen(13), dtype=torch.float64) + 0.5
    grads = []
    for fn in (st.cross_entropy, native):
        a, b, c = (t.clone().requires_grad_(True) for t in (x, p, w))
        out = fn(a, b, c, reduction="none")
        grads.append((out, *torch.autograd.grad(out.sum(), (a, b, c))))
    torch.testing.assert_close(grads[0], grads[1])
    for fn in (st.cross_entropy, native):
        with pytest.raises(RuntimeError):
            fn(x, y, w.clone().requires_grad_(True))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_batched_gradients(reduction):
    """autograd.grad(..., is_grads_batched=True) and vmap over the upstream gradient read no
    value of the batched upstream gradient."""
    shape = (4, C, 3)
    x, y = _logits(shape), _index_target(shape)
    out_shape = () if reduction == "mean" else (4, 3)
    v = torch.randn((5, *out_shape), generator=_gen(12), dtype=torch.float64)
    results = []
    for fn in (st.cross_entropy, native):
        a = x.clone().requires_grad_(True)
        out = fn(a, y, reduction=reduction)
        (batched,) = torch.autograd.grad(out, a, v, is_grads_batched=True)
        _, vjp = torch.func.vjp(lambda z, f=fn: f(z, y, reduction=reduction), x)
        results.append((batched, torch.vmap(vjp)(v)[0]))
    torch.testing.assert_close(results[0], results[1])
    assert results[0][0].shape == (5, *shape)


# --- errors --------------------------------------------------------------------------------


def _error(fn):
    try:
        fn()
    except Exception as err:  # the class is what is compared
        return err
    return None


ERROR_CASES = {
    "target out of range": lambda f, x: f(x, torch.tensor([0, 1, 9, 2, 0, 1])),
    "negative target": lambda f, x: f(x, torch.tensor([0, 1, -3, 2, 0, 1])),
    "unknown reduction": lambda f, x: f(x, torch.zeros(6, dtype=torch.int64), reduction="avg"),
    "eps above 1": lambda f, x: f(x, torch.zeros(6, dtype=torch.int64), label_smoothing=1.5),
    "int32 target": lambda f, x: f(x, torch.zeros(6, dtype=torch.int32)),
    "bool target": lambda f, x: f(x, torch.zeros(6, dtype=torch.bool)),
    "batch mismatch": lambda f, x: f(x, torch.zeros(5, dtype=torch.int64)),
    "weight shape": lambda f, x: f(x, torch.zeros(6, dtype=torch.int64), torch.rand(C - 1)),
    "weight dtype": lambda f, x: f(
        x, torch.zeros(6, dtype=torch.int64), torch.rand(C, dtype=torch.float64)
    ),
    "probabilities with ignore_index": lambda f, x: f(x, torch.rand(6, C), ignore_index=1),
    "probabilities of another shape": lambda f, x: f(x, torch.rand(6, 1)),
    "spatial mismatch": lambda f, x: f(
        x.view(2, 3, C).transpose(1, 2), torch.zeros(2, 4, dtype=torch.int64)
    ),
    "uint8 target of an N-D input": lambda f, x: f(
        x.view(2, 3, C).transpose(1, 2), torch.zeros(2, 3, dtype=torch.uint8)
    ),
    "0-d input": lambda f, x: f(x[0, 0], torch.tensor(0)),
    "integer input": lambda f, x: f(x.int(), torch.zeros(6, dtype=torch.int64)),
    "ignore_index not an integer": lambda f, x: f(
        x, torch.zeros(6, dtype=torch.int64), ignore_index=1.5
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_classes_follow_native(case):
    """Where native raises, smoothce raises an instance of the same standard class
    (IndexError, ValueError, TypeError or RuntimeError; NotImplementedError counts as
    RuntimeError): ``except`` clauses written for native keep working."""
    x = torch.randn(6, C)
    theirs = _error(lambda: ERROR_CASES[case](F.cross_entropy, x))
    ours = _error(lambda: ERROR_CASES[case](st.cross_entropy, x))
    assert theirs is not None and ours is not None
    base = next(
        k for k in (IndexError, ValueError, TypeError, RuntimeError) if isinstance(theirs, k)
    )
    assert isinstance(ours, base), (type(theirs), type(ours), str(ours))


# --- deliberate differences, pinned ------------------------------------------------------------


def test_differences_from_native():
    x, y = _logits((6, C)), _index_target((6, C))
    # the default ε is 0.1, not 0
    torch.testing.assert_close(st.cross_entropy(x, y), F.cross_entropy(x, y, label_smoothing=0.1))
    # a negative or NaN ε raises; native silently treats a negative one as 0 (pytorch#134767)
    torch.testing.assert_close(
        F.cross_entropy(x, y, label_smoothing=-0.1), F.cross_entropy(x, y, label_smoothing=0.0)
    )
    for eps in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            st.cross_entropy(x, y, label_smoothing=eps)
    # an out-of-range target: native's IndexError, and also a ValueError naming the target
    with pytest.raises(IndexError):
        F.cross_entropy(x, torch.tensor([0, 1, 9, 2, 0, 1]))
    with pytest.raises(IndexError, match="label 9 is out of range: target must lie in"):
        st.cross_entropy(x, torch.tensor([0, 1, 9, 2, 0, 1]))
    # float16 inputs are accumulated in float32: at least as close to the float64 value
    half = x.half()
    exact = F.cross_entropy(half.double(), y, label_smoothing=0.1)
    assert (
        abs(st.cross_entropy(half, y).double() - exact)
        <= abs(native(half, y).double() - exact) + 1e-3
    )
