"""smoothce.torch.cross_entropy equals F.cross_entropy on random problems (hypothesis).

For any layout ((C,), (N, C), (N, C, d1, ..., dk)), dtype, index or probability target,
weight, ``ignore_index`` (default, a class, none hit), ε in [0, 1], reduction and memory
layout, the loss and the gradients (input, and a probability target) must equal native's.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import smoothce.torch as sce  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
# rtol = atol; bfloat16: native rounds in 16 bits where smoothce accumulates in float32
TOL = {"float64": 1e-9, "float32": 5e-5, "bfloat16": 3e-2}


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    cdim = 0 if ndim == 1 else 1
    shape = (*shape[:cdim], max(shape[cdim], 2), *shape[cdim + 1 :])
    return {
        "shape": shape,
        "integer": draw(st.booleans()),
        "weighted": draw(st.booleans()),
        "ignore": draw(st.sampled_from(["default", "class", "absent"])),
        "eps": draw(st.floats(0.0, 1.0)),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "dtype": draw(st.sampled_from(list(DTYPES))),
        "strided": draw(st.booleans()),
        "scale": draw(st.sampled_from([0.3, 3.0, 30.0])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _tensors(problem):
    gen = torch.Generator().manual_seed(problem["seed"])
    shape, dtype = problem["shape"], DTYPES[problem["dtype"]]
    c = shape[0 if len(shape) == 1 else 1]
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * problem["scale"]
    if problem["strided"]:  # the same values, stored transposed
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    x = x.to(dtype)
    kwargs = {"label_smoothing": problem["eps"], "reduction": problem["reduction"]}
    if problem["weighted"]:
        kwargs["weight"] = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.2).to(dtype)
    if problem["integer"]:
        batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
        y = torch.randint(0, c, batch, generator=gen)
        if problem["ignore"] == "default" and y.numel():
            y.view(-1)[0] = -100
        elif problem["ignore"] == "class":
            kwargs["ignore_index"] = 1
        elif problem["ignore"] == "absent":
            kwargs["ignore_index"] = c + 3
    else:
        y = torch.rand(shape, generator=gen, dtype=torch.float64)
        y = (y / y.sum(0 if len(shape) == 1 else 1, keepdim=True)).to(dtype)
    return x, y, kwargs


def _run(fn, x, y, kwargs):
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True) if y.is_floating_point() else y
    out = fn(x, y, **kwargs)
    gen = torch.Generator().manual_seed(1)
    upstream = (torch.rand(out.shape, generator=gen, dtype=torch.float64) + 0.5).to(out.dtype)
    inputs = (x, y) if y.is_floating_point() else (x,)
    return (out, *torch.autograd.grad(out, inputs, upstream))


@settings(max_examples=25, deadline=None)
@given(problem=problems())
def test_equals_native(problem):
    x, y, kwargs = _tensors(problem)
    ours = _run(sce.cross_entropy, x, y, kwargs)
    theirs = _run(F.cross_entropy, x, y, kwargs)
    tol = TOL[problem["dtype"]]
    everything_ignored = (
        y.dtype == torch.int64
        and kwargs["reduction"] == "mean"
        and bool((y == kwargs.get("ignore_index", -100)).all())
    )
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        a, b = a.detach().double(), b.detach().double()
        if everything_ignored:  # 0/0: NaN loss in both; the gradient is 0 in both
            assert math.isnan(ours[0].item()) and math.isnan(theirs[0].item())
            break
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale, equal_nan=True)
