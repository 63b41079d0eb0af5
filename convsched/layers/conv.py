"""fp32 2-D convolution, direct form, NHWC or NCHW, with optional fused bias and ReLU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Declaration, Layer, TensorSpec, check_positive, pair

LAYOUTS = ("NHWC", "NCHW")
ACTIVATIONS = (None, "relu")


def conv_out_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def _canon(v):
    """Pairs with equal halves are stored as one int, so equal layers have equal workload keys."""
    if isinstance(v, (list, tuple)):
        a, b = pair(v)
        return a if a == b else (a, b)
    return v


@dataclass(frozen=True)
class Conv2d(Layer):
    """y = act(conv(x, w) + b), fp32.

    Arguments (in call order):
      NHWC: x (n, h, w, cin), w (kh, kw, cin/groups, cout)  [HWIO: output channels contiguous], b (cout,)
      NCHW: x (n, cin, h, w), w (cout, cin/groups, kh, kw)  [OIHW],                                b (cout,)
      b only when bias=True. Output: (n, oh, ow, cout) for NHWC, (n, cout, oh, ow) for NCHW.
    stride, pad, dilation: an int or an (along h, along w) pair; padding is zeros, on both sides.
    groups: cin and cout are cut into `groups` groups; output group g sees input group g only
    (groups == cin == cout is depthwise).

    Stages and axes (the schedule's vocabulary):
      "pad"   the zero-padded input, same layout as x. Axes NHWC: n, h, w, c; NCHW: n, c, h, w.
      "conv"  the reduction. Spatial axes NHWC: n, oh, ow, co; NCHW: n, co, oh, ow.
              Reduction axes: kh, kw, ci (ci ranges over one group's input channels).
      "bias"  conv + b[co]            (bias=True only; axes as conv's spatial axes)
      "act"   max(., 0)               (act="relu" only; same axes)
    The last stage present is the output.
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

    KIND: ClassVar[str] = "conv2d"

    def __post_init__(self):
        for f in ("stride", "pad", "dilation"):
            object.__setattr__(self, f, _canon(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, cin=self.cin, cout=self.cout, kh=self.kh,
                       kw=self.kw, groups=self.groups)
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
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"Conv2d: the {self.kh}x{self.kw} kernel (dilation {self.dilation}) does not fit "
                             f"the padded {self.h}x{self.w} input")

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

    def _x_shape(self):
        return (self.n, self.h, self.w, self.cin) if self.layout == "NHWC" else (self.n, self.cin, self.h, self.w)

    def _w_shape(self):
        if self.layout == "NHWC":
            return (self.kh, self.kw, self.cin_per_group, self.cout)
        return (self.cout, self.cin_per_group, self.kh, self.kw)

    def _y_shape(self):
        if self.layout == "NHWC":
            return (self.n, self.oh, self.ow, self.cout)
        return (self.n, self.cout, self.oh, self.ow)

    def input_specs(self):
        specs = [TensorSpec("x", self._x_shape(), self.dtype), TensorSpec("w", self._w_shape(), self.dtype)]
        if self.bias:
            specs.append(TensorSpec("b", (self.cout,), self.dtype))
        return specs

    def output_specs(self):
        return [TensorSpec("y", self._y_shape(), self.dtype)]

    def ops(self) -> int:
        return self.n * self.oh * self.ow * self.cout * self.cin_per_group * self.kh * self.kw

    def default_template(self) -> str:
        return "conv2d/nhwc_direct" if self.layout == "NHWC" else "conv2d/nchw_direct"

    def tolerance(self):
        # fp32 sums of cin*kh*kw products of values in [-1, 1): error grows like sqrt(K) ulps.
        k = self.cin_per_group * self.kh * self.kw
        return (1e-4, 2e-6 * k)

    # -- what is computed
    def declare(self) -> Declaration:
        from ..backend import expr, te
        nhwc = self.layout == "NHWC"
        (sh, sw), (ph, pw), (dh, dw) = self.strides, self.pads, self.dilations
        cpg, opg, H, W = self.cin_per_group, self.cout_per_group, self.h, self.w
        x = te.placeholder(self._x_shape(), self.dtype, name="x")
        wt = te.placeholder(self._w_shape(), self.dtype, name="w")
        zero = expr.const(0.0, self.dtype)

        def inside(i, j):
            return expr.all(i >= ph, i < H + ph, j >= pw, j < W + pw)

        if nhwc:
            padded = te.compute((self.n, H + 2 * ph, W + 2 * pw, self.cin),
                                lambda n, h, w, c: expr.if_then_else(inside(h, w), x[n, h - ph, w - pw, c], zero),
                                name="pad")
        else:
            padded = te.compute((self.n, self.cin, H + 2 * ph, W + 2 * pw),
                                lambda n, c, h, w: expr.if_then_else(inside(h, w), x[n, c, h - ph, w - pw], zero),
                                name="pad")
        kh = te.reduce_axis((0, self.kh), "kh")
        kw = te.reduce_axis((0, self.kw), "kw")
        ci = te.reduce_axis((0, cpg), "ci")

        def chan(co):  # input channel of reduction index ci for output channel co
            return ci if self.groups == 1 else (co // opg) * cpg + ci

        if nhwc:
            conv = te.compute(self._y_shape(), lambda n, oh, ow, co: te.sum(
                padded[n, oh * sh + kh * dh, ow * sw + kw * dw, chan(co)] * wt[kh, kw, ci, co],
                axis=[kh, kw, ci]), name="conv")
        else:
            conv = te.compute(self._y_shape(), lambda n, co, oh, ow: te.sum(
                padded[n, chan(co), oh * sh + kh * dh, ow * sw + kw * dw] * wt[co, ci, kh, kw],
                axis=[ci, kh, kw]), name="conv")
        inputs, out = [x, wt], conv
        co_axis = 3 if nhwc else 1
        if self.bias:
            b = te.placeholder((self.cout,), self.dtype, name="b")
            inputs.append(b)
            prev = out
            out = te.compute(self._y_shape(), lambda *i: prev(*i) + b[i[co_axis]], name="bias")
        if self.act == "relu":
            prev = out
            out = te.compute(self._y_shape(), lambda *i: expr.max(prev(*i), zero), name="act")
        return Declaration(inputs, [out])

    def reference(self, x, w, b=None):
        """Direct definition in float64 numpy (one strided window per kernel tap), cast to float32."""
        nhwc = self.layout == "NHWC"
        if not nhwc:  # compute in NHWC, convert at the end
            x = np.transpose(x, (0, 2, 3, 1))
            w = np.transpose(w, (2, 3, 1, 0))
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
        if self.act == "relu":
            y = np.maximum(y, 0)
        if not nhwc:
            y = np.transpose(y, (0, 3, 1, 2))
        return np.ascontiguousarray(y.astype(np.float32))
