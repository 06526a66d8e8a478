"""smoothce.torch under torch.compile (issues #14 and #15), on the CPU (Inductor compiles for
it): a compiled training step with static, automatic-dynamic, ``dynamic=True`` and
``mark_dynamic`` shapes and with ``overwrite_input=True``; and ``compiled=True``, which runs
the core itself through torch.compile. Values and gradients must equal eager ones.

Each compile costs seconds on a small CPU, so there are few of them: the training steps are
traced by dynamo and AOTAutograd and run eagerly (counting backends); Inductor compiles the
core itself (``compiled=True``), and a static training step in tests/test_torch_adapter.py.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend  # noqa: E402

import smoothce.torch as st  # noqa: E402

C = 7


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _batch(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed + n)
    x = torch.randn(n, 6, generator=gen)
    y = torch.randint(0, C, (n,), generator=gen)
    y[0] = -100
    return x, y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, C))


def _step_results(step, model, x, y):
    """The loss and every parameter's gradient after one forward + backward."""
    model.zero_grad(set_to_none=True)
    loss = step(model, x, y)
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters()]


def test_training_step_with_overwrite_input_compiles_once_for_dynamic_shapes():
    """torch.compile(fullgraph=True, dynamic=True) of model + loss with overwrite_input=True:
    one graph for every batch size, values and gradients equal eager ones (which really
    overwrite). Traced with AOTAutograd and run eagerly, which is what Inductor is handed."""
    weight = torch.rand(C) + 0.5

    def step(model, x, y):
        logits = model(x)
        return st.cross_entropy(logits, y, weight, label_smoothing=0.2, overwrite_input=True)

    model, twin = _model(), _model()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, backend=counter, fullgraph=True, dynamic=True)
    compiles = []
    for n in (8, 13, 21):
        x, y = _batch(n)
        got, expected = _step_results(compiled, model, x, y), _step_results(step, twin, x, y)
        torch.testing.assert_close(got, expected)
        compiles.append(counter.frame_count)
    assert compiles[0] > 0 and compiles[-1] == compiles[0]  # nothing recompiled
    # and the eager step is native's
    x, y = _batch(8)
    native = _step_results(
        lambda m, a, b: F.cross_entropy(m(a), b, weight, label_smoothing=0.2), twin, x, y
    )
    torch.testing.assert_close(_step_results(step, twin, x, y), native)


@pytest.mark.parametrize("shapes", ["automatic", "mark_dynamic"])
def test_training_step_shapes(shapes):
    """Automatic dynamic shapes recompile once, then never; mark_dynamic compiles once (static
    shapes: tests/test_torch_adapter.py). Traced with AOTAutograd (forward and backward
    graphs) and run eagerly, which is what Inductor would be handed."""

    def step(model, x, y):
        return st.cross_entropy(model(x), y, label_smoothing=0.1)

    model, twin = _model(1), _model(1)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, backend=counter, fullgraph=True)
    sizes = (8, 8, 11, 16)
    for n in sizes:
        x, y = _batch(n, seed=1)
        if shapes == "mark_dynamic":
            torch._dynamo.mark_dynamic(x, 0)
            torch._dynamo.mark_dynamic(y, 0)
        got, expected = _step_results(compiled, model, x, y), _step_results(step, twin, x, y)
        torch.testing.assert_close(got, expected)
    expected_frames = {"automatic": 2, "mark_dynamic": 1}[shapes]
    assert counter.frame_count == expected_frames


def test_compiled_core_matches_eager():
    """compiled=True: the core's own code compiled by Inductor, for index targets with
    weights and ignored rows at three batch sizes (one recompile, then dynamic) and with
    overwrite_input=True; a bad label on the CPU still raises the eager error. (Probability
    targets and bfloat16 take the same traced path as under torch.func and torch.compile.)"""
    gen = torch.Generator().manual_seed(3)
    w = torch.rand(C, generator=gen) + 0.5
    for n in (8, 12, 16):
        x = torch.randn(n, C, generator=gen)
        y = torch.randint(0, C, (n,), generator=gen)
        y[1] = -100
        results = []
        for compiled in (True, False):
            a = x.clone().requires_grad_(True)
            loss = st.cross_entropy(a, y, w, label_smoothing=0.3, compiled=compiled)
            loss.backward()
            results.append((loss.detach(), a.grad))
        torch.testing.assert_close(results[0], results[1])
    with pytest.raises(IndexError, match="label 9 is out of range"):
        st.cross_entropy(x, torch.full((n,), 9), w, label_smoothing=0.3, compiled=True)

    # overwrite_input=True: the compiled code writes the gradient into the logits (here with
    # a weight and ε as a tensor, both graph inputs)
    layer = nn.Linear(6, C)
    data, labels = _batch(8)
    eps = torch.tensor(0.2)
    grads = []
    for compiled in (True, False):
        layer.zero_grad()
        logits = layer(data)
        loss = st.cross_entropy(
            logits, labels, w, label_smoothing=eps, overwrite_input=True, compiled=compiled
        )
        loss.backward()
        grads.append((loss.detach(), logits.detach().clone(), layer.weight.grad.clone()))
    torch.testing.assert_close(grads[0], grads[1])


def test_compiled_core_inside_torch_compile_and_torch_func_is_the_plain_core():
    """compiled=True inside torch.compile or a torch.func transform runs the core as it would
    run there anyway (nothing compiles inside)."""
    x, y = torch.randn(4, C, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    counter = CompileCounter()
    fn = torch.compile(lambda a: st.cross_entropy(a, y, compiled=True), backend=counter)
    torch.testing.assert_close(fn(x), F.cross_entropy(x, y, label_smoothing=0.1))
    assert counter.frame_count == 1
    grad = torch.func.grad(lambda a: st.cross_entropy(a, y, compiled=True))(x)
    torch.testing.assert_close(grad, torch.func.grad(lambda a: st.cross_entropy(a, y))(x))
    module = copy.deepcopy(st.CrossEntropyLoss(compiled=True, check_labels=True))
    assert "compiled=True" in repr(module) and "check_labels=True" in repr(module)
