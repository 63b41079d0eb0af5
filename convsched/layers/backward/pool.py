"""Backward of pooling, NHWC fp32: max pooling that records its argmax, and the input gradients of max,
average and global average pooling.

Max pooling RECORDS its argmax: Pool2d(kind="max").backward().forward is Pool2dArgmax, a forward that also
returns, for every output, the flat index h*W + w of the input it took; the gradient routes dy there. Ties
go to the first maximum in row-major window order (kh, then kw), as PyTorch's CPU max_pool2d does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...backend import expr, te
from .. import registry
from ..base import Declaration, TensorSpec, pair
from ..pool import GlobalAvgPool2d, Pool2d
from .base import Backward, NestedLayer, out_dtype, step, window_candidates, window_of

INT32_MAX = 2 ** 31 - 1


def _isnan(v):
    """NaN test on the bits (exponent all ones, mantissa not zero). TVM 0.27 miscompiled tirx.isnan inside a
    vectorized tuple reduction (wrong argmax in 23 of 32 lanes with no NaN in sight), and its simplifier folds
    v != v to false."""
    bits = expr.reinterpret("int32", v) & expr.const(0x7FFFFFFF, "int32")
    return bits > expr.const(0x7F800000, "int32")


def _geometry(pool: Pool2d):
    return pair(pool.k), pair(pool.stride), pair(pool.pad)


@dataclass(frozen=True)
class Pool2dArgmax(NestedLayer):
    """Max pooling that records where each maximum came from: the forward of a max pool being trained.

    Arguments: x (n, h, w, c). Outputs: y (n, oh, ow, c) float32, as Pool2d(kind="max") computes it, and
    argmax (n, oh, ow, c) int32 = h * w_in + w of the input element y took (inside the image: padding never
    wins). Ties: the first maximum in row-major window order (smallest flat index). A NaN wins over numbers, and
    of several NaNs the last in window order: PyTorch's CPU rule (`val > max || isnan(val)` while scanning).
    Stages and axes:
      "pool"  one reduction with two results (value, index); spatial n, oh, ow, c; reduction kh, kw.
              The padded border is not a stage: out-of-image taps are masked (value -inf, index INT32_MAX).
    """

    pool: Pool2d = Pool2d(kind="max")

    KIND: ClassVar[str] = "pool2d_argmax"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.pool, Pool2d) or self.pool.kind != "max":
            raise ValueError(f"Pool2dArgmax: pool must be a Pool2d(kind='max'), got {self.pool!r}")

    def input_specs(self):
        return self.pool.input_specs()

    def output_specs(self):
        shape = self.pool.output_specs()[0].shape
        return [TensorSpec("y", shape, "float32"), TensorSpec("argmax", shape, "int32")]

    def ops(self):
        return self.pool.ops()

    def default_template(self):
        return "pool2d_argmax/nhwc"

    def tolerance(self):
        return (0.0, 0.0)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        p = self.pool
        (kh, kw), (sh, sw), (ph, pw) = _geometry(p)
        H, W = p.h, p.w
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]

        def combine(a, b):                 # a: running (index, value), b: the next tap's
            # a total order, so the result does not depend on the reduction's loop order: NaN above every
            # number (the last NaN in window order above the others), then the larger value, then on ties
            # the smaller index (the first maximum in window order)
            an, bn = _isnan(a[1]), _isnan(b[1])
            numbers = expr.And(expr.Not(expr.Or(an, bn)), expr.Or(b[1] > a[1], expr.And(b[1] == a[1], b[0] < a[0])))
            take = expr.Or(expr.And(bn, expr.Or(expr.Not(an), b[0] > a[0])), numbers)
            return expr.Select(take, b[0], a[0]), expr.Select(take, b[1], a[1])

        def identity(ti, tv):
            return expr.const(INT32_MAX, ti), expr.const(-np.inf, tv)

        argmax = te.comm_reducer(combine, identity, name="argmax")
        rh = te.reduce_axis((0, kh), "kh")
        rw = te.reduce_axis((0, kw), "kw")

        def body(n, oh, ow, c):
            h, w = oh * sh + rh - ph, ow * sw + rw - pw
            inside = expr.all(h >= 0, h < H, w >= 0, w < W)
            hc, wc = expr.max(expr.min(h, H - 1), 0), expr.max(expr.min(w, W - 1), 0)   # loads stay in bounds
            value = expr.Select(inside, x[n, hc, wc, c], expr.const(-np.inf, "float32"))
            index = expr.Select(inside, h * W + w, expr.const(INT32_MAX, "int32"))
            return argmax((index, value), axis=[rh, rw])

        idx, val = te.compute((p.n, p.oh, p.ow, p.c), body, name=prefix + "pool")
        return Declaration(fresh, [val, idx])

    def reference(self, x):
        p = self.pool
        (kh, kw), (sh, sw), (ph, pw) = _geometry(p)
        xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-np.inf)
        best = np.full((p.n, p.oh, p.ow, p.c), -np.inf)
        where = np.full(best.shape, -1, dtype=np.int64)
        for i in range(kh):                          # row-major window order: kh, then kw
            for j in range(kw):
                v = _taps(xp, i, j, sh, sw, p.oh, p.ow)
                h, w = np.arange(p.oh) * sh + i - ph, np.arange(p.ow) * sw + j - pw
                inside = ((h >= 0) & (h < p.h))[:, None] & ((w >= 0) & (w < p.w))[None, :]
                # strictly greater: the first maximum stays (the first tap inside the image always enters);
                # a NaN always enters, so the last NaN stays (PyTorch's scan)
                take = inside[None, :, :, None] & ((v > best) | np.isnan(v) | (where < 0))
                best = np.where(take, v, best)
                where = np.where(take, (h[:, None] * p.w + w[None, :])[None, :, :, None], where)
        return best.astype(x.dtype), where.astype(np.int32)

    def random_inputs(self, seed=0):
        """Small integers: most windows hold ties, so every test checks the tie-breaking rule exactly."""
        p = self.pool
        return [np.random.default_rng(seed).integers(-3, 4, (p.n, p.h, p.w, p.c)).astype(np.float32)]


@dataclass(frozen=True)
class Pool2dGrad(NestedLayer):
    """dx of Pool2d (max or avg), NHWC fp32, written as a gather: every input position sums the windows that
    contain it (at most ceil(k/stride) per axis; window_of() in layers/backward/base.py), so no two
    iterations write the same dx element.

      kind "max":  arguments argmax (n, oh, ow, c) int32 (saved by Pool2dArgmax), dy (n, oh, ow, c).
                   dx[n, h, w, c] = sum of dy[n, oh, ow, c] over the windows whose argmax is h * w_in + w.
      kind "avg":  arguments dy (n, oh, ow, c).
                   dx[n, h, w, c] = sum of dy[n, oh, ow, c] / count(oh, ow) over the windows containing
                   (h, w); count = the window's elements inside the image (Pool2d's divisor).
    Output: dx (n, h, w, c).
    Stages and axes:
      "dx"  spatial n, h, w, c; reduction rh, rw (the candidate windows along h and along w)
    """

    forward: Pool2d = Pool2d()

    KIND: ClassVar[str] = "pool2d_grad"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.forward, Pool2d):
            raise ValueError(f"Pool2dGrad: forward must be a Pool2d, got {self.forward!r}")

    @property
    def candidates(self) -> tuple[int, int]:
        """Windows that can contain one input position, along h and along w."""
        (kh, kw), (sh, sw), _ = _geometry(self.forward)
        return window_candidates(kh, sh), window_candidates(kw, sw)

    def input_specs(self):
        p = self.forward
        shape = (p.n, p.oh, p.ow, p.c)
        dy = TensorSpec("dy", shape, "float32")
        return [TensorSpec("argmax", shape, "int32"), dy] if p.kind == "max" else [dy]

    def output_specs(self):
        return [TensorSpec("dx", self.forward.input_specs()[0].shape, "float32")]

    def ops(self):
        p = self.forward
        rh, rw = self.candidates
        return p.n * p.h * p.w * p.c * rh * rw

    def default_template(self):
        return "pool2d_grad/nhwc"

    def tolerance(self):
        return (1e-6, 1e-6)

    def random_inputs(self, seed=0):
        """Max: the argmax of a random forward (a real one: each index inside its window), and random dy."""
        p = self.forward
        rng = np.random.default_rng(seed)
        dy = rng.uniform(-1, 1, (p.n, p.oh, p.ow, p.c)).astype(np.float32)
        if p.kind == "avg":
            return [dy]
        x = rng.integers(-3, 4, (p.n, p.h, p.w, p.c)).astype(np.float32)    # many ties
        return [Pool2dArgmax(p).reference(x)[1], dy]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        p = self.forward
        (kh, kw), (sh, sw), (ph, pw) = _geometry(p)
        H, W, OH, OW = p.h, p.w, p.oh, p.ow
        args, fresh = self.arguments(inputs, prefix)
        dy = args["dy"]
        Rh, Rw = self.candidates
        rh = te.reduce_axis((0, Rh), "rh")
        rw = te.reduce_axis((0, Rw), "rw")
        zero = expr.const(0.0, "float32")
        if p.kind == "max":
            am = args["argmax"]

            def body(n, h, w, c):
                oh, _, okh = window_of(expr, h, rh, OH, kh, sh, ph)
                ow, _, okw = window_of(expr, w, rw, OW, kw, sw, pw)
                hit = expr.all(okh, okw, am[n, oh, ow, c] == h * W + w)
                return te.sum(expr.Select(hit, dy[n, oh, ow, c], zero), axis=[rh, rw])

            dx = te.compute((p.n, H, W, p.c), body, name=prefix + "dx")
            return Declaration(fresh, [dx])

        def count(o, s, pad, k, size):             # window elements inside the image along one axis
            return expr.min(o * s - pad + k, size) - expr.max(o * s - pad, 0)

        def body(n, h, w, c):
            oh, _, okh = window_of(expr, h, rh, OH, kh, sh, ph)
            ow, _, okw = window_of(expr, w, rw, OW, kw, sw, pw)
            inv = 1.0 / (count(oh, sh, ph, kh, H) * count(ow, sw, pw, kw, W)).astype("float32")
            return te.sum(expr.Select(expr.all(okh, okw), dy[n, oh, ow, c] * inv, zero), axis=[rh, rw])

        dx = te.compute((p.n, H, W, p.c), body, name=prefix + "dx")
        return Declaration(fresh, [dx])

    def reference(self, *arrays):
        """The definition, scattered window by window in float64 (the kernel gathers instead)."""
        p = self.forward
        dy = arrays[-1]
        dt = out_dtype(dy)
        if p.kind == "max":
            am = arrays[0].astype(np.int64)
            flat = np.zeros((p.n, p.h * p.w, p.c))
            n_i, _, _, c_i = np.indices(am.shape)
            np.add.at(flat, (n_i, am, c_i), dy.astype(np.float64))
            return flat.reshape(p.n, p.h, p.w, p.c).astype(dt)
        (kh, kw), (sh, sw), (ph, pw) = _geometry(p)
        ones = np.pad(np.ones((1, p.h, p.w, 1)), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        cnt = sum(_taps(ones, i, j, sh, sw, p.oh, p.ow) for i in range(kh) for j in range(kw))
        g = dy.astype(np.float64) / cnt
        dxp = np.zeros((p.n, p.h + 2 * ph, p.w + 2 * pw, p.c))
        for i in range(kh):
            for j in range(kw):
                _taps(dxp, i, j, sh, sw, p.oh, p.ow)[...] += g     # one tap: no two windows meet
        return dxp[:, ph: ph + p.h, pw: pw + p.w].astype(dt)


def _taps(a, i, j, sh, sw, oh, ow):
    """The (oh, ow) view of padded array `a` at window tap (i, j): a[:, oh * sh + i, ow * sw + j]."""
    return a[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]


@dataclass(frozen=True)
class GlobalAvgPool2dGrad(NestedLayer):
    """dx of GlobalAvgPool2d: dx[n, h, w, c] = dy[n, 0, 0, c] / (h * w), NHWC fp32.

    Arguments: dy (n, 1, 1, c). Output: dx (n, h, w, c).
    Stages and axes: "dx" (n, h, w, c; no reduction).
    """

    forward: GlobalAvgPool2d = GlobalAvgPool2d()

    KIND: ClassVar[str] = "global_avg_pool2d_grad"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.forward, GlobalAvgPool2d):
            raise ValueError(f"GlobalAvgPool2dGrad: forward must be a GlobalAvgPool2d, got {self.forward!r}")

    def input_specs(self):
        return [TensorSpec("dy", (self.forward.n, 1, 1, self.forward.c), "float32")]

    def output_specs(self):
        return [TensorSpec("dx", self.forward.input_specs()[0].shape, "float32")]

    def ops(self):
        f = self.forward
        return f.n * f.h * f.w * f.c

    def default_template(self):
        return "global_avg_pool2d_grad/nhwc"

    def tolerance(self):
        return (1e-6, 1e-7)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        f = self.forward
        args, fresh = self.arguments(inputs, prefix)
        dy = args["dy"]
        scale = 1.0 / (f.h * f.w)
        dx = te.compute((f.n, f.h, f.w, f.c), lambda n, h, w, c: dy[n, 0, 0, c] * scale, name=prefix + "dx")
        return Declaration(fresh, [dx])

    def reference(self, dy):
        f = self.forward
        dx = np.broadcast_to(dy.astype(np.float64) / (f.h * f.w), (f.n, f.h, f.w, f.c))
        return np.ascontiguousarray(dx).astype(out_dtype(dy))


# ------------------------------------------------------------------------------ what layer.backward() returns
def pool2d_backward(pool: Pool2d) -> Backward:
    """max: forward Pool2dArgmax (records argmax), dx = Pool2dGrad(saved argmax, grad dy);
    avg: forward the layer itself, dx = Pool2dGrad(grad dy)."""
    grad = Pool2dGrad(pool)
    if pool.kind == "max":
        return Backward(Pool2dArgmax(pool), (step("dx", grad, "saved:argmax", "grad:y", wrt="x"),))
    return Backward(pool, (step("dx", grad, "grad:y", wrt="x"),))


def global_avg_pool2d_backward(pool: GlobalAvgPool2d) -> Backward:
    """dx = GlobalAvgPool2dGrad(grad dy)."""
    return Backward(pool, (step("dx", GlobalAvgPool2dGrad(pool), "grad:y", wrt="x"),))


registry.register_backward(Pool2d, pool2d_backward)
registry.register_backward(GlobalAvgPool2d, global_avg_pool2d_backward)
