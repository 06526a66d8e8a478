"""smoothce.torch's vocab-parallel arguments in one process: a one-rank gloo group (the
loss must equal the plain one) and the errors. Several ranks: tests/test_distributed.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import smoothce.torch as st  # noqa: E402
from smoothce.torch import _distributed  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    store = dist.FileStore(str(tmp_path_factory.mktemp("store") / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()
    _distributed._LAYOUTS.clear()


@pytest.fixture(autouse=True)
def fresh_layouts():
    # each test starts as a group's first call does (the layout is learned again)
    _distributed._LAYOUTS.clear()


def _logits(*shape):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"reduction": "none", "spread": "others", "label_smoothing": 0.3},
        {"z_loss": 1e-2, "softcap": 5.0, "reduction": "sum"},
        {"weight": "w", "ignore_index": 2},
    ],
)
def test_one_rank_equals_plain(group, kwargs):
    kwargs = dict(kwargs)
    if kwargs.get("weight") == "w":
        kwargs["weight"] = torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    z = _logits(5, 7).requires_grad_()
    y = torch.tensor([0, 2, 6, 3, 2])
    got = st.cross_entropy(z, y, process_group=group, **kwargs)
    (g_got,) = torch.autograd.grad(got.sum(), z)
    want = st.cross_entropy(z, y, **kwargs)
    (g_want,) = torch.autograd.grad(want.sum(), z)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


def test_one_rank_linear_equals_plain(group):
    h = _logits(6, 4).requires_grad_()
    w = _logits(9, 4).requires_grad_()
    y = torch.tensor([0, 1, 8, 3, 4, 5])
    got = st.linear_cross_entropy(
        h, w, y, process_group=group, vocab_start=0, vocab_size=9, chunk_size=4, reduction="none"
    )
    got_grads = torch.autograd.grad(got.sum(), (h, w))
    want = st.linear_cross_entropy(h, w, y, chunk_size=4, reduction="none")
    want_grads = torch.autograd.grad(want.sum(), (h, w))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_explicit_layout(group):
    z, y = _logits(4, 5), torch.tensor([0, 1, 2, 3])
    got = st.cross_entropy(z, y, process_group=group, vocab_start=0, vocab_size=5)
    torch.testing.assert_close(got, st.cross_entropy(z, y))
    with pytest.raises(ValueError, match="vocab_start=3 does not fit"):
        st.cross_entropy(z, y, process_group=group, vocab_start=3, vocab_size=5)


def test_changed_slice_size_raises(group):
    st.cross_entropy(_logits(2, 5), torch.tensor([0, 1]), process_group=group)
    with pytest.raises(ValueError, match="slice layout"):
        st.cross_entropy(_logits(2, 6), torch.tensor([0, 1]), process_group=group)
    # an explicit layout is always accepted
    st.cross_entropy(
        _logits(2, 6), torch.tensor([0, 1]), process_group=group, vocab_start=0, vocab_size=6
    )


def test_refusals(group):
    z, y = _logits(3, 4).requires_grad_(), torch.tensor([0, 1, 3])
    with pytest.raises(ValueError, match="compiled"):
        st.cross_entropy(z, y, process_group=group, compiled=True)
    with pytest.raises(ValueError, match="overwrite_input"):
        st.cross_entropy(z.detach(), y, process_group=group, overwrite_input=True)
    with pytest.raises(ValueError, match="need a process_group"):
        st.cross_entropy(z, y, vocab_start=0)
    with pytest.raises(TypeError, match="vocab_start must be an integer"):
        st.cross_entropy(z, y, process_group=group, vocab_start=True, vocab_size=4)
    loss = st.cross_entropy(z, y, process_group=group)
    (g,) = torch.autograd.grad(loss, z, create_graph=True)
    with pytest.raises(NotImplementedError, match="vocab-parallel"):
        g.sum().backward()
    with pytest.raises(NotImplementedError, match="vocab-parallel"):
        torch.func.jvp(
            lambda a: st.cross_entropy(a, y, process_group=group), (z.detach(),), (z.detach(),)
        )


def test_without_group_nothing_is_gathered():
    before = dict(_distributed._LAYOUTS)
    st.cross_entropy(_logits(3, 4), torch.tensor([0, 1, 3]))
    assert _distributed._LAYOUTS == before
