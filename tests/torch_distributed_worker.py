"""One rank of the vocab-parallel checks, run by tests/test_distributed.py (gloo, 127.0.0.1).

Usage: python torch_distributed_worker.py RANK WORLD PORT OUT_DIR. Every rank builds the same
global problem from a fixed seed, keeps its own slice of the classes (uneven slices), runs
each case through smoothce.torch with ``process_group`` and writes its loss, its slice of the
gradients and the number of collectives to OUT_DIR/rank{RANK}.npz.
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import torch
import torch.distributed as dist

import smoothce.torch as st

K, N, H = 14, 6, 5
SIZES = {2: [9, 5], 3: [3, 7, 4], 4: [3, 5, 4, 2]}


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    counts: Counter[str] = Counter()
    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "reduce_scatter"):
        original = getattr(dist, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(dist, name, counted)

    sizes = SIZES[world]
    start = sum(sizes[:rank])
    cols = slice(start, start + sizes[rank])
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, K, 2)) * 3  # (N, K, d1): the class dimension is 1
    labels = rng.integers(0, K, size=(N, 2))
    labels[0, 0] = -100
    probs = rng.dirichlet(np.ones(K), size=(N, 2)).transpose(0, 2, 1)
    weight = rng.uniform(0.5, 2.0, size=K)
    hidden, w_lin, b_lin = rng.normal(size=(N, H)), rng.normal(size=(K, H)), rng.normal(size=K)
    flat_labels = labels[:, 0]

    results: dict[str, np.ndarray] = {}

    def record(case: str, loss: torch.Tensor, grads: dict[str, torch.Tensor], before: Counter):
        results[f"{case}/loss"] = loss.detach().double().numpy()
        for key, grad in grads.items():
            results[f"{case}/{key}"] = grad.detach().double().numpy()
        results[f"{case}/forward_collectives"] = np.array(sum(before.values()))
        backward = sum(counts.values()) - sum(before.values())
        results[f"{case}/backward_collectives"] = np.array(backward)

    def run(case, dtype, build, **kwargs):
        z = torch.tensor(logits[:, cols], dtype=dtype, requires_grad=True)
        target = build()
        counts.clear()
        loss = st.cross_entropy(z, target, process_group=dist.group.WORLD, **kwargs)
        forward = Counter(counts)
        upstream = torch.ones_like(loss) * 1.5 if loss.dim() else torch.tensor(1.5, dtype=dtype)
        loss.backward(upstream)
        record(case, loss, {"grad": z.grad}, forward)

    # the first call with a group learns its slice layout: one all_gather of one number per
    # rank, then kept (the later calls make none)
    z = torch.tensor(logits[:, cols], requires_grad=True)
    counts.clear()
    st.cross_entropy(z, torch.tensor(labels), process_group=dist.group.WORLD).backward()
    results["first_call_collectives"] = np.array(sum(counts.values()))

    run(
        "index_mean_weighted",
        torch.float64,
        lambda: torch.tensor(labels),
        weight=torch.tensor(weight[cols]),
        label_smoothing=0.2,
    )
    run("index_sum_f32", torch.float32, lambda: torch.tensor(labels), reduction="sum")
    run(
        "index_none_others",
        torch.float64,
        lambda: torch.tensor(labels),
        reduction="none",
        label_smoothing=0.3,
        spread="others",
    )
    run(
        "index_terms",
        torch.float64,
        lambda: torch.tensor(labels),
        z_loss=1e-2,
        softcap=4.0,
        vocab_start=start,
        vocab_size=K,
    )
    run(
        "probs_mean",
        torch.float64,
        lambda: torch.tensor(probs[:, cols]),
        weight=torch.tensor(weight[cols]),
    )

    # the fused linear form: W and b sharded by vocabulary, hidden replicated
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(w_lin[cols], requires_grad=True)
    b = torch.tensor(b_lin[cols], requires_grad=True)
    counts.clear()
    loss = st.linear_cross_entropy(
        h, w, torch.tensor(flat_labels), linear_bias=b, chunk_size=4,
        process_group=dist.group.WORLD,
    )  # fmt: skip
    forward = Counter(counts)
    loss.backward()
    record("linear", loss, {"d_hidden": h.grad, "d_weight": w.grad, "d_bias": b.grad}, forward)

    # data parallelism: each rank holds some examples (all classes). "mean" would divide by
    # this rank's Σ w_y only; the global mean is the all-reduced sum over the all-reduced
    # denominator (what the single process's "mean" gives)
    mine = np.array_split(np.arange(N), world)[rank]
    z = torch.tensor(logits[mine], requires_grad=True)
    y = torch.tensor(labels[mine])
    w = torch.tensor(weight)
    total = st.cross_entropy(z, y, w, reduction="sum", label_smoothing=0.2)
    kept = y != -100
    denominator = (w[y.clamp(min=0)] * kept).sum().detach()
    dist.all_reduce(denominator)
    loss = total / denominator
    loss.backward()
    global_loss = loss.detach().clone()
    dist.all_reduce(global_loss)  # the sum of the ranks' parts is the global mean
    local_mean = st.cross_entropy(z.detach(), y, w, label_smoothing=0.2)
    dist.all_reduce(local_mean)
    results["data_parallel/loss"] = global_loss.numpy()
    results["data_parallel/naive"] = (local_mean / world).numpy()
    results["data_parallel/grad"] = z.grad.numpy()

    # a DTensor sharded on the class dimension (torch.chunk's slices) takes the same path,
    # with no gather: its layout is known
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    full = torch.tensor(logits, requires_grad=True)
    dz = distribute_tensor(full.detach(), mesh, [Shard(1)]).requires_grad_()
    counts.clear()
    loss = st.cross_entropy(dz, torch.tensor(labels), label_smoothing=0.2, reduction="none")
    forward = Counter(counts)
    assert type(loss).__name__ == "DTensor", type(loss)
    local = loss.to_local()
    local.backward(torch.ones_like(local) * 1.5)
    record("dtensor", local, {"grad": dz.grad.to_local()}, forward)

    np.savez(f"{out}/rank{rank}.npz", start=start, stop=start + sizes[rank], **results)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
