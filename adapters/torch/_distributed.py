"""Vocab-parallel smoothing on ``torch.distributed``: the core's two collectives, as torch calls.

With the classes split across the ranks of a process group (tensor parallelism over the
vocabulary), each rank holds a contiguous slice of the logits' class dimension. The core's
kernel computes its row statistics on the slice and combines them through a reducer: one
all-reduce MAX of N values, then one all-reduce SUM of a stacked (few × N) tensor. This module
supplies that reducer; backward needs no collective (every rank forms its slice of the
gradient from the global statistics).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from smoothce.internal import check_index

__all__ = ["TorchShard", "chunk_start", "shard_for", "shard_from_arguments"]


class TorchShard:
    """The reducer of one rank's class slice ``[start, start + K_local)`` of ``total`` classes.

    ``max`` and ``sum`` are all-reduces over ``group`` (any backend: NCCL on GPUs, gloo on
    CPUs); they work on a fresh contiguous copy, never on the caller's tensor.
    """

    def __init__(self, group: Any, start: int, total: int) -> None:
        self.group, self.start, self.total = group, start, total

    def max(self, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def offset(self, k_local: int) -> int:
        return self.start

    def classes(self, k_local: int) -> int:
        return self.total

    def __repr__(self) -> str:
        return f"TorchShard(start={self.start}, total={self.total})"


def shard_from_arguments(
    group: Any, k_local: int, vocab_start: Any, vocab_size: Any, device: Any
) -> TorchShard:
    """The reducer for the torch losses' ``process_group``, ``vocab_start`` and ``vocab_size``
    arguments as the caller gave them (checked here)."""
    if group is None:
        raise ValueError("vocab_start and vocab_size need a process_group (vocab parallelism)")
    return shard_for(
        group,
        k_local,
        None if vocab_start is None else check_index(vocab_start, "vocab_start"),
        None if vocab_size is None else check_index(vocab_size, "vocab_size"),
        device,
    )


def shard_for(
    group: Any, k_local: int, vocab_start: int | None, vocab_size: int | None, device: Any
) -> TorchShard:
    """This rank's reducer.

    With ``vocab_start`` and ``vocab_size`` nothing is communicated. Otherwise the group's
    slice layout (the slices in rank order) is learned on its first call, with one all_gather
    of one number per rank, and kept: every rank must then keep its slice size, since a rank
    that gathered again while the others did not would wait forever. A changed size raises.
    """
    group = group if group is not None else dist.group.WORLD
    if vocab_start is None or vocab_size is None:
        sizes = _LAYOUTS.get(group)
        if sizes is None:
            sizes = _LAYOUTS[group] = _gather_sizes(group, k_local, device)
        rank = dist.get_rank(group)
        if sizes[rank] != k_local:
            raise ValueError(
                f"this rank's slice has {k_local} classes, but the group's slice layout, learned "
                f"on its first call, gives it {sizes[rank]}; pass vocab_start and vocab_size "
                "when the layout changes"
            )
        vocab_start = sum(sizes[:rank]) if vocab_start is None else vocab_start
        vocab_size = sum(sizes) if vocab_size is None else vocab_size
    if not 0 <= vocab_start <= vocab_size - k_local:
        raise ValueError(
            f"vocab_start={vocab_start} does not fit a slice of {k_local} classes in "
            f"{vocab_size} classes"
        )
    return TorchShard(group, vocab_start, vocab_size)


def chunk_start(total: int, parts: int, index: int) -> int:
    """Where ``torch.chunk`` (DTensor's Shard) starts slice ``index`` of ``parts``."""
    return min(index * -(-total // parts), total)


_LAYOUTS: dict[Any, list[int]] = {}


def _gather_sizes(group: Any, k_local: int, device: Any) -> list[int]:
    world = dist.get_world_size(group)
    mine = torch.tensor([k_local], dtype=torch.int64, device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine, group=group)
    return [int(t) for t in every]
