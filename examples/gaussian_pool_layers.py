"""Seed 002's custom pooling layers, declared with convsched.layers.custom.CustomLayer.

    GaussianPool2d     differentiable (Gaussian) pooling, Zeiler & Fergus 2012: each output is the window
                       convolved with a normalized k x k Gaussian; several kernels (variances) per feature map
    StochasticPool2d   stochastic pooling, Zeiler & Fergus 2013 (forward pass): train mode samples one
                       activation per window with probability a_i / sum(a); test mode returns sum(a_i^2)/sum(a)

Their schedules are files in examples/schedules/<kind>/ (registered by TEMPLATES); examples/
custom_gaussian_pool.py compiles, checks and times them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from convsched.kernel import aligned
from convsched.layers.base import check_positive
from convsched.layers.custom import CustomLayer, TensorSpec


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
        return out.reshape(self.n, self.oh, self.ow, self.m * self.c).astype(np.float32)


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
        K, Q = self.k, self.k * self.k
        zero = expr.const(0.0, "float32")
        act = te.compute(x.shape, lambda n, h, w, c: expr.max(x[n, h, w, c], zero), name="act")

        def a(n, oh, ow, c, q):
            return act[n, oh * K + q // K, ow * K + q % K, c]

        shape = (self.n, self.oh, self.ow, self.c)
        r = te.reduce_axis((0, Q), "r")
        # q before c: the vectorized c loop then stores cum contiguously (c last measured 36x slower than max
        # pooling with (.., c, q): stride-Q scatters)
        cum = te.compute((self.n, self.oh, self.ow, Q, self.c), lambda n, oh, ow, q, c: te.sum(
            expr.if_then_else(r <= q, a(n, oh, ow, c, r), zero), axis=r), name="cum")
        q = te.reduce_axis((0, Q), "q")
        if self.mode == "train":
            def picked(n, oh, ow, c, q):
                t = u[n, oh, ow, c] * cum[n, oh, ow, Q - 1, c]
                first = expr.all(cum[n, oh, ow, q, c] > t,
                                 expr.any(q == 0, cum[n, oh, ow, expr.max(q - 1, 0), c] <= t))
                return expr.if_then_else(first, a(n, oh, ow, c, q), zero)
            return te.compute(shape, lambda n, oh, ow, c: te.sum(picked(n, oh, ow, c, q), axis=q), name="pool")
        sq = te.compute(shape, lambda n, oh, ow, c: te.sum(a(n, oh, ow, c, q) * a(n, oh, ow, c, q), axis=q),
                        name="pool")
        return te.compute(shape, lambda n, oh, ow, c: expr.if_then_else(
            cum[n, oh, ow, Q - 1, c] > zero, sq[n, oh, ow, c] / cum[n, oh, ow, Q - 1, c], zero), name="out")

    def reference(self, x, u=None):
        K = self.k
        a = np.maximum(x[:, :self.oh * K, :self.ow * K], 0).astype(np.float32)
        win = a.reshape(self.n, self.oh, K, self.ow, K, self.c).transpose(0, 1, 3, 5, 2, 4)
        win = win.reshape(self.n, self.oh, self.ow, self.c, K * K)
        cum = np.cumsum(win, axis=-1, dtype=np.float32)     # sequential float32 sums, like the kernel
        S = cum[..., -1]
        if self.mode == "test":
            sq = (win.astype(np.float64) ** 2).sum(-1)
            return np.where(S > 0, sq / np.where(S > 0, S, 1), 0).astype(np.float32)
        t = (u * S).astype(np.float32)
        above = cum > t[..., None]
        first = np.argmax(above, axis=-1)
        y = np.take_along_axis(win, first[..., None], axis=-1)[..., 0]
        return np.where(above.any(-1), y, 0).astype(np.float32)
