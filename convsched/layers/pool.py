"""Pooling, NHWC: max and average over k x k windows, and global average pooling."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..backend import expr, te
from .base import Declaration, Layer, TensorSpec, canon_pair, check_positive, conv_out_size, pair


def nan_max():
    """The max reduction numpy's np.max and PyTorch's max pooling compute: NaN wins, -inf is a value. TVM's
    te.max combines with select(a > b, a, b), which drops a NaN met after a number, and starts from the lowest
    finite float, which a window of -inf would return. Here a pair that is neither a >= b nor b > a holds a NaN,
    and a + b is NaN. Max pool 112x112x64 3x3/2, 1 thread, rocketlake, 2026-12: 1.2x the time of te.max
    (LLVM's maximum intrinsic: 1.4x; an isnan() test: 20x the compile time of an unrolled 3x3 window)."""
    def combine(a, b):
        return expr.Select(a >= b, a, expr.Select(b > a, b, a + b))
    return te.comm_reducer(combine, lambda dtype: expr.const(-np.inf, dtype), name="nan_max")


@dataclass(frozen=True)
class Pool2d(Layer):
    """y = max or mean of each k x k window of x, NHWC, fp32.

    Arguments: x (n, h, w, c). Output: (n, oh, ow, c).
    kind "max": padding never wins (pad value is -inf); NaN in a window gives NaN, as in numpy and PyTorch.
    kind "avg": the mean over the window's elements that lie inside the image (padding is not counted,
    PyTorch's count_include_pad=False).

    Stages and axes:
      "pad"   padded input; axes n, h, w, c
      "pool"  the window reduction (max, or sum for avg); spatial n, oh, ow, c; reduction kh, kw
      "avg"   sum / number of valid elements (kind "avg" only); axes n, oh, ow, c
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64
    kind: str = "max"
    k: int | tuple = 2
    stride: int | tuple = 2
    pad: int | tuple = 0
    layout: str = "NHWC"
    dtype: str = "float32"

    KIND: ClassVar[str] = "pool2d"
    op_unit: ClassVar[str] = "OP"       # one compare or add per window element: memory-bound, no FMA peak
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        for f in ("k", "stride", "pad"):
            object.__setattr__(self, f, canon_pair(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        if self.kind not in ("max", "avg"):
            raise ValueError(f"Pool2d: kind must be 'max' or 'avg', got {self.kind!r}")
        if self.layout != "NHWC" or self.dtype != "float32":
            raise ValueError("Pool2d: only NHWC float32 is supported")
        if min(pair(self.k)) <= 0 or min(pair(self.stride)) <= 0 or min(pair(self.pad)) < 0:
            raise ValueError(f"Pool2d: k and stride must be positive and pad >= 0 (k={self.k}, stride="
                             f"{self.stride}, pad={self.pad})")
        if max(p - k + 1 for p, k in zip(pair(self.pad), pair(self.k))) > 0:
            raise ValueError(f"Pool2d: pad {self.pad} must be smaller than the window {self.k}")
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"Pool2d: window {self.k} does not fit the {self.h}x{self.w} input")

    @property
    def oh(self):
        (k, _), (s, _), (p, _) = pair(self.k), pair(self.stride), pair(self.pad)
        return conv_out_size(self.h, k, s, p, p, 1)

    @property
    def ow(self):
        (_, k), (_, s), (_, p) = pair(self.k), pair(self.stride), pair(self.pad)
        return conv_out_size(self.w, k, s, p, p, 1)

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), self.dtype)]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.oh, self.ow, self.c), self.dtype)]

    def ops(self) -> int:
        kh, kw = pair(self.k)
        return self.n * self.oh * self.ow * self.c * kh * kw

    def default_template(self) -> str:
        return "pool2d/nhwc"

    def tolerance(self):
        return (1e-6, 1e-6)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        H, W = self.h, self.w
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        fill = expr.const(-np.inf if self.kind == "max" else 0.0, self.dtype)
        padded = te.compute((self.n, H + 2 * ph, W + 2 * pw, self.c), lambda n, h, w, c: expr.if_then_else(
            expr.all(h >= ph, h < H + ph, w >= pw, w < W + pw), x[n, h - ph, w - pw, c], fill), name=prefix + "pad")
        rh = te.reduce_axis((0, kh), "kh")
        rw = te.reduce_axis((0, kw), "kw")
        shape = (self.n, self.oh, self.ow, self.c)
        reducer = nan_max() if self.kind == "max" else te.sum
        pool = te.compute(shape, lambda n, oh, ow, c: reducer(padded[n, oh * sh + rh, ow * sw + rw, c],
                                                              axis=[rh, rw]), name=prefix + "pool")
        if self.kind == "max":
            return Declaration(fresh, [pool])

        def valid(o, s, p, k, size):  # window elements inside the image along one axis
            lo = expr.max(o * s - p, 0)
            hi = expr.min(o * s - p + k, size)
            return hi - lo

        avg = te.compute(shape, lambda n, oh, ow, c: pool[n, oh, ow, c] / (
            valid(oh, sh, ph, kh, H) * valid(ow, sw, pw, kw, W)).astype(self.dtype), name=prefix + "avg")
        return Declaration(fresh, [avg])

    def reference(self, x):
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        fill = -np.inf if self.kind == "max" else 0.0
        xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=fill)
        ones = np.pad(np.ones((self.h, self.w)), ((ph, ph), (pw, pw)))
        acc = np.full((self.n, self.oh, self.ow, self.c), fill)
        cnt = np.zeros((self.oh, self.ow))
        for i in range(kh):
            for j in range(kw):
                win = xp[:, i: i + sh * (self.oh - 1) + 1: sh, j: j + sw * (self.ow - 1) + 1: sw]
                acc = np.maximum(acc, win) if self.kind == "max" else acc + win
                cnt += ones[i: i + sh * (self.oh - 1) + 1: sh, j: j + sw * (self.ow - 1) + 1: sw]
        if self.kind == "avg":
            acc = acc / cnt[None, :, :, None]
        return acc.astype(np.float64 if x.dtype == np.float64 else np.float32)   # float64: gradient checks


@dataclass(frozen=True)
class GlobalAvgPool2d(Layer):
    """y[n, 0, 0, c] = mean over h, w of x[n, h, w, c], NHWC fp32.

    Arguments: x (n, h, w, c). Output: (n, 1, 1, c).
    Stages: "pool" (sum; spatial n, i, j, c with i = j = 0; reduction rh, rw), "avg" (pool / (h*w)).
    """

    n: int = 1
    h: int = 7
    w: int = None       # None: follows h
    c: int = 512
    dtype: str = "float32"

    KIND: ClassVar[str] = "global_avg_pool2d"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        if self.dtype != "float32":
            raise ValueError("GlobalAvgPool2d: only float32 is supported")

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), self.dtype)]

    def output_specs(self):
        return [TensorSpec("y", (self.n, 1, 1, self.c), self.dtype)]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "global_avg_pool2d/nhwc"

    def tolerance(self):
        return (1e-5, 1e-6)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        rh = te.reduce_axis((0, self.h), "rh")
        rw = te.reduce_axis((0, self.w), "rw")
        pool = te.compute((self.n, 1, 1, self.c), lambda n, i, j, c: te.sum(x[n, i + rh, j + rw, c], axis=[rh, rw]),
                          name=prefix + "pool")
        avg = te.compute((self.n, 1, 1, self.c), lambda *i: pool(*i) * (1.0 / (self.h * self.w)), name=prefix + "avg")
        return Declaration(fresh, [avg])

    def reference(self, x):
        y = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
        return y.astype(np.float64 if x.dtype == np.float64 else np.float32)   # float64: gradient checks
