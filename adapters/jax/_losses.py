r"""optax-style label-smoothed cross-entropy for JAX, differentiated with the core's derivatives.

The two public functions keep optax's names, positional order `(logits, labels, axis, where)`
and per-example result, so they replace
`optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, eps))` and its integer-label
twin; `label_smoothing` is keyword-only. Every value and derivative comes from one core pass
(`smoothce.internal.evaluate`, `reduction="none"`); this module only converts arguments and
registers a `jax.custom_jvp`. Its tangent,

$$
dL_n = \sum_c \frac{\partial L_n}{\partial z_c}\,dz_c
  + \sum_c \frac{\partial L_n}{\partial y_c}\,dy_c
  + \frac{\partial L_n}{\partial \varepsilon}\,d\varepsilon ,
$$

is linear in the tangents, so JAX gets reverse mode by transposing it; the derivatives are
themselves built from `jax.numpy` operations, so differentiating the rule again gives
Hessians. Inputs whose tangent is a symbolic zero (usually $\varepsilon$ and the labels) cost
nothing.

With `axis_name` (vocab parallelism, inside `jax.shard_map`) the core combines its row
statistics over the class slices through `_shard.JaxShard` (one `pmax`, one `psum`), and
the sums over classes in the tangent cover this device's slice only, so they are `psum`'d:
the tangent is the global loss's, and its transpose hands every slice the same cotangent.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothce import Array
from smoothce.internal import LossSpec, Names, evaluate

from ._shard import shard_for

__all__ = [
    "differentiable_loss",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

_SymbolicZero = jax.custom_derivatives.SymbolicZero
NAMES = Names(eps="label_smoothing")


def softmax_cross_entropy(
    logits: Array,
    labels: Array,
    axis: int | tuple[int, ...] | None = -1,
    where: Array | None = None,
    *,
    label_smoothing: float | Array = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    axis_name: Hashable | tuple[Hashable, ...] | None = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with probability (or one-hot) labels, per example.

    A drop-in for `optax.softmax_cross_entropy` on smoothed labels: optax's arguments in
    optax's order, plus the keyword-only `label_smoothing`, `z_loss`, `softcap` and
    `axis_name`. With $p = \mathrm{softmax}(z)$ over `axis`, $K$ classes and
    $\varepsilon$ = `label_smoothing`, each example's loss is

    $$
    q = (1 - \varepsilon)\,y + \frac{\varepsilon}{K}, \qquad L = -\sum_c q_c \log p_c ,
    $$

    the same as `optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, eps))`;
    `label_smoothing=0.0` gives optax's unsmoothed loss. The loss is registered with a
    `jax.custom_jvp` built on the core's derivatives, so it is differentiable in forward and
    reverse mode, to any order. Integer class labels go to
    [smoothce.jax.softmax_cross_entropy_with_integer_labels][].

    Args:
        logits: Real floating JAX array (float16, bfloat16, float32 or float64) with the $K$
            classes along `axis`, any other shape; 16-bit floats are accumulated in float32
            inside the core.
        labels: Probabilities or one-hot rows, a floating array of the logits' shape or
            broadcastable to it. Rows that do not sum to 1 are used as they are: the gradient
            is $T p - q$ with $T = \sum_c q_c$, as optax's. Differentiable, as in optax.
        axis: The class axis; or a tuple of axes, flattened in the order given into one class
            axis (the first one the major one, as in optax); or `None` for all axes (optax's).
        where: Optional boolean mask, optax's convention. With as many dimensions as the
            logits (broadcastable to them) it masks classes: they leave the softmax and are
            not counted in $K$. With fewer dimensions (the batch shape) the class axes are
            inserted at `axis` and it masks whole examples (so a `(K,)` mask for `(N, K)`
            logits masks examples; write `where[None, :]` to mask classes). An example whose
            classes are all masked gets loss 0 and gradient 0. `None`: no mask.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only, default 0.1): a
            Python number, a NumPy scalar or a scalar JAX array. A JAX array is differentiable
            (`jax.grad` with respect to it works); a number is a constant, checked even under
            `jit`. One $\varepsilon$ per example: `jax.vmap` over it.
        z_loss: $\lambda \ge 0$ (keyword-only, a Python number): adds
            $\lambda \operatorname{lse}(z)^2$ to each example's loss (PaLM's z-loss); 0 adds
            nothing.
        softcap: $c > 0$ (keyword-only, a Python number): the logits become $c \tanh(z/c)$
            first (Gemma 2's soft-capping). `None`: no cap.
        axis_name: Vocab parallelism (keyword-only): inside `jax.shard_map` with the class
            `axis` split evenly over the mesh axis (or tuple of axes) `axis_name`, the logits
            and the labels are this device's slice of the classes; the result is the loss over
            all classes, the same on every device, and the gradient this slice's. One class
            axis, no `where`. `None`: all classes are here.

    Returns:
        One loss per example: a JAX array of the logits' shape without `axis` (0-d when every
        axis is a class axis), in the logits' dtype. Differentiable in the logits, the labels
        and a JAX `label_smoothing` under `grad`, `jvp`, `jacfwd`, `jacrev`, `hessian`, `jit`
        and `vmap`.

    Raises:
        TypeError: Labels that are not floating (class indices go to
            [smoothce.jax.softmax_cross_entropy_with_integer_labels][]), logits that are not
            real floating, a `where` that is not boolean, a `label_smoothing` that is a bool,
            a `z_loss` or `softcap` that is not a number, an `axis_name` that is not hashable.
        ValueError: $\varepsilon$ outside $[0, 1]$ or NaN (a number, or a JAX array read on
            the host; a traced or device array outside $[0, 1]$ makes every loss NaN),
            $\lambda < 0$, $c \le 0$, an `axis` out of range, labels or `where` whose shape
            does not fit the logits, `axis_name` with several class axes or with `where`, an
            `axis_name` that no enclosing map binds.

    Examples:
        >>> import jax, jax.numpy as jnp, smoothce.jax
        >>> logits = jnp.array([[2.0, 1.0, 0.1]])
        >>> labels = jnp.array([[1.0, 0.0, 0.0]])
        >>> loss = smoothce.jax.softmax_cross_entropy(logits, labels)
        >>> [round(float(v), 4) for v in loss]
        [0.5137]
        >>> grad = jax.grad(lambda z: smoothce.jax.softmax_cross_entropy(z, labels).sum())
        >>> [round(float(g), 4) for g in grad(logits)[0]]
        [-0.2743, 0.2091, 0.0652]

        With `label_smoothing=0.0` it is optax's loss, $-\sum_c y_c \log p_c$:

        >>> labels = jnp.array([[0.2, 0.3, 0.5]])
        >>> ours = smoothce.jax.softmax_cross_entropy(logits, labels, label_smoothing=0.0)
        >>> theirs = -(labels * jax.nn.log_softmax(logits)).sum(axis=-1)
        >>> bool(jnp.allclose(ours, theirs))
        True
    """
    return _dispatch(
        logits,
        labels,
        axis,
        where,
        label_smoothing,
        integer=False,
        terms=(z_loss, softcap),
        axis_name=axis_name,
    )


def softmax_cross_entropy_with_integer_labels(
    logits: Array,
    labels: Array,
    axis: int | tuple[int, ...] = -1,
    where: Array | None = None,
    *,
    label_smoothing: float | Array = 0.1,
    check_labels: bool | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    axis_name: Hashable | tuple[Hashable, ...] | None = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with integer class labels, per example.

    A drop-in for `optax.softmax_cross_entropy_with_integer_labels` with smoothing: optax's
    arguments in optax's order, plus the keyword-only `label_smoothing`, `check_labels`,
    `z_loss`, `softcap` and `axis_name`. With $p = \mathrm{softmax}(z)$ over `axis`, $K$
    classes, $\varepsilon$ = `label_smoothing` and the label $y$, each example's loss is

    $$
    L = -(1 - \varepsilon) \log p_y - \frac{\varepsilon}{K} \sum_c \log p_c
      = \operatorname{lse}(z) - (1 - \varepsilon)\,z_y - \frac{\varepsilon}{K} \sum_c z_c ,
    $$

    the same as
    `optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(y, K), eps))`
    without building the one-hot array (one gather and one sum per row);
    `label_smoothing=0.0` gives `optax.softmax_cross_entropy_with_integer_labels`.
    Probability labels go to [smoothce.jax.softmax_cross_entropy][];
    [smoothce.jax.linear_softmax_cross_entropy_with_integer_labels][] computes the same loss
    from a linear head's hidden states without storing the logits.

    Args:
        logits: Real floating JAX array (float16, bfloat16, float32 or float64) with the $K$
            classes along `axis`, any other shape; 16-bit floats are accumulated in float32
            inside the core.
        labels: Integer class indices (any integer dtype) of the logits' shape without
            `axis`, values in $[0, K)$: flat indices into the class axes when `axis` is a
            tuple, as in optax (`jnp.ravel_multi_index` over `logits.shape[axis]`). Where the
            labels are read (see `check_labels`) a bad label raises; elsewhere that example's
            loss and gradient row are NaN. They get no tangent.
        axis: The class axis, or a tuple of axes flattened in the order given into one class
            axis (the first one the major one, as in optax).
        where: Optional boolean mask as in [smoothce.jax.softmax_cross_entropy][]: with the
            logits' number of dimensions it masks classes, with fewer (the batch shape) whole
            examples; an example whose classes are all masked gets loss 0 and gradient 0. A
            label must not point at a masked class. `None`: no mask.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only, default 0.1): a
            Python number, a NumPy scalar or a scalar JAX array; a JAX array is
            differentiable.
        check_labels: When the label values are read and checked (keyword-only, smoothce's
            own). `None`: when that costs no device synchronisation (concrete arrays on the
            CPU); `True`: on any concrete array (one device-to-host read on an accelerator);
            `False`: never. Traced labels (under `jit`) are never read.
        z_loss: $\lambda \ge 0$ (keyword-only, a Python number): adds
            $\lambda \operatorname{lse}(z)^2$ to each example's loss (PaLM's z-loss); 0 adds
            nothing.
        softcap: $c > 0$ (keyword-only, a Python number): the logits become $c \tanh(z/c)$
            first (Gemma 2's soft-capping). `None`: no cap.
        axis_name: Vocab parallelism (keyword-only): inside `jax.shard_map` with the class
            `axis` split evenly over the mesh axis (or tuple of axes) `axis_name`, the logits
            are this device's slice of the classes and the labels global class ids
            (replicated); the result is the loss over all classes, the same on every device,
            and the gradient this slice's. One class axis, no `where`. `None`: all classes
            are here.

    Returns:
        One loss per example: a JAX array of the labels' shape, in the logits' dtype.
        Differentiable in the logits and a JAX `label_smoothing` under `grad`, `jvp`,
        `jacfwd`, `jacrev`, `hessian`, `jit` and `vmap`. A label outside $[0, K)$ (or on a
        class that `where` masks) that is not read (under `jit`, on an accelerator) makes
        that example's loss and gradient row NaN.

    Raises:
        TypeError: Labels that are not integers (probability labels go to
            [smoothce.jax.softmax_cross_entropy][]), logits that are not real floating, a
            `where` that is not boolean, a `label_smoothing` that is a bool, a `z_loss` or
            `softcap` that is not a number, an `axis_name` that is not hashable.
        ValueError: Where the labels are read (see `check_labels`), a label outside $[0, K)$
            (the error is also an `IndexError`) or on a class that `where` masks;
            $\varepsilon$ outside $[0, 1]$ or NaN (a number, or a JAX array read on the host;
            a traced or device array outside $[0, 1]$ makes every loss NaN), $\lambda < 0$,
            $c \le 0$, an `axis` out of range, labels or `where` whose shape does not fit the
            logits, `axis_name` with several class axes or with `where`, an `axis_name` that
            no enclosing map binds.

    Examples:
        >>> import jax, jax.numpy as jnp, smoothce.jax
        >>> logits = jnp.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> labels = jnp.array([0, 1])
        >>> loss = smoothce.jax.softmax_cross_entropy_with_integer_labels(logits, labels)
        >>> [round(float(v), 4) for v in loss]
        [0.5137, 0.3467]

        A per-example mask (optax's convention), the z-loss and soft-capping of language-model
        heads, and a label out of range, read eagerly or NaN under `jit`:

        >>> ce = smoothce.jax.softmax_cross_entropy_with_integer_labels
        >>> [round(float(v), 4) for v in ce(logits, labels, where=jnp.array([True, False]))]
        [0.5137, 0.0]
        >>> [round(float(v), 4) for v in ce(logits, labels, z_loss=1e-4, softcap=30.0)]
        [0.515, 0.3481]
        >>> try:
        ...     ce(logits, jnp.array([0, 3]), check_labels=True)
        ... except ValueError as err:
        ...     print(err)
        label 3 is out of range: labels must lie in [0, 3)
        >>> [round(float(v), 4) for v in jax.jit(ce)(logits, jnp.array([0, 3]))]
        [0.5137, nan]

        Vocab parallelism: `jax.vmap(..., axis_name=...)` binds an axis name as
        `jax.shard_map` does, so two slices of $K = 4$ classes give the loss over all four,
        on each slice:

        >>> full = jnp.array([[2.0, 1.0, 0.1, -1.0], [0.5, 2.5, 0.0, 1.0]])
        >>> slices = jnp.stack([full[:, :2], full[:, 2:]])  # (slices, N, K / slices)
        >>> sharded = jax.vmap(lambda z: ce(z, labels, axis_name="vocab"), axis_name="vocab")
        >>> bool(jnp.allclose(sharded(slices), ce(full, labels)))
        True
    """
    return _dispatch(
        logits,
        labels,
        axis,
        where,
        label_smoothing,
        integer=True,
        check_labels=check_labels,
        terms=(z_loss, softcap),
        axis_name=axis_name,
    )


def _dispatch(
    logits: Any,
    labels: Any,
    axis: Any,
    where: Any,
    eps: Any,
    *,
    integer: bool,
    check_labels: bool | None = None,
    terms: tuple[Any, Any] = (0.0, None),
    axis_name: Any = None,
) -> jax.Array:
    """Convert the arguments, build the spec, then call the differentiable core wrapper."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if integer and not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"softmax_cross_entropy_with_integer_labels needs integer labels, got dtype "
            f"{labels.dtype}; use softmax_cross_entropy for probability labels"
        )
    if not integer and not jnp.issubdtype(labels.dtype, jnp.floating):
        raise TypeError(
            f"softmax_cross_entropy needs floating (probability) labels, got dtype "
            f"{labels.dtype}; use softmax_cross_entropy_with_integer_labels for class indices"
        )
    if axis is None and not integer:
        axis = tuple(range(logits.ndim))  # optax: every axis is a class axis
    shard = None
    if axis_name is not None:
        if where is not None:
            raise ValueError(
                "axis_name (class-sharded logits) takes no where mask: mask the examples in "
                "your reduction instead"
            )
        if isinstance(axis, (tuple, list)) and len(axis) != 1:
            raise ValueError(
                f"axis_name (class-sharded logits) needs one class axis, got axis={axis!r}"
            )
        shard = shard_for(axis_name)
    if where is not None:
        where = jnp.asarray(where)
        if where.ndim < logits.ndim:
            # optax's rule: a mask with fewer dimensions gets the class axes inserted (the
            # batch shape: a per-example mask)
            where = jnp.expand_dims(where, axis)
    if not isinstance(eps, (numbers.Number, str, bytes, np.generic, np.ndarray)):
        eps = jnp.asarray(eps)  # a JAX scalar (or array-like): differentiable
    spec = LossSpec(
        eps,
        axis,
        where=where,
        reduction="none",
        check_labels=check_labels,
        names=NAMES,
        z_loss=terms[0],
        softcap=terms[1],
        shard=shard,
    )
    if not isinstance(spec.eps, jax.Array):
        # a number, or NumPy host data checked when the spec was made: a constant array in
        # the accumulation dtype. XLA on CPU fuses the kernel worse around weakly typed
        # Python constants (measured 1.5× slower at 8192×1000 float32)
        dtype = jnp.promote_types(logits.dtype, jnp.float32)
        spec = spec.join((jnp.asarray(float(spec.eps), dtype=dtype), None, None))
    static, (eps, _, where) = spec.split()
    return _per_example(static, logits, labels, eps, where)


def differentiable_loss(spec: LossSpec, logits: Array, labels: Array) -> jax.Array:
    r"""The per-example loss of `spec` as a JAX value with the core's derivatives.

    The seam [smoothce.keras][] uses on the JAX backend: the loss that `spec` (a `LossSpec`
    from `smoothce.internal`, with `reduction="none"`) describes, per example

    $$
    L = -\sum_c q_c \log p_c, \qquad q = (1 - \varepsilon)\,y + \frac{\varepsilon}{K},
    $$

    through the same `jax.custom_jvp` as [smoothce.jax.softmax_cross_entropy][], without
    optax's argument conventions.

    Args:
        spec: A validated `LossSpec` with `reduction="none"` and no class weights
            (`weight=None`); its `eps`, `axis`, `where`, `ignore_index`, `probabilities`,
            `z_loss`, `softcap` and the other options apply as in [smoothce.loss][].
        logits: The predictions, a real floating JAX array with the $K$ classes along
            `spec.axis`: logits, or probabilities when `spec.probabilities` is set (Keras's
            `from_logits=False`).
        labels: Integer class indices of the logits' shape without the class axis, or
            floating probabilities of the logits' shape (or broadcastable to it).

    Returns:
        One loss per example, a JAX array of the logits' dtype and of their shape without the
        class axis, differentiable (forward and reverse mode, to any order) in the logits and
        probability labels.

    Raises:
        NotImplementedError: A `spec` with class weights (smoothce.jax takes none).
        TypeError: A wrong dtype, as the core's checks say.
        ValueError: A wrong shape or label value, as the core's checks say.

    Examples:
        >>> import jax, jax.numpy as jnp, smoothce.jax
        >>> from smoothce.internal import LossSpec
        >>> spec = LossSpec(0.1, -1, reduction="none")
        >>> logits, labels = jnp.array([[2.0, 1.0, 0.1]]), jnp.array([0])
        >>> [round(float(v), 4) for v in smoothce.jax.differentiable_loss(spec, logits, labels)]
        [0.5137]
    """
    static, (eps, weight, where) = spec.split()
    if weight is not None:
        raise NotImplementedError("smoothce.jax takes no class weights")
    if eps is None:
        eps = jnp.asarray(static.eps, dtype=jnp.promote_types(logits.dtype, jnp.float32))
    return _per_example(static, logits, labels, eps, where)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _per_example(
    static: LossSpec, logits: jax.Array, labels: jax.Array, eps: jax.Array, where: Any
) -> jax.Array:
    return evaluate(static.join((eps, None, where)), logits, labels).value


def _per_example_jvp(
    static: LossSpec, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    logits, labels, eps, where = primals
    d_logits, d_labels, d_eps, _ = tangents
    live = [not isinstance(t, _SymbolicZero) for t in (d_logits, d_labels, d_eps)]
    # float16/bfloat16 derivatives for labels and ε are differences of rounded losses in
    # the core's float32 accumulation; the tangent is accumulated in at least float32 too
    result = evaluate(
        static.join((eps, None, where)),
        logits,
        labels,
        grad=live[0],
        grad_labels=live[1],
        grad_eps=live[2],
    )
    value = result.value
    acc = jnp.promote_types(value.dtype, jnp.float32)
    axes = static.axis if isinstance(static.axis, tuple) else (static.axis,)
    tangent = jnp.zeros(value.shape, acc)
    if live[0]:
        tangent = tangent + jnp.sum(result.grad.astype(acc) * d_logits.astype(acc), axis=axes)
    if live[1]:
        step = result.grad_labels.astype(acc) * d_labels.astype(acc)
        tangent = tangent + jnp.sum(jnp.broadcast_to(step, logits.shape), axis=axes)
    if static.shard is not None and (live[0] or live[1]):
        # each device summed over its own classes: the global loss's tangent is their sum
        # (a psum, whose transpose hands every device the same cotangent)
        tangent = static.shard.sum(tangent)
    if live[2]:
        tangent = tangent + result.grad_eps.astype(acc) * d_eps.astype(acc)
    return value, tangent.astype(value.dtype)


_per_example.defjvp(_per_example_jvp, symbolic_zeros=True)
