"""Accelerator behaviour of smoothce.torch, provable on the CPU (issue #15).

The ``meta`` device stands in for an accelerator: every op runs on shapes and dtypes only, so
nothing can be read on the host there. A ``TorchDispatchMode`` counts the ATen ops the loss
dispatches (what bounds its host time on a GPU) and the ``aten._local_scalar_dense`` calls
(``.item()``, ``int()``, ``bool()``: each one a host synchronisation on a GPU).

- One pass sequence over the whole array: forward + backward at (8192, 131072) stays within
  the op budget below, in float32 and bfloat16 (native's count is recorded next to it).
- No host synchronisation by default (bad labels give NaN rows there); ``check_labels=True``
  asks for exactly the one read that restores eager errors.
- The meta device works: ``cross_entropy`` and ``smoothce.loss``, forward and backward, with
  the right shapes and dtypes.
"""

from __future__ import annotations

import collections

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import smoothce  # noqa: E402
import smoothce.torch as st  # noqa: E402

N, V = 8192, 131072
SYNC = "aten._local_scalar_dense.default"

# ATen ops for forward + backward of cross_entropy(logits, int64 target) with the defaults
# (ε = 0.1, ignore_index = -100, mean) on an accelerator, where labels are not read. Issue #15's
# budget is 40 in both dtypes (native: 28). What smoothce does beyond native is per-example
# bookkeeping: out-of-range labels become NaN rows instead of a device assert, and ignored
# rows are exact zeros; bfloat16 adds its three casts (logits in, gradient and loss out).
OP_BUDGET = {torch.float32: 40, torch.bfloat16: 40}
NATIVE_OPS = 28


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def _meta(*shape, dtype=torch.float32, requires_grad=False):
    return torch.empty(shape, device="meta", dtype=dtype, requires_grad=requires_grad)


def _forward_backward(fn, logits, target, *args, **kwargs):
    with _Count() as count:
        loss = fn(logits, target, *args, **kwargs)
        loss.sum().backward() if loss.dim() else loss.backward()
    return loss, count


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_op_count_within_budget(dtype):
    """The whole array is one block: the op count does not grow with the size."""
    ours = _forward_backward(
        st.cross_entropy, _meta(N, V, dtype=dtype, requires_grad=True), _meta(N, dtype=torch.int64)
    )[1]
    native = _forward_backward(
        F.cross_entropy,
        _meta(N, V, dtype=dtype, requires_grad=True),
        _meta(N, dtype=torch.int64),
        label_smoothing=0.1,
    )[1]
    assert native.total == NATIVE_OPS, dict(native.ops)
    assert ours.total <= OP_BUDGET[dtype], dict(ours.ops)
    small = _forward_backward(
        st.cross_entropy,
        _meta(64, 512, dtype=dtype, requires_grad=True),
        _meta(64, dtype=torch.int64),
    )[1]
    assert small.total == ours.total  # no row blocks: the same sequence at any size
    assert ours.ops[SYNC] == 0


@pytest.mark.parametrize(
    "case",
    ["index", "index-weights-ignore", "index-nd", "prob", "prob-grad", "eps-tensor", "none"],
)
def test_no_host_sync_by_default(case):
    """Forward + backward read nothing on the host (0 _local_scalar_dense), whatever the
    target, weights, ε (a device tensor too) and reduction."""
    logits = _meta(16, 10, requires_grad=True)
    target = _meta(16, dtype=torch.int64)
    kwargs = {}
    if case == "index-weights-ignore":
        kwargs = {"weight": _meta(10), "ignore_index": 3}
    elif case == "index-nd":
        logits, target = _meta(4, 10, 3, 2, requires_grad=True), _meta(4, 3, 2, dtype=torch.int64)
    elif case.startswith("prob"):
        target = _meta(16, 10, requires_grad=case == "prob-grad")
        kwargs = {"weight": _meta(10)}
    elif case == "eps-tensor":
        kwargs = {"label_smoothing": _meta()}
    elif case == "none":
        kwargs = {"reduction": "none"}
    _, count = _forward_backward(st.cross_entropy, logits, target, **kwargs)
    assert count.ops[SYNC] == 0, dict(count.ops)
    assert logits.grad.shape == logits.shape and logits.grad.device.type == "meta"
    if case == "prob-grad":
        assert target.grad.shape == target.shape


def test_check_labels_true_asks_for_the_one_read():
    """check_labels=True restores the eager error at the cost of one read: on an accelerator
    one synchronisation; on meta, where nothing can be read, torch's clear error."""
    logits, target = _meta(16, 10, requires_grad=True), _meta(16, dtype=torch.int64)
    with _Count() as count, pytest.raises(RuntimeError, match="meta tensors"):
        st.cross_entropy(logits, target, check_labels=True)
    assert count.ops[SYNC] == 1
    loss_fn = st.CrossEntropyLoss(check_labels=True)
    with pytest.raises(RuntimeError, match="meta tensors"):
        loss_fn(logits, target)


def test_check_labels_on_the_cpu():
    """On the CPU labels are read by default (eager errors); check_labels=False skips the
    read: bad rows are NaN there, as on an accelerator."""
    x = torch.randn(4, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 9, 2])
    with pytest.raises(IndexError, match="label 9 is out of range"):
        st.cross_entropy(x, y)
    with pytest.raises(IndexError, match="label 9 is out of range"):
        st.cross_entropy(x, y, check_labels=True)
    a = x.clone().requires_grad_(True)
    per_example = st.cross_entropy(a, y, reduction="none", check_labels=False)
    per_example.sum().backward()
    assert torch.isnan(per_example[2]) and torch.isfinite(per_example[[0, 1, 3]]).all()
    assert torch.isnan(a.grad[2]).all() and torch.isfinite(a.grad[[0, 1, 3]]).all()
    good = st.cross_entropy(x[[0, 1, 3]], y[[0, 1, 3]], reduction="none")
    torch.testing.assert_close(per_example[[0, 1, 3]].detach(), good)
    with _Count() as count:
        st.cross_entropy(x, torch.tensor([0, 1, 5, 2]), check_labels=False)
    assert count.ops[SYNC] == 0
    with pytest.raises(TypeError, match="check_labels"):
        st.cross_entropy(x, y, check_labels="yes")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("layout", [(10,), (16, 10), (4, 10, 3, 2)], ids=["1d", "2d", "4d"])
def test_meta_device_shapes_and_dtypes(layout, dtype):
    """cross_entropy and the module on meta tensors: forward and backward, every reduction,
    index and probability targets; the results have native's shapes and dtypes."""
    batch = layout[:1] + layout[2:] if len(layout) > 1 else ()
    for target in (_meta(*batch, dtype=torch.int64), _meta(*layout, dtype=dtype)):
        for reduction in ("mean", "sum", "none"):
            logits = _meta(*layout, dtype=dtype, requires_grad=True)
            loss = st.cross_entropy(logits, target, reduction=reduction)
            expected = F.cross_entropy(
                _meta(*layout, dtype=dtype), target, reduction=reduction, label_smoothing=0.1
            )
            assert (loss.shape, loss.dtype, loss.device) == (
                expected.shape,
                expected.dtype,
                expected.device,
            )
            loss.sum().backward()
            assert (logits.grad.shape, logits.grad.dtype) == (logits.shape, dtype)
    module = st.CrossEntropyLoss(weight=_meta(10, dtype=dtype))
    assert module(_meta(*layout, dtype=dtype), _meta(*batch, dtype=torch.int64)).dtype == dtype


def test_core_loss_on_meta():
    """smoothce.loss and loss_and_grad on meta tensors, forward and autograd backward."""
    logits = _meta(8, 5, 3, requires_grad=True)
    labels = _meta(8, 3, dtype=torch.int64)
    with _Count() as count:
        loss = smoothce.loss(logits, labels, 0.1, axis=1)
        loss.backward()
    assert loss.shape == () and loss.device.type == "meta" and count.ops[SYNC] == 0
    assert logits.grad.shape == logits.shape
    probs = _meta(8, 5, dtype=torch.bfloat16)
    value, grad = smoothce.loss_and_grad(_meta(8, 5, dtype=torch.bfloat16), probs, 0.2)
    assert value.dtype == grad.dtype == torch.bfloat16 and grad.shape == (8, 5)
    per_example = smoothce.loss(_meta(2, 3, 7), _meta(2, 3, dtype=torch.int64), reduction="none")
    assert per_example.shape == (2, 3)
