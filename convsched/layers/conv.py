"""fp32 2-D convolution: layouts NHWC, NCHW and blocked NCHWc; algorithms direct, im2col, Winograd F(2x2,3x3);
optional fused epilogue (bias, residual add, ReLU).

Which algorithm runs is the schedule's choice (a template's ALGORITHM): every algorithm declares the same
inputs and outputs, so a tuner can search across them. The numpy helpers of the blocked and panel layouts
(nchwc_pack, pack_weights_nchwc, pack_weights_panels, ...) live in layers.layout.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..backend import expr, te
from .base import Declaration, Layer, TensorSpec, canon_pair, check_choice, check_positive, conv_out_size, pair, relu
from .layout import (nchwc_pack, nchwc_unpack, pack_weights_nchwc, pack_weights_panels, unpack_weights_nchwc,
                     unpack_weights_panels)
from .winograd import winograd_conv

LAYOUTS = ("NHWC", "NCHW", "NCHWc")
ACTIVATIONS = (None, "relu")


@dataclass(frozen=True)
class Conv2d(Layer):
    """y = act(conv(x, w) + b + r), fp32.

    Arguments (in call order):
      NHWC:  x (n, h, w, cin), w (kh, kw, cin/groups, cout)   [HWIO: output channels contiguous]
             with wpack=P: w (cout/P, kh, kw, cin/groups, P)  [pre-packed GEMM panels: pack_weights()]
      NCHW:  x (n, cin, h, w), w (cout, cin/groups, kh, kw)   [OIHW]
      NCHWc: x (n, cin/cb, h, w, cb), w (cout/cb, cin/cb, kh, kw, cb, cb)  [pre-packed once: pack_weights()]
      then b (cout,) when bias=True, then r (the output's shape) when residual=True.
      Output: NHWC (n, oh, ow, cout); NCHW (n, cout, oh, ow); NCHWc (n, cout/cb, oh, ow, cb).
    stride, pad, dilation: an int or an (along h, along w) pair; padding is zeros, on both sides.
    groups: cin and cout are cut into `groups` groups; output group g sees input group g only
    (groups == cin == cout is depthwise). NCHWc takes groups=1 only; cb = cblock (8 = AVX2's fp32 lanes).
    residual: y = act(conv + b + r), r an extra input of the output's shape (ResNet's shortcut).

    Algorithms (a template's ALGORITHM) and their stages / axes (the schedule's vocabulary):
      every algorithm: "pad" (the zero-padded input, x's layout) ... "conv" (the convolution, output layout)
        then the epilogue, each with conv's spatial axes: "bias" (+ b[co]), "residual" (+ r),
        "act" (max(., 0), NaN stays NaN). The last stage present is the output.
      direct:  "conv" spatial NHWC n, oh, ow, co | NCHW n, co, oh, ow | NCHWc n, co_b, oh, ow, co;
               reduction kh, kw, ci (NCHW: ci, kh, kw; NCHWc: ci_b, kh, kw, ci), ci within a group/block.
      im2col (NHWC, groups=1): "im2col" col[n, oh, ow, kh, kw, ci] (the patch matrix, rows = pixels),
               "conv" = GEMM col x w: spatial n, oh, ow, co; reduction kh, kw, ci.
      winograd2x2 (NHWC, 3x3, stride 1, dilation 1, groups=1): output tiles of 2x2, th = ceil(oh/2) etc.
               Its code is exact on finite inputs only (an inf input gives NaN outputs, layers/winograd.py):
               its kernels check their float inputs and run the default template on inf or NaN.
               "pad" is padded up to whole tiles;
               "wino_u" U[e, u, ci, co] = G w G^T (the weight transform; axes e, u, ci, co; reduction none)
               "wino_v" V[e, u, n, th, tw, ci] = B^T d B (input transform of each 4x4 tile)
               "wino_m" M[e, u, n, th, tw, co] = sum_ci V U (16 batched GEMMs; reduction ci)
               "conv"   y[n, oh, ow, co] = A^T M A (output transform; select on oh%2, ow%2: split by 2, unroll)
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    cin: int = 64
    cout: int = 64
    kh: int = 3
    kw: int = None      # None: follows kh
    stride: int | tuple = 1
    pad: int | tuple = 1
    dilation: int | tuple = 1
    groups: int = 1
    layout: str = "NHWC"
    bias: bool = False
    act: str | None = None
    dtype: str = "float32"
    residual: bool = False
    cblock: int = 8
    wpack: int = 0

    KIND: ClassVar[str] = "conv2d"
    ALGORITHMS: ClassVar[tuple] = ("direct", "im2col", "winograd2x2")
    FINITE_ONLY_ALGORITHMS: ClassVar[tuple] = ("winograd2x2",)     # inf in, NaN out: layers/winograd.py
    # Fields added after the first tuning logs: left out of workload_key while at their defaults.
    _LATE_FIELDS: ClassVar[dict] = {"residual": False, "cblock": 8, "wpack": 0}

    def __post_init__(self):
        for f in ("stride", "pad", "dilation"):
            object.__setattr__(self, f, canon_pair(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, cin=self.cin, cout=self.cout, kh=self.kh,
                       kw=self.kw, groups=self.groups, cblock=self.cblock)
        for f in ("stride", "dilation"):
            if min(pair(getattr(self, f))) <= 0:
                raise ValueError(f"Conv2d: {f} must be positive, got {getattr(self, f)!r}")
        if min(pair(self.pad)) < 0:
            raise ValueError(f"Conv2d: pad must be >= 0, got {self.pad!r}")
        check_choice(self, "layout", self.layout, LAYOUTS)
        check_choice(self, "act", self.act, ACTIVATIONS)
        if self.dtype != "float32":
            raise ValueError(f"Conv2d: only float32 is supported, got {self.dtype!r}")
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"Conv2d: groups={self.groups} must divide cin={self.cin} and cout={self.cout}")
        if self.wpack < 0 or (self.wpack and (self.layout != "NHWC" or self.cout % self.wpack)):
            raise ValueError(f"Conv2d: wpack={self.wpack} needs layout NHWC and must divide cout={self.cout}")
        if self.layout == "NCHWc":
            if self.groups != 1:
                raise ValueError("Conv2d: layout NCHWc supports groups=1 only")
            if self.cin % self.cblock or self.cout % self.cblock:
                raise ValueError(f"Conv2d: layout NCHWc needs cin={self.cin} and cout={self.cout} to be "
                                 f"multiples of cblock={self.cblock}")
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"Conv2d: the {self.kh}x{self.kw} kernel (dilation {self.dilation}) does not fit "
                             f"the padded {self.h}x{self.w} input")

    @property
    def workload_key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if not (k in self._LATE_FIELDS and v == self._LATE_FIELDS[k])}
        return json.dumps({"layer": self.KIND, **d}, sort_keys=True, separators=(",", ":"))

    # -- geometry
    @property
    def strides(self):
        return pair(self.stride)

    @property
    def pads(self):
        return pair(self.pad)

    @property
    def dilations(self):
        return pair(self.dilation)

    @property
    def oh(self) -> int:
        return conv_out_size(self.h, self.kh, self.strides[0], self.pads[0], self.pads[0], self.dilations[0])

    @property
    def ow(self) -> int:
        return conv_out_size(self.w, self.kw, self.strides[1], self.pads[1], self.pads[1], self.dilations[1])

    @property
    def cin_per_group(self) -> int:
        return self.cin // self.groups

    @property
    def cout_per_group(self) -> int:
        return self.cout // self.groups

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin == self.cout

    @property
    def is_1x1(self) -> bool:
        return self.kh == self.kw == 1 and self.pads == (0, 0)

    def algorithm_applies(self, algorithm: str) -> "bool | str":
        """True, or why `algorithm` cannot compute this layer."""
        if algorithm == "direct":
            return True
        if algorithm not in self.ALGORITHMS:
            return f"unknown algorithm {algorithm!r}"
        if self.layout != "NHWC" or self.groups != 1:
            return f"{algorithm} needs layout NHWC and groups=1"
        if algorithm == "winograd2x2" and not (self.kh == self.kw == 3 and self.strides == (1, 1)
                                               and self.dilations == (1, 1)):
            return "winograd2x2 needs a 3x3 kernel, stride 1, dilation 1"
        return True

    def _x_shape(self):
        cb = self.cblock
        return {"NHWC": (self.n, self.h, self.w, self.cin), "NCHW": (self.n, self.cin, self.h, self.w),
                "NCHWc": (self.n, self.cin // cb, self.h, self.w, cb)}[self.layout]

    def _w_shape(self):
        cb = self.cblock
        if self.layout == "NHWC" and self.wpack:
            return (self.cout // self.wpack, self.kh, self.kw, self.cin_per_group, self.wpack)
        return {"NHWC": (self.kh, self.kw, self.cin_per_group, self.cout),
                "NCHW": (self.cout, self.cin_per_group, self.kh, self.kw),
                "NCHWc": (self.cout // cb, self.cin // cb, self.kh, self.kw, cb, cb)}[self.layout]

    def y_shape(self):
        cb = self.cblock
        return {"NHWC": (self.n, self.oh, self.ow, self.cout), "NCHW": (self.n, self.cout, self.oh, self.ow),
                "NCHWc": (self.n, self.cout // cb, self.oh, self.ow, cb)}[self.layout]

    def input_specs(self):
        specs = [TensorSpec("x", self._x_shape(), self.dtype), TensorSpec("w", self._w_shape(), self.dtype)]
        if self.bias:
            specs.append(TensorSpec("b", (self.cout,), self.dtype))
        if self.residual:
            specs.append(TensorSpec("r", self.y_shape(), self.dtype))
        return specs

    def output_specs(self):
        return [TensorSpec("y", self.y_shape(), self.dtype)]

    def pack_weights(self, w: np.ndarray) -> np.ndarray:
        """Weights in the usual layout (OIHW for NCHW and NCHWc, HWIO for NHWC) -> this layer's argument.

        Call it once, when the weights are loaded: the NCHWc kernels take blocked weights and never repack."""
        w = np.asarray(w, dtype=np.float32)
        if self.layout == "NCHWc":
            return pack_weights_nchwc(w, self.cblock)
        if self.wpack:
            return pack_weights_panels(w, self.wpack)
        return np.ascontiguousarray(w)

    def ops(self) -> int:
        return self.n * self.oh * self.ow * self.cout * self.cin_per_group * self.kh * self.kw

    def default_template(self) -> str:
        if self.layout == "NHWC" and self.depthwise:
            # benchmarks/mobilenet.py, 1 thread, AMD Zen 3, 2026-11: nhwc_depthwise beats nhwc_direct on all 9
            # MobileNet dw layers (e.g. 56x56x128: 181 vs 290 us)
            return "conv2d/nhwc_depthwise"
        return {"NHWC": "conv2d/nhwc_direct", "NCHW": "conv2d/nchw_direct",
                "NCHWc": "conv2d/nchwc_direct"}[self.layout]

    def tolerance(self):
        # fp32 sums of cin*kh*kw products of values in [-1, 1): error grows like sqrt(K) ulps.
        k = self.cin_per_group * self.kh * self.kw
        return (1e-4, 2e-6 * k + (2e-6 if self.residual else 0))

    # -- what is computed
    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        ok = self.algorithm_applies(algorithm)
        if ok is not True:
            raise ValueError(f"Conv2d: {ok} ({self})")
        args, fresh = self.arguments(inputs, prefix)
        if algorithm == "winograd2x2":
            conv = winograd_conv(self, args["x"], args["w"], prefix)
        else:
            conv = self._declare_direct(args["x"], args["w"], prefix, im2col=(algorithm == "im2col"))
        return Declaration(fresh, [self._epilogue(conv, args, prefix)])

    def weight_at(self, wt):
        """NHWC weights as a function of (kh, kw, ci, co), whether HWIO or pre-packed panels (wpack)."""
        if self.wpack:
            P = self.wpack
            return lambda i, j, c, o: wt[o // P, i, j, c, o % P]
        return lambda i, j, c, o: wt[i, j, c, o]

    def pad_stage(self, x, prefix: str, extra_h: int = 0, extra_w: int = 0):
        """The "pad" stage: x zero-padded by pad on each side (plus extra rows/columns at the end)."""
        (ph, pw), H, W = self.pads, self.h, self.w
        zero = expr.const(0.0, self.dtype)
        name = prefix + "pad"

        def inside(i, j):
            return expr.all(i >= ph, i < H + ph, j >= pw, j < W + pw)

        Hp, Wp = H + 2 * ph + extra_h, W + 2 * pw + extra_w
        if self.layout == "NHWC":
            return te.compute((self.n, Hp, Wp, self.cin), lambda n, h, w, c: expr.if_then_else(
                inside(h, w), x[n, h - ph, w - pw, c], zero), name=name)
        if self.layout == "NCHW":
            return te.compute((self.n, self.cin, Hp, Wp), lambda n, c, h, w: expr.if_then_else(
                inside(h, w), x[n, c, h - ph, w - pw], zero), name=name)
        return te.compute((self.n, self.cin // self.cblock, Hp, Wp, self.cblock),
                          lambda n, cb, h, w, c: expr.if_then_else(inside(h, w), x[n, cb, h - ph, w - pw, c], zero),
                          name=name)

    def _declare_direct(self, x, wt, prefix, im2col=False):
        (sh, sw), (dh, dw) = self.strides, self.dilations
        cpg, opg = self.cin_per_group, self.cout_per_group
        padded = self.pad_stage(x, prefix)
        kh = te.reduce_axis((0, self.kh), "kh")
        kw = te.reduce_axis((0, self.kw), "kw")
        name = prefix + "conv"

        def chan(co, ci):  # input channel of reduction index ci for output channel co
            return ci if self.groups == 1 else (co // opg) * cpg + ci

        if self.layout == "NHWC":
            ci = te.reduce_axis((0, cpg), "ci")
            W = self.weight_at(wt)
            if im2col:
                col = te.compute((self.n, self.oh, self.ow, self.kh, self.kw, cpg),
                                 lambda n, oh, ow, i, j, c: padded[n, oh * sh + i * dh, ow * sw + j * dw, c],
                                 name=prefix + "im2col")
                return te.compute(self.y_shape(), lambda n, oh, ow, co: te.sum(
                    col[n, oh, ow, kh, kw, ci] * W(kh, kw, ci, co), axis=[kh, kw, ci]), name=name)
            return te.compute(self.y_shape(), lambda n, oh, ow, co: te.sum(
                padded[n, oh * sh + kh * dh, ow * sw + kw * dw, chan(co, ci)] * W(kh, kw, ci, co),
                axis=[kh, kw, ci]), name=name)
        if self.layout == "NCHW":
            ci = te.reduce_axis((0, cpg), "ci")
            return te.compute(self.y_shape(), lambda n, co, oh, ow: te.sum(
                padded[n, chan(co, ci), oh * sh + kh * dh, ow * sw + kw * dw] * wt[co, ci, kh, kw],
                axis=[ci, kh, kw]), name=name)
        cb = self.cblock
        ci_b = te.reduce_axis((0, self.cin // cb), "ci_b")
        ci = te.reduce_axis((0, cb), "ci")
        return te.compute(self.y_shape(), lambda n, co_b, oh, ow, co: te.sum(
            padded[n, ci_b, oh * sh + kh * dh, ow * sw + kw * dw, ci] * wt[co_b, ci_b, kh, kw, ci, co],
            axis=[ci_b, kh, kw, ci]), name=name)

    def _epilogue(self, conv, args, prefix):
        out = conv
        co_axis = {"NHWC": 3, "NCHW": 1, "NCHWc": 1}[self.layout]
        if self.bias:
            b, prev = args["b"], out
            if self.layout == "NCHWc":
                cb = self.cblock
                out = te.compute(self.y_shape(), lambda *i: prev(*i) + b[i[1] * cb + i[4]], name=prefix + "bias")
            else:
                out = te.compute(self.y_shape(), lambda *i: prev(*i) + b[i[co_axis]], name=prefix + "bias")
        if self.residual:
            r, prev = args["r"], out
            out = te.compute(self.y_shape(), lambda *i: prev(*i) + r(*i), name=prefix + "residual")
        if self.act == "relu":
            prev = out
            out = te.compute(self.y_shape(), lambda *i: relu(prev(*i), self.dtype), name=prefix + "act")
        return out

    def reference(self, x, w, *rest):
        """Direct definition in float64 numpy (one strided window per kernel tap), cast to float32."""
        rest = list(rest)
        b = rest.pop(0) if self.bias else None
        r = rest.pop(0) if self.residual else None
        layout = self.layout
        if self.wpack:
            w = unpack_weights_panels(w)
        if layout == "NCHWc":  # compute in NCHW, block at the end
            x, w = nchwc_unpack(x), unpack_weights_nchwc(w)
            r = None if r is None else nchwc_unpack(r)
        if layout != "NHWC":  # compute in NHWC, convert at the end
            x = np.transpose(x, (0, 2, 3, 1))
            w = np.transpose(w, (2, 3, 1, 0))
            r = None if r is None else np.transpose(r, (0, 2, 3, 1))
        (sh, sw), (ph, pw), (dh, dw) = self.strides, self.pads, self.dilations
        xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        g, cpg, opg = self.groups, self.cin_per_group, self.cout_per_group
        wg = w.astype(np.float64).reshape(self.kh, self.kw, cpg, g, opg)
        y = np.zeros((self.n, self.oh, self.ow, g, opg))
        for i in range(self.kh):
            for j in range(self.kw):
                win = xp[:, i * dh: i * dh + sh * (self.oh - 1) + 1: sh, j * dw: j * dw + sw * (self.ow - 1) + 1: sw]
                win = win.reshape(self.n, self.oh, self.ow, g, cpg)
                y += np.einsum("nhwgc,cgo->nhwgo", win, wg[i, j])
        y = y.reshape(self.n, self.oh, self.ow, self.cout)
        if b is not None:
            y = y + b.astype(np.float64)
        if r is not None:
            y = y + r.astype(np.float64)
        if self.act == "relu":
            y = np.maximum(y, 0)
        if layout != "NHWC":
            y = np.transpose(y, (0, 3, 1, 2))
        if layout == "NCHWc":
            y = nchwc_pack(y, self.cblock)
        return np.ascontiguousarray(y.astype(np.float64 if x.dtype == np.float64 else np.float32))   # gradient checks
