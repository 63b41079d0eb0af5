"""fp32 2-D convolution: layouts NHWC, NCHW and blocked NCHWc; algorithms direct, im2col, Winograd F(2x2,3x3);
optional fused epilogue (bias, residual add, ReLU).

Which algorithm runs is the schedule's choice (a template's ALGORITHM): every algorithm declares the same
inputs and outputs, so a tuner can search across them. Numpy helpers for the blocked layout (nchwc_pack,
nchwc_unpack, pack_weights_nchwc) live here too; layers.layout offers the same transforms as kernels.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from .base import Declaration, Layer, TensorSpec, check_positive, pair

LAYOUTS = ("NHWC", "NCHW", "NCHWc")
ACTIVATIONS = (None, "relu")


def conv_out_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def _canon(v):
    """Pairs with equal halves are stored as one int, so equal layers have equal workload keys."""
    if isinstance(v, (list, tuple)):
        a, b = pair(v)
        return a if a == b else (a, b)
    return v


# ------------------------------------------------------------------------------ blocked layout (numpy)
def nchwc_pack(x: np.ndarray, cblock: int, src: str = "NCHW") -> np.ndarray:
    """(n, c, h, w) [or (n, h, w, c) with src="NHWC"] -> (n, c/cblock, h, w, cblock), contiguous."""
    if src == "NHWC":
        x = np.transpose(x, (0, 3, 1, 2))
    n, c, h, w = x.shape
    if c % cblock:
        raise ValueError(f"nchwc_pack: {c} channels are not a multiple of the block {cblock}")
    return np.ascontiguousarray(x.reshape(n, c // cblock, cblock, h, w).transpose(0, 1, 3, 4, 2))


def nchwc_unpack(x: np.ndarray, dst: str = "NCHW") -> np.ndarray:
    """(n, c/cb, h, w, cb) -> (n, c, h, w) [or (n, h, w, c) with dst="NHWC"], contiguous."""
    n, cbn, h, w, cb = x.shape
    y = x.transpose(0, 1, 4, 2, 3).reshape(n, cbn * cb, h, w)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1) if dst == "NHWC" else y)


def pack_weights_nchwc(w_oihw: np.ndarray, cblock: int) -> np.ndarray:
    """OIHW (cout, cin, kh, kw) -> (cout/cb, cin/cb, kh, kw, cb_in, cb_out): the NCHWc kernel's weights.

    The innermost axis is a vector of cb output channels, so the micro-kernel loads one weight vector per
    (input channel, tap) and broadcasts one input scalar against it."""
    o, i, kh, kw = w_oihw.shape
    if o % cblock or i % cblock:
        raise ValueError(f"pack_weights_nchwc: cout={o} and cin={i} must be multiples of the block {cblock}")
    w = w_oihw.reshape(o // cblock, cblock, i // cblock, cblock, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 2, 4, 5, 3, 1))


def unpack_weights_nchwc(wp: np.ndarray) -> np.ndarray:
    """Inverse of pack_weights_nchwc: -> OIHW."""
    ob, ib, kh, kw, ci, co = wp.shape
    return np.ascontiguousarray(wp.transpose(0, 5, 1, 4, 2, 3).reshape(ob * co, ib * ci, kh, kw))


def pack_weights_panels(w_hwio: np.ndarray, panel: int) -> np.ndarray:
    """HWIO (kh, kw, cin, cout) -> (cout/panel, kh, kw, cin, panel): NHWC weights in GEMM B panels (wpack).

    A block of `panel` output channels then reads its kh*kw*cin x panel weights contiguously, instead of one
    short piece every cout floats (a new page every row or two at cout=512: TLB misses, no prefetch)."""
    kh, kw, ci, co = w_hwio.shape
    if co % panel:
        raise ValueError(f"pack_weights_panels: cout={co} is not a multiple of the panel width {panel}")
    return np.ascontiguousarray(w_hwio.reshape(kh, kw, ci, co // panel, panel).transpose(3, 0, 1, 2, 4))


def unpack_weights_panels(wp: np.ndarray) -> np.ndarray:
    """Inverse of pack_weights_panels: -> HWIO."""
    nb, kh, kw, ci, p = wp.shape
    return np.ascontiguousarray(wp.transpose(1, 2, 3, 0, 4).reshape(kh, kw, ci, nb * p))


# ------------------------------------------------------------------------------ Winograd F(2x2, 3x3)
# Y = A^T [(G g G^T) * (B^T d B)] A with interpolation points 0, 1, -1 (Lavin & Gray 2015).
WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def _lincomb(terms):
    """sum(c * t) over (c, t) with c != 0, without multiplying by +-1 (fp math would not fold those)."""
    out = None
    for c, t in terms:
        if c == 0:
            continue
        v = t if abs(c) == 1 else t * float(abs(c))
        if out is None:
            out = -v if c < 0 else v
        else:
            out = out - v if c < 0 else out + v
    return out


def _select2(i, j, table, expr):
    """table[a][b] (TE expressions) at symbolic (i, j): a chain of selects that unrolling folds away."""
    rows = len(table)
    cols = len(table[0])
    out = None
    for a in reversed(range(rows)):
        for b in reversed(range(cols)):
            v = table[a][b]
            out = v if out is None else expr.if_then_else(expr.all(i == a, j == b), v, out)
    return out


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
        "act" (max(., 0)). The last stage present is the output.
      direct:  "conv" spatial NHWC n, oh, ow, co | NCHW n, co, oh, ow | NCHWc n, co_b, oh, ow, co;
               reduction kh, kw, ci (NCHW: ci, kh, kw; NCHWc: ci_b, kh, kw, ci), ci within a group/block.
      im2col (NHWC, groups=1): "im2col" col[n, oh, ow, kh, kw, ci] (the patch matrix, rows = pixels),
               "conv" = GEMM col x w: spatial n, oh, ow, co; reduction kh, kw, ci.
      winograd2x2 (NHWC, 3x3, stride 1, dilation 1, groups=1): output tiles of 2x2, th = ceil(oh/2) etc.
               "pad" is padded up to whole tiles;
               "wino_u" U[e, u, ci, co] = G w G^T (the weight transform; axes e, u, ci, co; reduction none)
               "wino_v" V[e, u, n, th, tw, ci] = B^T d B (input transform of each 4x4 tile)
               "wino_m" M[e, u, n, th, tw, co] = sum_ci V U (16 batched GEMMs; reduction ci)
               "conv"   y[n, oh, ow, co] = A^T M A (output transform; select on oh%2, ow%2: split by 2, unroll)
    """

    n: int = 1
    h: int = 56
    w: int = 56
    cin: int = 64
    cout: int = 64
    kh: int = 3
    kw: int = 3
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
    # Fields added after the first tuning logs: left out of workload_key while at their defaults.
    _LATE_FIELDS: ClassVar[dict] = {"residual": False, "cblock": 8, "wpack": 0}

    def __post_init__(self):
        for f in ("stride", "pad", "dilation"):
            object.__setattr__(self, f, _canon(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, cin=self.cin, cout=self.cout, kh=self.kh,
                       kw=self.kw, groups=self.groups, cblock=self.cblock)
        for f in ("stride", "dilation"):
            if min(pair(getattr(self, f))) <= 0:
                raise ValueError(f"Conv2d: {f} must be positive, got {getattr(self, f)!r}")
        if min(pair(self.pad)) < 0:
            raise ValueError(f"Conv2d: pad must be >= 0, got {self.pad!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"Conv2d: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"Conv2d: act must be one of {ACTIVATIONS}, got {self.act!r}")
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

    def _y_shape(self):
        cb = self.cblock
        return {"NHWC": (self.n, self.oh, self.ow, self.cout), "NCHW": (self.n, self.cout, self.oh, self.ow),
                "NCHWc": (self.n, self.cout // cb, self.oh, self.ow, cb)}[self.layout]

    def input_specs(self):
        specs = [TensorSpec("x", self._x_shape(), self.dtype), TensorSpec("w", self._w_shape(), self.dtype)]
        if self.bias:
            specs.append(TensorSpec("b", (self.cout,), self.dtype))
        if self.residual:
            specs.append(TensorSpec("r", self._y_shape(), self.dtype))
        return specs

    def output_specs(self):
        return [TensorSpec("y", self._y_shape(), self.dtype)]

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
            # benchmarks/mobilenet.py, 1 thread: nhwc_depthwise beats nhwc_direct on all 9 MobileNet dw layers
            # (e.g. 56x56x128: 181 vs 290 us)
            return "conv2d/nhwc_depthwise"
        return {"NHWC": "conv2d/nhwc_direct", "NCHW": "conv2d/nchw_direct",
                "NCHWc": "conv2d/nchwc_direct"}[self.layout]

    def tolerance(self):
        # fp32 sums of cin*kh*kw products of values in [-1, 1): error grows like sqrt(K) ulps.
        k = self.cin_per_group * self.kh * self.kw
        return (1e-4, 2e-6 * k + (2e-6 if self.residual else 0))

    # -- what is computed
    def declare(self, algorithm: str = "direct") -> Declaration:
        from ..backend import te
        ok = self.algorithm_applies(algorithm)
        if ok is not True:
            raise ValueError(f"Conv2d: {ok} ({self})")
        x = te.placeholder(self._x_shape(), self.dtype, name="x")
        wt = te.placeholder(self._w_shape(), self.dtype, name="w")
        if algorithm == "winograd2x2":
            conv = self._declare_winograd(x, wt)
        else:
            conv = self._declare_direct(x, wt, im2col=(algorithm == "im2col"))
        return self._epilogue([x, wt], conv)

    def _hwio(self, wt):
        """NHWC weights as a function of (kh, kw, ci, co), whether HWIO or pre-packed panels (wpack)."""
        if self.wpack:
            P = self.wpack
            return lambda i, j, c, o: wt[o // P, i, j, c, o % P]
        return lambda i, j, c, o: wt[i, j, c, o]

    def _pad(self, x, extra_h=0, extra_w=0):
        from ..backend import expr, te
        (ph, pw), H, W = self.pads, self.h, self.w
        zero = expr.const(0.0, self.dtype)

        def inside(i, j):
            return expr.all(i >= ph, i < H + ph, j >= pw, j < W + pw)

        Hp, Wp = H + 2 * ph + extra_h, W + 2 * pw + extra_w
        if self.layout == "NHWC":
            return te.compute((self.n, Hp, Wp, self.cin), lambda n, h, w, c: expr.if_then_else(
                inside(h, w), x[n, h - ph, w - pw, c], zero), name="pad")
        if self.layout == "NCHW":
            return te.compute((self.n, self.cin, Hp, Wp), lambda n, c, h, w: expr.if_then_else(
                inside(h, w), x[n, c, h - ph, w - pw], zero), name="pad")
        return te.compute((self.n, self.cin // self.cblock, Hp, Wp, self.cblock),
                          lambda n, cb, h, w, c: expr.if_then_else(inside(h, w), x[n, cb, h - ph, w - pw, c], zero),
                          name="pad")

    def _declare_direct(self, x, wt, im2col=False):
        from ..backend import te
        (sh, sw), (dh, dw) = self.strides, self.dilations
        cpg, opg = self.cin_per_group, self.cout_per_group
        padded = self._pad(x)
        kh = te.reduce_axis((0, self.kh), "kh")
        kw = te.reduce_axis((0, self.kw), "kw")

        def chan(co, ci):  # input channel of reduction index ci for output channel co
            return ci if self.groups == 1 else (co // opg) * cpg + ci

        if self.layout == "NHWC":
            ci = te.reduce_axis((0, cpg), "ci")
            W = self._hwio(wt)
            if im2col:
                col = te.compute((self.n, self.oh, self.ow, self.kh, self.kw, cpg),
                                 lambda n, oh, ow, i, j, c: padded[n, oh * sh + i * dh, ow * sw + j * dw, c],
                                 name="im2col")
                return te.compute(self._y_shape(), lambda n, oh, ow, co: te.sum(
                    col[n, oh, ow, kh, kw, ci] * W(kh, kw, ci, co), axis=[kh, kw, ci]), name="conv")
            return te.compute(self._y_shape(), lambda n, oh, ow, co: te.sum(
                padded[n, oh * sh + kh * dh, ow * sw + kw * dw, chan(co, ci)] * W(kh, kw, ci, co),
                axis=[kh, kw, ci]), name="conv")
        if self.layout == "NCHW":
            ci = te.reduce_axis((0, cpg), "ci")
            return te.compute(self._y_shape(), lambda n, co, oh, ow: te.sum(
                padded[n, chan(co, ci), oh * sh + kh * dh, ow * sw + kw * dw] * wt[co, ci, kh, kw],
                axis=[ci, kh, kw]), name="conv")
        cb = self.cblock
        ci_b = te.reduce_axis((0, self.cin // cb), "ci_b")
        ci = te.reduce_axis((0, cb), "ci")
        return te.compute(self._y_shape(), lambda n, co_b, oh, ow, co: te.sum(
            padded[n, ci_b, oh * sh + kh * dh, ow * sw + kw * dw, ci] * wt[co_b, ci_b, kh, kw, ci, co],
            axis=[ci_b, kh, kw, ci]), name="conv")

    def _declare_winograd(self, x, wt):
        from ..backend import expr, te
        th, tw = -(-self.oh // 2), -(-self.ow // 2)
        # pad up to whole 4x4 input tiles (stride 2 between tiles): (2*th + 2) x (2*tw + 2) padded rows/cols
        Hp, Wp = self.h + 2 * self.pads[0], self.w + 2 * self.pads[1]
        padded = self._pad(x, extra_h=2 * th + 2 - Hp, extra_w=2 * tw + 2 - Wp)
        G, BT, AT = WINO_G, WINO_BT, WINO_AT
        W = self._hwio(wt)

        def u_fn(e, u, ci, co):
            table = [[_lincomb([(G[a, i] * G[b, j], W(i, j, ci, co)) for i in range(3) for j in range(3)])
                      for b in range(4)] for a in range(4)]
            return _select2(e, u, table, expr)

        U = te.compute((4, 4, self.cin, self.cout), u_fn, name="wino_u")

        def v_fn(e, u, n, i, j, ci):
            table = [[_lincomb([(BT[a, p] * BT[b, q], padded[n, 2 * i + p, 2 * j + q, ci])
                                for p in range(4) for q in range(4)]) for b in range(4)] for a in range(4)]
            return _select2(e, u, table, expr)

        V = te.compute((4, 4, self.n, th, tw, self.cin), v_fn, name="wino_v")
        ci = te.reduce_axis((0, self.cin), "ci")
        M = te.compute((4, 4, self.n, th, tw, self.cout), lambda e, u, n, i, j, co: te.sum(
            V[e, u, n, i, j, ci] * U[e, u, ci, co], axis=[ci]), name="wino_m")

        def y_fn(n, oh, ow, co):
            i, j = oh // 2, ow // 2
            table = [[_lincomb([(AT[a, p] * AT[b, q], M[p, q, n, i, j, co]) for p in range(4) for q in range(4)])
                      for b in range(2)] for a in range(2)]
            return _select2(oh % 2, ow % 2, table, expr)

        return te.compute(self._y_shape(), y_fn, name="conv")

    def _epilogue(self, inputs, conv) -> Declaration:
        from ..backend import expr, te
        out = conv
        co_axis = {"NHWC": 3, "NCHW": 1, "NCHWc": 1}[self.layout]
        if self.bias:
            b = te.placeholder((self.cout,), self.dtype, name="b")
            inputs.append(b)
            prev = out
            if self.layout == "NCHWc":
                cb = self.cblock
                out = te.compute(self._y_shape(), lambda *i: prev(*i) + b[i[1] * cb + i[4]], name="bias")
            else:
                out = te.compute(self._y_shape(), lambda *i: prev(*i) + b[i[co_axis]], name="bias")
        if self.residual:
            r = te.placeholder(self._y_shape(), self.dtype, name="r")
            inputs.append(r)
            prev = out
            out = te.compute(self._y_shape(), lambda *i: prev(*i) + r(*i), name="residual")
        if self.act == "relu":
            prev = out
            out = te.compute(self._y_shape(), lambda *i: expr.max(prev(*i), expr.const(0.0, self.dtype)),
                             name="act")
        return Declaration(inputs, [out])

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

    def backward(self):
        """NHWC (wpack=0) only. Steps: [dz = ReLUGrad(saved y, grad dy) if act], dx = Conv2dDataGrad(input w, g),
        dw = Conv2dWeightGrad(input x, g), [db = BiasGrad(g) if bias], [dr = g if residual]; g = dz or dy.
        See layers/backward/conv.py and docs/backward.md."""
        from .backward.conv import conv2d_backward
        return conv2d_backward(self)
