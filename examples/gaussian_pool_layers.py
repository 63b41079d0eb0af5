"""Seed 002's custom pooling layers, declared with convsched.layers.custom.CustomLayer.

    GaussianPool2d     differentiable (Gaussian) pooling, Zeiler & Fergus 2012: each output is the window
                       convolved with a normalized k x k Gaussian; several kernels (variances) per feature map
    StochasticPool2d   stochastic pooling, Zeiler & Fergus 2013 (forward pass): train mode samples one
                       activation per window with probability a_i / sum(a); test mode returns sum(a_i^2)/sum(a)
Their gradients (layer.backward(), docs/backward.md): GaussianPool2dGrad (a gather over the windows that
contain each input), and, for train-mode stochastic pooling, StochasticPool2dSampled (the forward that also
returns the sampled positions) with StochasticPool2dGrad (dy routed to them).

Their schedules are files in examples/schedules/<kind>/ (registered by TEMPLATES); examples/
custom_gaussian_pool.py compiles, checks and times them.

Over 400 lines: seed 002's two layers with their gradients and references, one file a user copies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from convsched.kernel import aligned
from convsched.layers.base import check_positive
from convsched.layers.custom import CustomGrad, CustomLayer, TensorSpec, out_dtype, window_of


@dataclass(frozen=True)
class GaussianPool2d(CustomLayer):
    """y[n, oh, ow, j*c + ch] = sum_{a,b} g_j[a] g_j[b] x[n, oh*stride + a - pad, ow*stride + b - pad, ch]

    g_j: the k-tap Gaussian exp(-(a - (k-1)/2)^2 / (2 variances[j])), normalized to sum 1, so the k x k
    kernel g_j g_j^T sums to 1 (a very large variance is average pooling over the window). m = len(variances)
    kernels per feature map: the output has m*c channels, kernel j's maps first (channel j*c + ch).
    Zero padding. NHWC float32.

    Arguments: x (n, h, w, c), taps (m, k) (filled in by prepare_inputs: call the kernel with x alone).
    Algorithms: "direct" (k*k MACs per output) and "separable" (a row pass then a column pass, ~2k MACs).
    Stages and axes:
      "pad"      zero-padded x; axes n, h, w, c
      "weights"  direct only: the 2-D kernels; axes j, a, b
      "rows"     separable only: horizontal pass over every padded row; spatial n, hp, ow, co; reduction kw
      "pool"     the output; spatial n, oh, ow, co (co = j*c + ch); reduction kh, kw (direct) or kh (separable)
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64
    k: int = 5
    stride: int = 2
    pad: int = 2
    variances: tuple = (1.0, 4.0)

    KIND: ClassVar[str] = "gaussian_pool2d"
    TEMPLATES: ClassVar[str] = "schedules"
    DEFAULT_TEMPLATE: ClassVar[str] = "gaussian_pool2d/separable"
    ALGORITHMS: ClassVar[tuple] = ("direct", "separable")
    op_unit: ClassVar[str] = "FLOP"

    def __post_init__(self):
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c, k=self.k, stride=self.stride)
        if not self.variances or min(self.variances) <= 0:
            raise ValueError(f"GaussianPool2d: variances must be positive, got {self.variances}")
        if not 0 <= self.pad < self.k:
            raise ValueError(f"GaussianPool2d: pad must be in [0, k), got {self.pad}")
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"GaussianPool2d: the {self.k}x{self.k} window does not fit {self.h}x{self.w}")
        super().__post_init__()

    @property
    def m(self):
        return len(self.variances)

    @property
    def oh(self):
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def ow(self):
        return (self.w + 2 * self.pad - self.k) // self.stride + 1

    def taps(self) -> np.ndarray:
        """(m, k) float32: the normalized 1-D Gaussians (computed once per layer, 64-byte aligned so that a
        kernel call passes them straight through; do not modify)."""
        return self.cached("taps", self._taps)

    def _taps(self) -> np.ndarray:
        d = np.arange(self.k) - (self.k - 1) / 2
        g = np.exp(-d[None, :] ** 2 / (2 * np.array(self.variances)[:, None]))
        return aligned((g / g.sum(axis=1, keepdims=True)).astype(np.float32))

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32"),
                TensorSpec("taps", (self.m, self.k), "float32")]

    def prepare_inputs(self, arrays):
        return list(arrays) + [self.taps()] if len(arrays) == 1 else list(arrays)

    def random_inputs(self, seed=0):
        return [np.random.default_rng(seed).uniform(-1, 1, (self.n, self.h, self.w, self.c)).astype(np.float32)]

    def ops(self):  # MACs of the direct definition (the work the output stands for, whatever the algorithm)
        return self.n * self.oh * self.ow * self.m * self.c * self.k * self.k

    def tolerance(self):
        return (1e-5, 1e-5)

    def compute(self, te, expr, x, taps, algorithm="direct"):
        C, p, s, K = self.c, self.pad, self.stride, self.k
        H, W = self.h, self.w
        padded = te.compute((self.n, H + 2 * p, W + 2 * p, C), lambda n, h, w, c: expr.if_then_else(
            expr.all(h >= p, h < H + p, w >= p, w < W + p), x[n, h - p, w - p, c], expr.const(0.0, "float32")),
            name="pad")
        out_shape = (self.n, self.oh, self.ow, self.m * C)
        kh = te.reduce_axis((0, K), "kh")
        if algorithm == "direct":
            kw = te.reduce_axis((0, K), "kw")
            wts = te.compute((self.m, K, K), lambda j, a, b: taps[j, a] * taps[j, b], name="weights")
            return te.compute(out_shape, lambda n, oh, ow, co: te.sum(
                padded[n, oh * s + kh, ow * s + kw, co % C] * wts[co // C, kh, kw], axis=[kh, kw]), name="pool")
        kw = te.reduce_axis((0, K), "kw")
        rows = te.compute((self.n, H + 2 * p, self.ow, self.m * C), lambda n, hp, ow, co: te.sum(
            padded[n, hp, ow * s + kw, co % C] * taps[co // C, kw], axis=kw), name="rows")
        return te.compute(out_shape, lambda n, oh, ow, co: te.sum(
            rows[n, oh * s + kh, ow, co] * taps[co // C, kh], axis=kh), name="pool")

    def reference(self, x, taps=None):
        g = self.taps().astype(np.float64)
        p, s = self.pad, self.stride
        xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
        out = np.zeros((self.n, self.oh, self.ow, self.m, self.c))
        for a in range(self.k):
            for b in range(self.k):
                win = xp[:, a: a + s * (self.oh - 1) + 1: s, b: b + s * (self.ow - 1) + 1: s]
                out += win[:, :, :, None, :] * (g[:, a] * g[:, b])[None, None, None, :, None]
        return out.reshape(self.n, self.oh, self.ow, self.m * self.c).astype(out_dtype(x))      # float64 in: float64 out (gradient checks)


@dataclass(frozen=True)
class StochasticPool2d(CustomLayer):
    """Stochastic pooling forward pass over non-overlapping k x k windows (stride k), NHWC float32.

    a = max(x, 0) (the method assumes non-negative activations). In each window, in row-major order a_0..a_{k*k-1},
    cum_q = a_0 + ... + a_q (float32, in that order), S = cum_last.
      mode "train": y = a_q for the first q with cum_q > u * S, where u (n, oh, ow, c) are uniform [0, 1)
                    numbers you pass in (so a run is reproducible): sampling q with probability a_q / S.
                    y = 0 when S = 0 (or when rounding leaves u * S == S).
      mode "test":  y = sum(a_q^2) / S (the probability-weighted average), 0 when S = 0.
    Arguments: x (n, h, w, c), and u (n, oh, ow, c) in train mode.
    Stages: "act" (max(x, 0); n, h, w, c), "cum" (n, oh, ow, q, c; reduction r), "pool" (n, oh, ow, c;
    reduction q): the selected (train) or weighted (test) sum, "out" (test only: / S).
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64
    k: int = 2
    mode: str = "train"

    KIND: ClassVar[str] = "stochastic_pool2d"
    TEMPLATES: ClassVar[str] = "schedules"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c, k=self.k)
        if self.mode not in ("train", "test"):
            raise ValueError(f"StochasticPool2d: mode must be 'train' or 'test', got {self.mode!r}")
        if self.h < self.k or self.w < self.k:
            raise ValueError(f"StochasticPool2d: window {self.k} larger than the {self.h}x{self.w} input")
        super().__post_init__()

    @property
    def oh(self):
        return self.h // self.k

    @property
    def ow(self):
        return self.w // self.k

    def input_specs(self):
        specs = [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]
        if self.mode == "train":
            specs.append(TensorSpec("u", (self.n, self.oh, self.ow, self.c), "float32"))
        return specs

    def random_inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        xs = [rng.uniform(-1, 1, (self.n, self.h, self.w, self.c)).astype(np.float32)]
        if self.mode == "train":
            xs.append(rng.uniform(0, 1, (self.n, self.oh, self.ow, self.c)).astype(np.float32))
        return xs

    def ops(self):
        return self.n * self.oh * self.ow * self.c * self.k * self.k

    def tolerance(self):
        return (1e-5, 1e-6)

    def compute(self, te, expr, x, u=None):
        Q = self.k * self.k
        zero = expr.const(0.0, "float32")
        a = self._activations(te, expr, x)

        shape = (self.n, self.oh, self.ow, self.c)
        cum = self._cumulative(te, expr, a)
        q = te.reduce_axis((0, Q), "q")
        if self.mode == "train":
            def picked(n, oh, ow, c, q):
                return expr.if_then_else(self._first(expr, u, cum, n, oh, ow, c, q), a(n, oh, ow, c, q), zero)
            return te.compute(shape, lambda n, oh, ow, c: te.sum(picked(n, oh, ow, c, q), axis=q), name="pool")
        sq = te.compute(shape, lambda n, oh, ow, c: te.sum(a(n, oh, ow, c, q) * a(n, oh, ow, c, q), axis=q),
                        name="pool")
        return te.compute(shape, lambda n, oh, ow, c: expr.if_then_else(
            cum[n, oh, ow, Q - 1, c] > zero, sq[n, oh, ow, c] / cum[n, oh, ow, Q - 1, c], zero), name="out")

    def _activations(self, te, expr, x):
        """Stage "act" = max(x, 0); returns a(n, oh, ow, c, q): window (oh, ow)'s q-th activation, row-major."""
        K = self.k
        act = te.compute(x.shape, lambda n, h, w, c: expr.max(x[n, h, w, c], expr.const(0.0, "float32")),
                         name="act")
        return lambda n, oh, ow, c, q: act[n, oh * K + q // K, ow * K + q % K, c]

    def _windows(self, x):
        """numpy: (the windows' activations (n, oh, ow, c, k*k), their float32 prefix sums)."""
        K = self.k
        a = np.maximum(x[:, :self.oh * K, :self.ow * K], 0).astype(np.float32)
        win = a.reshape(self.n, self.oh, K, self.ow, K, self.c).transpose(0, 1, 3, 5, 2, 4)
        win = win.reshape(self.n, self.oh, self.ow, self.c, K * K)
        return win, np.cumsum(win, axis=-1, dtype=np.float32)     # sequential float32 sums, like the kernel

    def _cumulative(self, te, expr, a):
        """Stage "cum": the prefix sums cum_q of every window (a(n, oh, ow, c, q) = its q-th activation)."""
        Q = self.k * self.k
        r = te.reduce_axis((0, Q), "r")
        # q before c: the vectorized c loop then stores cum contiguously (c last measured 36x slower than max
        # pooling with (.., c, q): stride-Q scatters)
        return te.compute((self.n, self.oh, self.ow, Q, self.c), lambda n, oh, ow, q, c: te.sum(
            expr.if_then_else(r <= q, a(n, oh, ow, c, r), expr.const(0.0, "float32")), axis=r), name="cum")

    def _first(self, expr, u, cum, n, oh, ow, c, q):
        """Whether q is the first window entry whose prefix sum passes u * S (the sampled one)."""
        t = u[n, oh, ow, c] * cum[n, oh, ow, self.k * self.k - 1, c]
        return expr.all(cum[n, oh, ow, q, c] > t, expr.any(q == 0, cum[n, oh, ow, expr.max(q - 1, 0), c] <= t))

    def training_forward(self):
        """Train mode: StochasticPool2dSampled, which also returns the sampled positions the backward reads."""
        if self.mode != "train":
            raise ValueError("StochasticPool2d: test mode samples nothing; its backward is not provided "
                             "(train with mode='train')")
        return StochasticPool2dSampled(**self.params())

    def reference(self, x, u=None):
        win, cum = self._windows(x)
        S = cum[..., -1]
        if self.mode == "test":
            sq = (win.astype(np.float64) ** 2).sum(-1)
            return np.where(S > 0, sq / np.where(S > 0, S, 1), 0).astype(np.float32)
        t = (u * S).astype(np.float32)
        above = cum > t[..., None]
        first = np.argmax(above, axis=-1)
        y = np.take_along_axis(win, first[..., None], axis=-1)[..., 0]
        return np.where(above.any(-1), y, 0).astype(np.float32)


# ----------------------------------------------------------------------------------------------- gradients
@dataclass(frozen=True)
class GaussianPool2dGrad(CustomGrad):
    """dx of GaussianPool2d (the kernels are fixed: no gradient for the variances), as a gather:

        dx[n, h, w, ch] = sum over kernels j and the windows (oh, ow) that contain (h, w) of
                          g_j[a] g_j[b] dy[n, oh, ow, j*c + ch],   a = h + pad - oh*stride, b likewise
    Each input position sums the ceil(k/stride)^2 candidate windows around it (window_of(); out-of-image windows
    and taps masked), so no two iterations write the same element: no atomics, no zeroing pass. Padding
    needs no special case: the forward's kernels are normalized once (zero padding counts), so the backward is
    the transposed convolution with the same kernels, cut to the image.

    Arguments: dy (n, oh, ow, m*c), taps (m, k) (filled in by prepare_inputs: call the kernel with dy alone).
    Output: dx (n, h, w, c).
    Algorithms and stages:
      direct:    "weights" (j, a, b: the 2-D kernels), "dx" (spatial n, h, w, ch; reduction j, rh, rw)
      separable: "pad" dy zero-padded by the candidate windows outside it (padding(): before, after),
                 "cols" the transposed column pass for every input row (spatial n, h, ow (padded), co; reduction rh),
                 "dx" the transposed row pass (spatial n, h, w, ch; reduction j, rw)
    """

    KIND: ClassVar[str] = "gaussian_pool2d_grad"
    TEMPLATES: ClassVar[str] = "schedules"
    DEFAULT_TEMPLATE: ClassVar[str] = "gaussian_pool2d_grad/separable"
    ALGORITHMS: ClassVar[tuple] = ("direct", "separable")
    ARGS: ClassVar[tuple] = ("grad:y", "input:taps")
    WRT: ClassVar[tuple] = ("x",)
    op_unit: ClassVar[str] = "FLOP"

    @property
    def candidates(self) -> int:
        return -(-self.forward.k // self.forward.stride)

    def prepare_inputs(self, arrays):
        return list(arrays) + [self.forward.taps()] if len(arrays) == 1 else list(arrays)

    def random_inputs(self, seed=0):
        f = self.forward
        return [np.random.default_rng(seed).uniform(-1, 1, (f.n, f.oh, f.ow, f.m * f.c)).astype(np.float32)]

    def ops(self):          # MACs of the gather: every input element, every kernel, every candidate window
        f = self.forward
        return f.n * f.h * f.w * f.c * f.m * self.candidates ** 2

    def tolerance(self):
        return (1e-5, 1e-5)

    def compute(self, te, expr, dy, taps, algorithm="direct"):
        f = self.forward
        C, p, s, K, R = f.c, f.pad, f.stride, f.k, self.candidates
        zero = expr.const(0.0, "float32")

        def window(i, r, size_out):          # (window, tap clamped into the kernel for the loads, valid)
            o, tap, ok = window_of(expr, i, r, size_out, K, s, p)
            return o, expr.min(tap, K - 1), ok

        j = te.reduce_axis((0, f.m), "j")
        rw = te.reduce_axis((0, R), "rw")
        rh = te.reduce_axis((0, R), "rh")
        if algorithm == "direct":
            wts = te.compute((f.m, K, K), lambda jj, a, b: taps[jj, a] * taps[jj, b], name="weights")

            def body(n, h, w, ch):
                oh, a, okh = window(h, rh, f.oh)
                ow, b, okw = window(w, rw, f.ow)
                return te.sum(expr.Select(expr.all(okh, okw), dy[n, oh, ow, j * C + ch] * wts[j, a, b], zero),
                              axis=[j, rh, rw])
            return te.compute((f.n, f.h, f.w, C), body, name="dx")

        # separable: dy zero-padded by the candidate windows that fall outside it, so that the column pass
        # reads it with plain affine indices (with clamped indices, TVM computed the wrong region of "cols"
        # under the row tile: the edge columns were lost)
        (bh, ah), (bw, aw) = self.padding(f.h, f.oh), self.padding(f.w, f.ow)
        OHp, OWp = bh + f.oh + ah, bw + f.ow + aw
        dyp = te.compute((f.n, OHp, OWp, f.m * C), lambda n, i, jj, co: expr.if_then_else(
            expr.all(i >= bh, i < bh + f.oh, jj >= bw, jj < bw + f.ow), dy[n, i - bh, jj - bw, co], zero), name="pad")

        def tap(i, r):                        # (row of the padded grid, tap clamped for the load, tap inside k)
            t = (i + p) % s + r * s
            return (i + p) // s - r, expr.min(t, K - 1), t < K

        def col(n, h, jj, co):
            o, a, ok = tap(h, rh)
            return te.sum(expr.Select(ok, dyp[n, o + bh, jj, co] * taps[co // C, a], zero), axis=rh)

        cols = te.compute((f.n, f.h, OWp, f.m * C), col, name="cols")

        def body(n, h, w, ch):
            o, b, ok = tap(w, rw)
            return te.sum(expr.Select(ok, cols[n, h, o + bw, j * C + ch] * taps[j, b], zero), axis=[j, rw])
        return te.compute((f.n, f.h, f.w, C), body, name="dx")

    def padding(self, size: int, size_out: int) -> tuple:
        """(before, after): the candidate windows of positions 0..size-1 that lie outside 0..size_out-1."""
        f = self.forward
        return self.candidates - 1 - f.pad // f.stride, max(0, (size - 1 + f.pad) // f.stride - (size_out - 1))

    def reference(self, dy, taps=None):
        """The definition, scattered tap by tap in float64 (the kernel gathers)."""
        f = self.forward
        g = f.taps().astype(np.float64)
        p, s = f.pad, f.stride
        d = dy.astype(np.float64).reshape(f.n, f.oh, f.ow, f.m, f.c)
        dxp = np.zeros((f.n, f.h + 2 * p, f.w + 2 * p, f.c))
        for a in range(f.k):
            for b in range(f.k):
                dxp[:, a: a + s * (f.oh - 1) + 1: s, b: b + s * (f.ow - 1) + 1: s] += \
                    np.einsum("nhwjc,j->nhwc", d, g[:, a] * g[:, b])
        return dxp[:, p: p + f.h, p: p + f.w].astype(out_dtype(dy))


@dataclass(frozen=True)
class StochasticPool2dSampled(StochasticPool2d):
    """StochasticPool2d(mode="train") that also returns WHERE it sampled: the training forward of its backward.

    Outputs: y (as StochasticPool2d), pos (n, oh, ow, c) int32 = the row-major window index q (0..k*k-1) of the
    value y took, -1 where nothing was taken (S = 0). With pos explicit, the backward is deterministic: it
    routes dy to pos, it never samples again. Stages: as StochasticPool2d, with "pool" a reduction over q with
    two results (the value, and the largest q selected).
    """

    KIND: ClassVar[str] = "stochastic_pool2d_sampled"
    OUTPUT_NAMES: ClassVar[tuple] = ("y", "pos")

    def __post_init__(self):
        if self.mode != "train":
            raise ValueError("StochasticPool2dSampled: only train mode samples (test mode is deterministic)")
        super().__post_init__()

    def compute(self, te, expr, x, u=None):
        Q = self.k * self.k
        zero = expr.const(0.0, "float32")
        a = self._activations(te, expr, x)

        cum = self._cumulative(te, expr, a)
        q = te.reduce_axis((0, Q), "q")
        taken = te.comm_reducer(lambda x0, x1: (x0[0] + x1[0], expr.max(x0[1], x1[1])),
                                lambda t0, t1: (expr.const(0.0, t0), expr.const(-1, t1)), name="taken")

        def pick(n, oh, ow, c):
            first = self._first(expr, u, cum, n, oh, ow, c, q)
            return taken((expr.Select(first, a(n, oh, ow, c, q), zero),
                          expr.Select(first, q.var.astype("int32"), expr.const(-1, "int32"))), axis=q)

        y, pos = te.compute((self.n, self.oh, self.ow, self.c), pick, name="pool")
        return [y, pos]

    def reference(self, x, u=None):
        win, cum = self._windows(x)
        t = (u * cum[..., -1]).astype(np.float32)
        above = cum > t[..., None]
        pos = np.where(above.any(-1), np.argmax(above, axis=-1), -1)
        y = np.where(pos >= 0, np.take_along_axis(win, np.maximum(pos, 0)[..., None], axis=-1)[..., 0], 0)
        return y.astype(np.float32), pos.astype(np.int32)


@dataclass(frozen=True)
class StochasticPool2dGrad(CustomGrad):
    """dx of train-mode stochastic pooling: dy routed to the sampled position, 0 elsewhere.

        dx[n, h, w, c] = dy[n, h//k, w//k, c] if pos[n, h//k, w//k, c] == (h%k)*k + w%k, else 0
    (rows and columns beyond oh*k, ow*k belong to no window: 0). The sampled value is > 0 (a window entry of
    0 can never be the first to pass u*S), so the ReLU in front of the sampling passes the gradient unchanged.
    Arguments: pos (n, oh, ow, c) int32 (saved by StochasticPool2dSampled), dy (n, oh, ow, c).
    Output: dx (n, h, w, c). Stages: "dx" (n, h, w, c; no reduction: each input belongs to one window).
    """

    KIND: ClassVar[str] = "stochastic_pool2d_grad"
    TEMPLATES: ClassVar[str] = "schedules"
    ARGS: ClassVar[tuple] = ("saved:pos", "grad:y")
    WRT: ClassVar[tuple] = ("x",)
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def tolerance(self):
        return (0.0, 0.0)

    def random_inputs(self, seed=0):
        """The positions of a real sampling (StochasticPool2dSampled's reference), and random dy."""
        f = self.forward.training_forward()
        x, u = f.random_inputs(seed)
        pos = f.reference(x, u)[1]
        dy = np.random.default_rng(seed + 1).uniform(-1, 1, pos.shape).astype(np.float32)
        return [pos, dy]

    def compute(self, te, expr, pos, dy):
        f = self.forward
        K = f.k

        def body(n, h, w, c):
            oh, ow = expr.min(h // K, f.oh - 1), expr.min(w // K, f.ow - 1)      # clamped: loads in bounds
            hit = expr.all(h < f.oh * K, w < f.ow * K, pos[n, oh, ow, c] == (h % K) * K + w % K)
            return expr.Select(hit, dy[n, oh, ow, c], expr.const(0.0, "float32"))
        return te.compute((f.n, f.h, f.w, f.c), body, name="dx")

    def reference(self, pos, dy):
        f = self.forward
        K = f.k
        dx = np.zeros((f.n, f.h, f.w, f.c), dtype=out_dtype(dy))
        for q in range(K * K):
            view = dx[:, q // K: f.oh * K: K, q % K: f.ow * K: K]
            view[...] = np.where(pos == q, dy, 0)
        return dx


GaussianPool2d.GRADIENTS = (GaussianPool2dGrad,)
StochasticPool2d.GRADIENTS = (StochasticPool2dGrad,)
