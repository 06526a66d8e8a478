"""`smoothce.torch.cross_entropy`: `torch.nn.functional.cross_entropy` with the core's math.

This module only does what PyTorch's own entry point does before the kernel runs: argument
translation (native names, defaults, positional order, legacy reduction flags), autocast and
dtype promotion. The values come from the autograd Function in `_function.py`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from smoothce.internal import LossSpec, Names, evaluate

from ._errors import native_errors
from ._function import class_dim, smooth_cross_entropy

__all__ = ["cross_entropy"]

NAMES = Names(logits="input", labels="target", eps="label_smoothing")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type without autocast (meta): never on
        return False


def _autocast(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Native autocast policy for cross_entropy: run in float32 when autocast is on.

    PyTorch lists cross_entropy among the float32 ops of autocast on CPU and CUDA: every
    floating argument except float64 is cast to float32 (float64 is never downcast).
    """
    if not _autocast_enabled(input.device.type):
        return input, target, weight

    def up(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or not t.is_floating_point() or t.dtype == torch.float64:
            return t
        return t.float()

    return up(input), up(target), up(weight)  # type: ignore[return-value]


def legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """PyTorch's deprecated ``size_average``/``reduce`` flags mapped onto ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(
        "size_average and reduce args will be deprecated, please use reduction instead",
        UserWarning,
        stacklevel=3,
    )
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


@native_errors
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float | torch.Tensor = 0.1,
    *,
    overwrite_input: bool = False,
    check_labels: bool | None = None,
    compiled: bool = False,
    spread: str = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    process_group: Any = None,
    vocab_start: int | None = None,
    vocab_size: int | None = None,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy, a drop-in for `torch.nn.functional.cross_entropy`.

    With $p = \mathrm{softmax}(\text{input})$ over the class dimension (1, or 0 for a 1-D
    input), $C$ classes, class weights $w$ (all 1 without `weight`) and the smoothed target

    $$
    q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \frac{\varepsilon}{C}
    $$

    (probability targets: $q = (1 - \varepsilon)\,y + \varepsilon/C$), each example's loss is

    $$
    l = -\sum_c w_c q_c \log p_c .
    $$

    For index targets that is PyTorch's weighting,

    $$
    l = (1 - \varepsilon)\,w_y\,(-\log p_y) + \frac{\varepsilon}{C}\sum_c w_c\,(-\log p_c);
    $$

    `"mean"` divides the sum by $\sum w_y$ over the non-ignored examples (index targets) or by
    the number of examples (probability targets); `"none"` returns one loss per example. The
    values and gradients come from the core ([smoothce.loss_and_grad][]);
    [smoothce.torch.CrossEntropyLoss][] is the module form.

    The arguments before `*` are `torch.nn.functional.cross_entropy`'s, in its order; only the
    default `label_smoothing` differs (0.1 instead of 0.0). The keyword-only arguments are
    smoothce's own.

    Args:
        input: Logits, a real floating tensor (float16, bfloat16, float32 or float64) of shape
            `(C,)`, `(N, C)` or `(N, C, d1, ..., dk)`, on any device; 16-bit floats are
            accumulated in float32. Under autocast (CPU, CUDA) every floating argument except
            float64 is cast to float32 first, as PyTorch does.
        target: Class indices, int64 (uint8 also for `(C,)` and `(N, C)` inputs, as in
            PyTorch), of the input's shape without the class dimension (`()`, `(N,)` or
            `(N, d1, ..., dk)`), each in $[0, C)$ or equal to `ignore_index`. Or class
            probabilities, a floating tensor of the input's shape; input, target and `weight`
            are then promoted to one dtype. Probability targets are differentiable: a target
            that requires grad gets its gradient.
        weight: Per-class weights $w$ of shape `(C,)`, in the input's dtype (index targets) or
            any floating dtype (probability targets, promoted with the others); differentiable
            only with probability targets, as in PyTorch. `None`: all 1.
        size_average: Deprecated: PyTorch's legacy flag, mapped onto `reduction` (with
            PyTorch's `UserWarning`). `None`: not given.
        ignore_index: Index targets equal to it contribute nothing (no loss, no gradient, no
            share of the mean's denominator). Probability targets accept only a negative value
            (as in PyTorch), which then has no effect.
        reduce: Deprecated: PyTorch's legacy flag, mapped onto `reduction` (with PyTorch's
            `UserWarning`). `None`: not given.
        reduction: `"mean"`, `"sum"` or `"none"` (one loss per example).
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$: a Python number or a 0-d tensor;
            default 0.1. A negative $\varepsilon$ raises (PyTorch silently treats it as 0).
        overwrite_input: Write the gradient into `input`'s storage during the forward pass
            (the Liger-Kernel trick), so forward and backward allocate no N×C buffer. For
            logits that nothing else needs afterwards, e.g. a final Linear layer's output.
            `input` then holds the gradient, not the logits. Raises `ValueError` for a tensor
            that is, or is a view of, a leaf that requires grad (a parameter), or when the
            class dimension is not last and contiguous (`(N, C)` input); if another autograd
            node saved the logits, its backward raises torch's in-place error. Inside
            `torch.compile` it changes no value and writes nothing (Inductor plans the buffers
            itself).
        check_labels: Whether index targets are read and checked eagerly. `None` (default):
            when that needs no device synchronisation (CPU tensors outside tracing), so a bad
            target raises there and gives a NaN loss and gradient row elsewhere (on
            accelerators, under `torch.compile` and `torch.func`); `True`: always, at the cost
            of one synchronisation on an accelerator (traced code still cannot read); `False`:
            never.
        compiled: Run the core (the same array-API code) through
            `torch.compile(fullgraph=True)`, compiled once per argument combination, so that
            Inductor fuses it into a few kernels: for accelerators. Backward stays one
            multiplication. Labels are then checked as `check_labels` says, by looking again
            eagerly when the compiled loss is NaN. Inside `torch.compile` or `torch.func`
            transforms the core runs as it would without the flag.
        spread: `"all"` ($\varepsilon/C$ on every class, PyTorch's convention) or `"others"`
            ($\varepsilon/(C - 1)$ on the wrong classes only, fairseq's and T5X's).
        z_loss: $\lambda \ge 0$ of the z-loss $\lambda \operatorname{lse}(\text{input})^2$
            added to each example's loss (PaLM), averaged over the non-ignored examples under
            `"mean"`; 0 for none.
        softcap: $c > 0$: the logits become $c \tanh(\text{input}/c)$ before everything else
            (Gemma 2). `None`: no cap.
        process_group: A `torch.distributed` process group for vocab parallelism; `None`: all
            classes are here. With a group, `input` of shape `(N, C_local, ...)` is this
            rank's contiguous slice of the classes, `weight` this rank's slice of the class
            weights, index targets hold global class ids and probability targets this rank's
            columns. Every rank returns the same (global) loss and its slice of the gradient,
            after two all-reduces over the group (one max, one sum of a few numbers per
            example); backward needs none. Slices may be uneven. Double backward and forward
            mode are not implemented for it.
        vocab_start: The first global class id of this rank's slice (with `process_group`).
            `None`: taken from the group's slice layout (see `vocab_size`).
        vocab_size: The number of classes over all slices (with `process_group`). `None`:
            taken from the group's slice layout. Without both, that layout (contiguous slices
            in rank order) is gathered on the group's first call (one all-gather of one number
            per rank) and kept; a rank whose slice size later changes raises `ValueError`. A
            DTensor input sharded on the class dimension of a 1-D mesh needs neither: its
            local slice, group and layout are used, and the loss is a replicated DTensor.

    Returns:
        The loss, a tensor on the input's device in the input's dtype (for probability
        targets the dtype promoted from input, target and `weight`; float32 under autocast):
        0-d for `"mean"` and `"sum"`, one value per example (the input's shape without the
        class dimension) for `"none"`. With `process_group` it is the global loss, the same
        on every rank; for a DTensor input, a replicated DTensor. Differentiable in reverse
        and forward mode, twice (double backward, `torch.func.hessian`), under
        `torch.func`/`vmap` and `torch.compile`.

    Raises:
        ValueError: A wrong value or shape, raised as [smoothce.torch.InvalidValue][] (also a
            `RuntimeError`, so code written against PyTorch's errors catches it):
            $\varepsilon$ outside $[0, 1]$, an unknown `reduction`, probability targets not of
            the input's shape or with a non-negative `ignore_index`, an input that
            `overwrite_input` cannot write into, `process_group` with `compiled=True`,
            `torch.compile` or `overwrite_input=True`, `vocab_start` or `vocab_size` without
            `process_group`, a slice that does not fit in `vocab_size` or whose size changed,
            a DTensor not sharded on its class dimension over a 1-D mesh. An index target
            outside $[0, C)$ that is not `ignore_index`, where targets are read (see
            `check_labels`), raises [smoothce.torch.InvalidLabel][], also an `IndexError`.
        TypeError: A wrong type or dtype, raised as [smoothce.torch.InvalidType][] (also a
            `RuntimeError`): `input` or `target` not a `torch.Tensor`, index targets of
            another dtype than the above, a `weight` dtype other than the input's (index
            targets), a `compiled` that is not a bool.
        NotImplementedError: A `weight` that requires grad with index targets (as in PyTorch)
            or with `process_group`; when differentiated, second derivatives with `softcap`
            or `process_group` and forward mode with `process_group`.

    Examples:
        >>> import torch, smoothce.torch
        >>> logits = torch.tensor([[2.0, 1.0, 0.1]], requires_grad=True)
        >>> loss = smoothce.torch.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1)
        >>> round(loss.item(), 4)
        0.5137
        >>> loss.backward()
        >>> logits.grad.round(decimals=4)
        tensor([[-0.2743,  0.2091,  0.0652]])

        One loss per example; fairseq's convention (`spread="others"`) is PyTorch's with
        $\varepsilon' = \varepsilon C/(C - 1)$:

        >>> x, y = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]]), torch.tensor([0, 1])
        >>> smoothce.torch.cross_entropy(x, y, reduction="none").round(decimals=4)
        tensor([0.5137, 0.3467])
        >>> a = smoothce.torch.cross_entropy(x, y, spread="others")
        >>> b = smoothce.torch.cross_entropy(x, y, label_smoothing=0.1 * 3 / 2)
        >>> bool(torch.isclose(a, b))
        True
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"input and target must be torch.Tensor, got {type(input).__name__} and "
            f"{type(target).__name__}"
        )
    reduction = legacy_reduction(size_average, reduce, reduction)
    shard = mesh = None
    if _is_dtensor(input):
        if process_group is not None:
            raise ValueError("a DTensor input brings its own process group: pass none")
        if vocab_start is not None or vocab_size is not None:
            raise ValueError("a DTensor input brings its own vocab_start and vocab_size")
        input, target, weight, process_group, mesh, vocab_start, vocab_size = _from_dtensor(
            input, target, weight
        )
    # PyTorch differentiates weight for probability targets only; smoothce's autograd node
    # has no weight gradient, so such a call is differentiated through the core's array ops
    weight_grad = weight is not None and weight.requires_grad and torch.is_grad_enabled()
    if weight_grad and not target.is_floating_point():
        raise NotImplementedError(
            "cross_entropy is not differentiable with respect to weight for class-index "
            "targets (as in PyTorch); pass weight.detach()"
        )
    input, target, weight = _autocast(input, target, weight)

    if target.is_floating_point():
        if target.shape != input.shape:  # the core would broadcast; PyTorch does not
            raise ValueError(
                f"probability targets must have the input's shape {tuple(input.shape)}, got "
                f"{tuple(target.shape)}"
            )
        if ignore_index >= 0:
            raise ValueError(
                f"ignore_index={ignore_index} is not supported for probability targets "
                "(only a negative value, which has no effect)"
            )
        # Native promotes input, target and weight to one dtype; the result has that dtype.
        dtype = torch.promote_types(input.dtype, target.dtype)
        if weight is not None:
            dtype = torch.promote_types(dtype, weight.dtype)
        input, target = input.to(dtype), target.to(dtype)
        weight = None if weight is None else weight.to(dtype)
        core_ignore = None
    else:
        # F.cross_entropy takes int64 targets, and uint8 ones for (C,) and (N, C) inputs only
        allowed = (torch.int64, torch.uint8) if input.dim() <= 2 else (torch.int64,)
        if target.dtype not in allowed:
            names = " or ".join(str(d).removeprefix("torch.") for d in allowed)
            raise TypeError(
                f"index targets for a {input.dim()}-D input must be {names}, got {target.dtype}"
            )
        if weight is not None and weight.dtype != input.dtype:
            raise TypeError(f"weight dtype {weight.dtype} differs from input dtype {input.dtype}")
        core_ignore = ignore_index

    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be True or False, got {compiled!r}")
    if process_group is not None or vocab_start is not None or vocab_size is not None:
        if compiled or torch.compiler.is_compiling():
            raise ValueError("process_group does not combine with compiled=True or torch.compile")
        if overwrite_input:
            raise ValueError("process_group does not combine with overwrite_input=True")
        from ._distributed import shard_from_arguments

        k_local = input.shape[class_dim(input)]
        shard = shard_from_arguments(process_group, k_local, vocab_start, vocab_size, input.device)
    if overwrite_input is True and torch.compiler.is_compiling():
        # traced code writes nothing in place (Inductor plans the buffers): the flag changes
        # no value, but what eager code refuses is refused here too
        if input.is_leaf and input.requires_grad:
            raise ValueError(
                "overwrite_input=True cannot write into input: it is a leaf tensor that "
                "requires grad, such as a parameter"
            )
        overwrite_input = False
    spec = LossSpec(
        label_smoothing,
        class_dim(input),
        weight,
        core_ignore,
        None,
        reduction,
        spread,
        overwrite=overwrite_input,
        check_labels=check_labels,
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
        shard=shard,
    )
    if weight_grad:  # torch autograd records the core's out-of-place path
        if shard is not None:
            raise NotImplementedError(
                "cross_entropy with a process_group is not differentiable with respect to "
                "weight; pass weight.detach()"
            )
        return evaluate(spec, input, target).value
    static, (eps, weight, _) = spec.split()
    value, _, _ = smooth_cross_entropy().apply(input, target, static, eps, weight, compiled)
    if mesh is not None:  # a DTensor in, a replicated DTensor out (as loss_parallel returns)
        from torch.distributed.tensor import DTensor, Replicate

        value = DTensor.from_local(value, mesh, [Replicate()], run_check=False)
    return value


def _is_dtensor(x: Any) -> bool:
    return type(x).__name__ == "DTensor" and type(x).__module__.startswith("torch.distributed")


def _from_dtensor(input: Any, target: Any, weight: Any) -> tuple[Any, ...]:
    """A DTensor input sharded on its class dimension over a 1-D mesh, as local tensors:
    `(input, target, weight, group, mesh, vocab_start, vocab_size)`. The target is replicated
    (class ids) or sharded like the input (probabilities); a DTensor weight is sharded on its
    only dimension."""
    from torch.distributed.tensor import Replicate, Shard

    mesh, dim = input.device_mesh, class_dim(input)
    if mesh.ndim != 1 or tuple(input.placements) != (Shard(dim),):
        raise ValueError(
            f"a DTensor input must be sharded on its class dimension {dim} (Shard({dim})) over "
            f"a 1-D mesh, got placements {tuple(input.placements)} on a {mesh.ndim}-D mesh"
        )
    if _is_dtensor(target):
        wanted = (Shard(dim),) if target.is_floating_point() else (Replicate(),)
        if tuple(target.placements) != wanted:
            raise ValueError(
                f"a DTensor target must have placements {wanted}, got {tuple(target.placements)}"
            )
        target = target.to_local()
    if _is_dtensor(weight):
        if tuple(weight.placements) != (Shard(0),):
            raise ValueError(f"a DTensor weight must be Shard(0), got {tuple(weight.placements)}")
        weight = weight.to_local()
    from ._distributed import chunk_start

    total = input.shape[dim]
    start = chunk_start(total, mesh.size(), mesh.get_local_rank())
    return input.to_local(), target, weight, mesh.get_group(), mesh, start, total
