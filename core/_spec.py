"""One validated description of a loss call: `LossSpec`, and the error taxonomy.

Every public entry point, in the core and in every adapter, turns its arguments into one
frozen `LossSpec`; the runner, the kernel and the adapters' autodiff rules receive that spec
and nothing else. Checks that need only the arguments run here, when the spec is made; checks
that need the logits (shapes, the number of classes, label values) run when the runner binds
the spec to them (`smoothce._run`).

Errors: `TypeError` for a wrong type or dtype, `ValueError` for a wrong value or shape.
Integer arguments go through `operator.index` (so NumPy integers work) and bools are refused.
Each message names the argument as the caller's API spells it (`Names`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from typing import Any, Literal, NamedTuple

from ._backends import backend_of

__all__ = [
    "NAMES",
    "LabelRangeError",
    "LossSpec",
    "Names",
    "Reduction",
    "Spread",
    "check_index",
    "check_positive",
]

Reduction = Literal["mean", "sum", "none"]
Spread = Literal["all", "others"]
REDUCTIONS = ("mean", "sum", "none")
SPREADS = ("all", "others")


class LabelRangeError(ValueError, IndexError):
    """An integer label outside $[0, K)$: a `ValueError` (a wrong value) and an `IndexError`
    (what indexing with it would raise, and what PyTorch raises)."""


class Names(NamedTuple):
    """How the caller's API names each argument, for error messages."""

    logits: str = "logits"
    labels: str = "labels"
    eps: str = "eps"
    axis: str = "axis"
    weight: str = "weight"
    ignore_index: str = "ignore_index"
    where: str = "where"
    reduction: str = "reduction"
    spread: str = "spread"


NAMES = Names()


@dataclasses.dataclass(frozen=True)
class LossSpec:
    r"""Everything about one loss call except the logits and the labels, validated.

    With $p = \mathrm{softmax}(z)$ over the class axis, $K$ classes, per-class weights $w$
    and the smoothed target $q = (1 - \varepsilon)\,y + \varepsilon/K$, each example's loss
    is $L = -\sum_c w_c q_c \log p_c$. Build it with `build` (keyword arguments) or the
    constructor: both validate.

    Attributes:
        eps: $\varepsilon \in [0, 1]$: a Python float, or a 0-d array whose value is checked
            when it can be read without a device synchronisation (else an $\varepsilon$
            outside $[0, 1]$ gives NaN).
        axis: The class axis, or a tuple of class axes (flattened, in order, into one).
        weight: Per-class weights of shape `(K,)` (or the class axes' shape), or `None`.
        ignore_index: An integer label whose examples count as absent, or `None`.
        where: A boolean class mask broadcastable to the logits, or `None`. Masked classes
            leave the softmax and $K$; an example whose classes are all masked counts as
            absent.
        reduction: `"mean"`, `"sum"` or `"none"`.
        spread: `"all"` ($\varepsilon/K$ on every class) or `"others"`
            ($\varepsilon/(K-1)$ on the wrong ones).
        probabilities: `None` for logits; a clipping bound $\delta$ when the input holds
            probabilities (Keras's `from_logits=False`): they are normalised, clipped to
            $[\delta, 1 - \delta]$ and their log is the logits, and the gradient is taken
            with respect to the probabilities.
        overwrite: Write the gradient into the logits' own buffer.
        check_labels: When integer labels are read and checked. `None` (the default): when
            that costs no device synchronisation (NumPy, CPU tensors, concrete arrays on the
            host); `True`: always, eagerly (one synchronisation on an accelerator); `False`:
            never. Labels that are not read make their own rows NaN when they are out of
            range.
        names: The caller's names of the arguments, for error messages.
        z_loss: $\lambda \ge 0$ of the z-loss $\lambda \operatorname{lse}(z)^2$ added to each
            example's loss (PaLM); 0 for none.
        softcap: $c > 0$: the logits become $c \tanh(z/c)$ before everything else (Gemma 2);
            `None` for none.
      shard: the logits hold one slice of the classes (vocab parallelism): an object with
            `max(x)` and `sum(x)` (elementwise over the shards, on arrays of per-row values),
            `offset(k)` (this slice's first class) and `classes(k)` (the number of classes
            over all slices), given this slice's `k` classes; `None` on one device. The
            loss is the global one, the gradient this slice's.
    """

    eps: Any = 0.1
    axis: int | tuple[int, ...] = -1
    weight: Any = None
    ignore_index: int | None = None
    where: Any = None
    reduction: Reduction = "mean"
    spread: Spread = "all"
    probabilities: float | None = None
    overwrite: bool = False
    check_labels: bool | None = None
    names: Names = NAMES
    z_loss: float = 0.0
    softcap: float | None = None
    shard: Any = None

    def __post_init__(self) -> None:
        names = self.names
        if not isinstance(names, Names):
            raise TypeError(f"names must be a smoothce Names tuple, got {type(names).__name__}")
        set_ = object.__setattr__
        set_(self, "eps", _check_eps(self.eps, names.eps))
        set_(self, "axis", _check_axis(self.axis, names.axis))
        set_(self, "reduction", _check_choice(self.reduction, REDUCTIONS, names.reduction))
        set_(self, "spread", _check_choice(self.spread, SPREADS, names.spread))
        if self.ignore_index is not None:
            set_(self, "ignore_index", check_index(self.ignore_index, names.ignore_index))
        if self.weight is not None:
            _check_array_dtype(self.weight, ("real floating", "integral"), names.weight)
        if self.where is not None:
            _check_array_dtype(self.where, ("bool",), names.where, "a boolean class mask")
        if self.probabilities is not None:
            clip = _check_real(self.probabilities, "probabilities")
            if not 0.0 <= clip < 0.5:
                raise ValueError(
                    f"the probabilities' clipping bound must lie in [0, 0.5), got {clip}"
                )
            set_(self, "probabilities", clip)
        if not isinstance(self.overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {self.overwrite!r}")
        if self.z_loss != 0.0:
            z_loss = _check_real(self.z_loss, "z_loss")
            if not (math.isfinite(z_loss) and z_loss >= 0):
                raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
            set_(self, "z_loss", z_loss)
        if self.softcap is not None:
            softcap = _check_real(self.softcap, "softcap")
            if not (math.isfinite(softcap) and softcap > 0):
                raise ValueError(f"softcap must be a finite number > 0 (or None), got {softcap!r}")
            set_(self, "softcap", softcap)
        if self.probabilities is not None and (self.z_loss or self.softcap is not None):
            terms = (("z_loss", self.z_loss), ("softcap", self.softcap))
            used = [f"{name}={value!r}" for name, value in terms if value]
            raise ValueError(
                f"{' and '.join(used)} {'act' if len(used) > 1 else 'acts'} on logits and "
                "need from_logits=True (logits, not probabilities, as input): probabilities "
                "have log-sum-exp 0 (no z-loss) and no logits to cap"
            )
        if self.shard is not None and not isinstance(self.shard, _Hole):
            missing = [m for m in ("max", "sum", "offset", "classes") if not hasattr(self.shard, m)]
            if missing:
                raise TypeError(
                    f"shard must have the methods max, sum, offset and classes; {missing} missing"
                )
        if self.check_labels is not None and not isinstance(self.check_labels, bool):
            raise TypeError(f"check_labels must be True, False or None, got {self.check_labels!r}")

    @classmethod
    def build(
        cls,
        eps: Any = 0.1,
        *,
        axis: Any = -1,
        weight: Any = None,
        ignore_index: Any = None,
        where: Any = None,
        reduction: Any = "mean",
        spread: Any = "all",
        probabilities: Any = None,
        overwrite: Any = False,
        check_labels: Any = None,
        names: Names = NAMES,
        z_loss: Any = 0.0,
        softcap: Any = None,
    ) -> LossSpec:
        """The spec for these arguments, checked; raises `TypeError`/`ValueError`."""
        return cls(
            eps,
            axis,
            weight,
            ignore_index,
            where,
            reduction,
            spread,
            probabilities,
            overwrite,
            check_labels,
            names,
            z_loss,
            softcap,
        )

    def replace(self, **changes: Any) -> LossSpec:
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)

    @property
    def others(self) -> bool:
        """Whether ε is spread over the K − 1 wrong classes (fairseq, T5X) rather than all K."""
        return self.spread == "others"

    def split(self) -> tuple[LossSpec, tuple[Any, ...]]:
        """`(static, arrays)`: the spec without its array fields, hashable (a jit cache key,
        a `nondiff_argnums` argument), and those arrays in `ARRAY_FIELDS` order (None where
        the field holds no array). `join` puts them back."""
        arrays = tuple(_array_or_none(getattr(self, f)) for f in ARRAY_FIELDS)
        holes = {f: _HOLE for f, a in zip(ARRAY_FIELDS, arrays, strict=True) if a is not None}
        return (_unchecked(self, **holes) if holes else self), arrays

    def join(self, arrays: tuple[Any, ...]) -> LossSpec:
        """The inverse of `split` (with possibly different arrays, e.g. tracers)."""
        values = {f: a for f, a in zip(ARRAY_FIELDS, arrays, strict=True) if a is not None}
        return _unchecked(self, **values) if values else self


ARRAY_FIELDS = ("eps", "weight", "where")


class _Hole:
    """Stands for an array field in a `LossSpec.split` spec."""

    def __repr__(self) -> str:
        return "<array>"


_HOLE = _Hole()


_FIELDS = tuple(field.name for field in dataclasses.fields(LossSpec))


def _unchecked(spec: LossSpec, **changes: Any) -> LossSpec:
    """A copy with `changes` and no validation (the values were checked already)."""
    new = object.__new__(LossSpec)
    for name in _FIELDS:
        object.__setattr__(new, name, changes.get(name, getattr(spec, name)))
    return new


def _array_or_none(value: Any) -> Any:
    return None if value is None or isinstance(value, (float, _Hole)) else value


# --- argument checks --------------------------------------------------------------------------


def check_index(value: Any, name: str) -> int:
    """An integer argument as a Python int (NumPy integers work); bools are refused."""
    if type(value) is int:  # the usual case, first: this runs on every call
        return value
    if isinstance(value, bool) or _is_bool_scalar(value):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def check_positive(value: Any, name: str, minimum: int = 1) -> int:
    """An integer argument that must be at least `minimum`."""
    number = check_index(value, name)
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or _is_bool_scalar(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got NaN")
    return number


def _check_eps(eps: Any, name: str) -> Any:
    """ε as a float in [0, 1], or a 0-d array (its value checked when it can be read)."""
    if type(eps) is float and 0.0 <= eps <= 1.0:  # the usual case, first
        return eps
    if isinstance(eps, _Hole):
        return eps
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and not _is_bool_scalar(eps):
        return _in_unit_interval(float(eps), name)
    if isinstance(eps, (bool, str, bytes)) or _is_bool_scalar(eps):
        raise TypeError(f"{name} must be a number in [0, 1], got {eps!r}")
    try:
        backend = backend_of(eps)
    except TypeError:
        raise TypeError(f"{name} must be a number in [0, 1], got {eps!r}") from None
    _check_array_dtype(eps, ("real floating", "integral"), name, "a real number")
    ndim = getattr(eps, "ndim", 0)  # None: unknown rank while tracing
    if ndim not in (0, None):
        raise ValueError(f"{name} must be a scalar, got an array of shape {tuple(eps.shape)}")
    if backend.on_host(eps):
        _in_unit_interval(float(eps), name)
    return eps


def _in_unit_interval(value: float, name: str) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")
    return value


def _check_axis(axis: Any, name: str) -> int | tuple[int, ...]:
    """An int, or a non-empty tuple of distinct ints (the range is checked against the logits)."""
    if type(axis) is int:
        return axis
    if isinstance(axis, _Hole):
        return axis
    if isinstance(axis, (tuple, list)):
        if not axis:
            raise ValueError(f"{name} must name at least one class axis, got {axis!r}")
        axes = tuple(check_index(a, name) for a in axis)
        if len(axes) == 1:
            return axes[0]
        if len(set(axes)) != len(axes):
            raise ValueError(f"{name} names an axis twice: {axes}")
        return axes
    return check_index(axis, name)


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_array_dtype(x: Any, kinds: tuple[str, ...], name: str, what: str = "") -> None:
    """`x` is an array whose dtype is of one of `kinds` (array-API `isdtype` kinds)."""
    try:
        backend = backend_of(x)
    except TypeError:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}") from None
    xp = backend.namespace(x)
    if not any(xp.isdtype(x.dtype, kind) for kind in kinds):
        wanted = what or " or ".join(kinds)
        raise TypeError(f"{name} must be {wanted}, got dtype {x.dtype}")


def _is_bool_scalar(value: Any) -> bool:
    """NumPy's `bool_` and 0-d boolean arrays of any library (`operator.index` and
    `float` accept some of them as 0 and 1)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and "bool" in str(dtype)
