"""A minimal array-API namespace over raw TensorFlow ops.

array-api-compat does not cover TensorFlow, and ``tf.experimental.numpy`` needs a process-wide
switch to behave. This module implements exactly the subset of the standard that smoothce's
core uses (and nothing more), with the standard's names and signatures, and changes no global
TF state. Symbolic tensors with unknown batch dimensions (inside ``tf.function``, Keras and
TF1-style graphs) are supported; comparisons are TF ops, never Python's ``==`` (which means
object identity on TF1 graph tensors).
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
import tensorflow as tf

bool = tf.bool
float16 = tf.float16
bfloat16 = tf.bfloat16
float32 = tf.float32
float64 = tf.float64
int8, int16, int32, int64 = tf.int8, tf.int16, tf.int32, tf.int64
uint8, uint16, uint32, uint64 = tf.uint8, tf.uint16, tf.uint32, tf.uint64
inf = math.inf
nan = math.nan


class _Info:
    def default_dtypes(self, *, device: Any = None) -> dict[str, Any]:
        return {
            "real floating": float32,
            "complex floating": tf.complex64,
            "integral": int64,
            "indexing": int64,
        }


def __array_namespace_info__() -> _Info:
    return _Info()


class finfo:
    def __init__(self, dtype: Any) -> None:
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise TypeError(f"finfo needs a floating dtype, got {dtype}")
        self.dtype = dtype
        self.bits = dtype.size * 8
        self.max = float(dtype.max)
        self.min = float(dtype.min)
        # bfloat16 keeps 8 significant bits; NumPy knows the others
        self.eps = 2.0**-7 if dtype == bfloat16 else float(np.finfo(dtype.as_numpy_dtype).eps)


def isdtype(dtype: Any, kind: Any) -> bool:
    dtype = tf.as_dtype(dtype)
    if isinstance(kind, tuple):
        return any(isdtype(dtype, k) for k in kind)
    if kind == "bool":
        return dtype == tf.bool
    if kind == "real floating":
        return dtype.is_floating
    if kind == "complex floating":
        return dtype.is_complex
    if kind == "signed integer":
        return dtype.is_integer and not dtype.is_unsigned
    if kind == "unsigned integer":
        return dtype.is_integer and dtype.is_unsigned
    if kind == "integral":
        return dtype.is_integer
    if kind == "numeric":
        return dtype.is_integer or dtype.is_floating or dtype.is_complex
    return dtype == tf.as_dtype(kind)


def _as_tensor(x: Any, like: Any = None) -> Any:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        return x
    if like is not None:
        return tf.constant(x, dtype=like.dtype)
    return tf.convert_to_tensor(x)


def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> Any:
    x = tf.convert_to_tensor(obj)
    return x if dtype is None else tf.cast(x, dtype)


def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    return x if x.dtype == dtype and not copy else tf.cast(x, dtype)


def arange(
    start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None
) -> Any:
    if stop is None:
        start, stop = 0, start
    return tf.range(start, stop, step, dtype=dtype or int64)


def zeros(shape: Any, *, dtype: Any = None, device: Any = None) -> Any:
    return tf.zeros(shape, dtype=dtype or float32)


def ones_like(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
    return tf.ones_like(x, dtype=dtype)


def zeros_like(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
    return tf.zeros_like(x, dtype=dtype)


def reshape(x: Any, /, shape: tuple[int, ...], *, copy: Any = None) -> Any:
    return tf.reshape(x, shape)


def expand_dims(x: Any, /, *, axis: int = 0) -> Any:
    return tf.expand_dims(x, axis)


def broadcast_to(x: Any, /, shape: Any) -> Any:
    if None in tuple(shape):
        raise ValueError(f"cannot broadcast to a shape with unknown dimensions: {shape}")
    try:
        return tf.broadcast_to(x, shape)
    except tf.errors.InvalidArgumentError as err:  # eager shape mismatch: the standard's ValueError
        raise ValueError(str(err)) from err


def moveaxis(x: Any, source: int, destination: int, /) -> Any:
    ndim = x.shape.rank
    source, destination = source % ndim, destination % ndim
    if source == destination:
        return x
    order = [i for i in range(ndim) if i != source]
    order.insert(destination, source)
    return tf.transpose(x, order)


def permute_dims(x: Any, /, axes: tuple[int, ...]) -> Any:
    return tf.transpose(x, list(axes))


def where(condition: Any, x1: Any, x2: Any, /) -> Any:
    # a NaN operand is computed (sqrt(−1) exactly where it is picked) rather than a NaN
    # constant: a graph that tf.debugging.enable_check_numerics watches then holds no NaN
    # unless a row is bad
    if _is_nan(x2) and isinstance(x1, (tf.Tensor, tf.Variable)):
        x2 = tf.sqrt(tf.cast(condition, x1.dtype) - 1)
    elif _is_nan(x1) and isinstance(x2, (tf.Tensor, tf.Variable)):
        x1 = tf.sqrt(-tf.cast(condition, x2.dtype))
    if not isinstance(x1, (tf.Tensor, tf.Variable)):
        x2 = _as_tensor(x2)
        x1 = _as_tensor(x1, like=x2)
    else:
        x2 = _as_tensor(x2, like=x1)
    return tf.where(condition, x1, x2)


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
    """Gather along ``axis``, broadcasting the other dimensions as NumPy does."""
    ndim = x.shape.rank
    axis = axis % ndim
    x, indices = moveaxis(x, axis, -1), moveaxis(indices, axis, -1)
    # Broadcast the leading (batch) dimensions of both to a common dynamic shape.
    batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(indices)[:-1])
    x = tf.broadcast_to(x, tf.concat([batch, tf.shape(x)[-1:]], 0))
    indices = tf.broadcast_to(indices, tf.concat([batch, tf.shape(indices)[-1:]], 0))
    out = tf.gather(x, indices, axis=ndim - 1, batch_dims=ndim - 1)
    return moveaxis(out, -1, axis)


def _reduce(op: Any) -> Any:
    def reduction(x: Any, /, *, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Any:
        if dtype is not None:
            x = tf.cast(x, dtype)
        return op(x, axis=axis, keepdims=keepdims)

    return reduction


sum = _reduce(tf.reduce_sum)
max = _reduce(tf.reduce_max)
min = _reduce(tf.reduce_min)
mean = _reduce(tf.reduce_mean)
any = _reduce(tf.reduce_any)
all = _reduce(tf.reduce_all)


def argmax(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
    if axis is None:
        x, axis = tf.reshape(x, [-1]), 0
    out = tf.argmax(x, axis=axis, output_type=int64)
    return tf.expand_dims(out, axis) if keepdims else out


exp = tf.exp
tanh = tf.tanh
log = tf.math.log
sqrt = tf.sqrt
abs = tf.abs
isfinite = tf.math.is_finite


def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:
    if min is not None:
        x = tf.maximum(x, tf.cast(min, x.dtype))
    if max is not None:
        x = tf.minimum(x, tf.cast(max, x.dtype))
    return x


def result_type(*dtypes: Any) -> Any:
    """The wider of floating dtypes (what the fused linear loss mixes)."""
    return builtins.max((tf.as_dtype(d) for d in dtypes), key=lambda d: d.size)


def matmul(x1: Any, x2: Any, /) -> Any:
    return tf.linalg.matmul(x1, x2)


def concat(arrays: Any, /, *, axis: int = 0) -> Any:
    return tf.concat(list(arrays), axis)


def equal(x1: Any, x2: Any, /) -> Any:
    x1, x2 = _pair(x1, x2)
    return tf.equal(x1, x2)


def not_equal(x1: Any, x2: Any, /) -> Any:
    x1, x2 = _pair(x1, x2)
    return tf.not_equal(x1, x2)


def _pair(x1: Any, x2: Any) -> tuple[Any, Any]:
    """Both operands as tensors of one dtype (a Python scalar takes the tensor's dtype)."""
    if not isinstance(x1, (tf.Tensor, tf.Variable)):
        return _as_tensor(x1, like=x2), x2
    return x1, _as_tensor(x2, like=x1)
