"""Backward of the NHWC fp32 convolution: data gradient, weight gradient, bias gradient.

    Conv2dDataGrad    dx = the transposed convolution of dy with w, as a gather (each input pixel sums the taps
                      that read it: a convolution of dy, zero-padded, with the transposed weights)
    Conv2dWeightGrad  dw = a reduction over the pixels (n, oh, ow) of x (padded, shifted by the tap) times dy
    BiasGrad          db = the sum of dy over n, h, w
Stride, padding, dilation and groups (depthwise included) follow the forward Conv2d exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ...backend import expr, te
from .. import registry
from ..activation import ReLU
from ..base import Declaration, Layer, TensorSpec, check_positive
from ..conv import Conv2d
from ..winograd import winograd_conv
from .activation import ReLUGrad
from .base import Backward, NestedLayer, out_dtype, step


# "dot" sums the output channels of a data gradient in this many lanes: a constant, so that the declaration does not
# depend on the target (16 fp32 lanes = one AVX-512 register, two AVX2 registers)
DOT_LANES = 16


def _check_conv(layer, conv):
    if not isinstance(conv, Conv2d):
        raise ValueError(f"{type(layer).__name__}: forward must be a Conv2d, got {conv!r}")
    if conv.layout != "NHWC" or conv.wpack:
        raise ValueError(f"{type(layer).__name__}: gradients are NHWC with HWIO weights (layout='NHWC', wpack=0); "
                         f"got layout={conv.layout!r}, wpack={conv.wpack}")


def _core(conv: Conv2d) -> Conv2d:
    """The convolution alone (no bias, residual or activation): what the data and weight gradients differentiate."""
    return replace(conv, bias=False, act=None, residual=False)


@dataclass(frozen=True)
class Conv2dDataGrad(NestedLayer):
    """dx of an NHWC Conv2d (its convolution; bias, residual and activation are other steps of backward()).

      dx[n, h, w, ci] = sum over taps (kh, kw) and the output channels co of ci's group of
                        dy[n, oh, ow, co] * w[kh, kw, ci % cpg, co]   where h + pad = oh * stride + kh * dilation
    written as a gather: every input pixel sums the taps that read it (a convolution of the zero-padded dy with the
    transposed weights); with stride > 1, a tap counts only where (h + pad - kh * dilation) is a multiple of the
    stride (a mask on h and w that is constant per tap and pixel phase: schedules unroll taps and pixels by the
    stride so that it folds away).

    Arguments: w (kh, kw, cin/groups, cout) HWIO (the forward's input), dy (n, oh, ow, cout).
    Output: dx (n, h, w, cin).
    Algorithms (a template's ALGORITHM) and their stages and axes:
    direct:
      "pad"  dy zero-padded so that every tap's row and column are in bounds: (n, pad_rows, pad_cols, cout);
             pad_before = padded() rows/cols before dy's first; axes n, h, w, c
      "wt"   the weights flipped and transposed, wt[kh, kw, co, ci] = w[kh-1 - kh, kw-1 - kw, ci % cpg,
             group(ci) * opg + co]: input channels contiguous (the vectorized axis of dx); axes kh, kw, co, ci
             (co within a group)
      "dx"   spatial n, h, w, ci; reduction kh, kw (flipped taps: dy's row and column grow with them), co
    dot (cout/groups a multiple of DOT_LANES = 16): no transposed weights; co is summed in 16 lanes, the way a dot
      product is vectorized (w and dy are both contiguous along co), then across the lanes:
      "pad"      as in direct
      "partial"  spatial n, h, w, ci, lane; reduction kh, kw (flipped), cq: the sum over co = cq*16 + lane
      "dx"       spatial n, h, w, ci; reduction lane
    winograd2x2 (stride 1, groups 1, 3x3, dilation 1; finite inputs only: its code turns inf into NaN, so, as for
      Conv2d, its kernels check the inputs and run the default template on inf or NaN, and it is never the
      default): equivalent_conv()'s Winograd declaration on dy:
      "wt" the equivalent conv's HWIO weights, wt[i, j, c, o] = w[kh-1 - i, kw-1 - j, o, c]; axes i, j, c, o
      then "pad", "wino_u", "wino_v", "wino_m", "conv" as in Conv2d (cin and cout swapped); its template reuses
      the forward's (schedules/conv2d_data_grad/winograd.py).
    """

    forward: Conv2d = Conv2d()

    KIND: ClassVar[str] = "conv2d_data_grad"
    ALGORITHMS: ClassVar[tuple] = ("direct", "dot", "winograd2x2")
    FINITE_ONLY_ALGORITHMS: ClassVar[tuple] = ("winograd2x2",)     # inf in, NaN out, as the forward's Winograd

    def __post_init__(self):
        super().__post_init__()
        _check_conv(self, self.forward)

    def equivalent_conv(self) -> Conv2d | None:
        """With stride 1 and groups 1, dx IS a forward convolution: of dy (as its input, padded by
        dilation*(k-1) - pad) with the flipped, transposed weights. That Conv2d, or None."""
        f = self.forward
        pads = tuple(d * (k - 1) - p for d, k, p in zip(f.dilations, (f.kh, f.kw), f.pads))
        if f.strides != (1, 1) or f.groups != 1 or min(pads) < 0:
            return None
        return Conv2d(n=f.n, h=f.oh, w=f.ow, cin=f.cout, cout=f.cin, kh=f.kh, kw=f.kw, stride=1, pad=pads,
                      dilation=f.dilation)

    def algorithm_applies(self, algorithm: str) -> "bool | str":
        if algorithm == "direct":
            return True
        if algorithm == "dot":
            return self.forward.cout_per_group % DOT_LANES == 0 or \
                f"dot needs output channels per group in multiples of {DOT_LANES}"
        eq = self.equivalent_conv()
        if eq is None:
            return f"{algorithm} needs stride 1, groups 1 and pad <= dilation*(k-1) (dx is then a forward conv)"
        return eq.algorithm_applies(algorithm)

    def padded(self) -> tuple:
        """((before, after) along h, (before, after) along w): the zero rows and columns "pad" adds to dy."""
        f = self.forward
        out = []
        for size, o, k, s, p, d in ((f.h, f.oh, f.kh, f.strides[0], f.pads[0], f.dilations[0]),
                                    (f.w, f.ow, f.kw, f.strides[1], f.pads[1], f.dilations[1])):
            before = max(0, -(-((k - 1) * d - p) // s))
            after = max(0, (size - 1 + p) // s - (o - 1))
            out.append((before, after))
        return tuple(out)

    def input_specs(self):
        f = self.forward
        return [TensorSpec("w", f.input_specs()[1].shape, "float32"),
                TensorSpec("dy", (f.n, f.oh, f.ow, f.cout), "float32")]

    def output_specs(self):
        return [TensorSpec("dx", self.forward.input_specs()[0].shape, "float32")]

    def ops(self):
        return self.forward.ops()

    def default_template(self):
        # not Winograd, though it is faster on 56x56 and 28x28 (0.70-0.76 ms vs 1.17-1.27 ms for nhwc, 1 thread,
        # Xeon rocketlake, 2026-12-01): it is finite-only, and the default template is what a finite-only kernel
        # falls back to on inf or NaN (kernel.FiniteOnly); a tuning record (or template=) picks Winograd
        return "conv2d_data_grad/nhwc"

    def tolerance(self):
        f = self.forward
        return (1e-4, 2e-6 * f.cout_per_group * f.kh * f.kw)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        ok = self.algorithm_applies(algorithm)
        if ok is not True:
            raise ValueError(f"Conv2dDataGrad: {ok} ({self.forward})")
        f = self.forward
        args, fresh = self.arguments(inputs, prefix)
        wgt, dy = args["w"], args["dy"]
        if algorithm == "winograd2x2":
            eq = self.equivalent_conv()
            # the equivalent conv's HWIO weights: flipped and transposed, written once per call by a stage of
            # its own (the forward's weight transform then reads them contiguously; reading w itself with a
            # stride of cout floats took 3 of 4.6 ms at 14x14x256)
            K1, K2 = f.kh - 1, f.kw - 1
            wt = te.compute((f.kh, f.kw, f.cout, f.cin), lambda i, j, c, o: wgt[K1 - i, K2 - j, o, c],
                            name=prefix + "wt")
            return Declaration(fresh, [winograd_conv(eq, dy, wt, prefix)])
        (sh, sw), (ph, pw), (dh, dw) = f.strides, f.pads, f.dilations
        ((bh, ah), (bw, aw)) = self.padded()
        cpg, opg = f.cin_per_group, f.cout_per_group
        zero = expr.const(0.0, "float32")
        OH, OW = f.oh, f.ow
        pad = te.compute((f.n, bh + OH + ah, bw + OW + aw, f.cout), lambda n, h, w, c: expr.if_then_else(
            expr.all(h >= bh, h < bh + OH, w >= bw, w < bw + OW), dy[n, h - bh, w - bw, c], zero),
            name=prefix + "pad")

        def group_co(ci, co):           # output channel co of input channel ci's group (no index math if groups=1)
            return co if f.groups == 1 else (ci // cpg) * opg + co

        def group_ci(ci):
            return ci if f.groups == 1 else ci % cpg

        rkh = te.reduce_axis((0, f.kh), "kh")
        rkw = te.reduce_axis((0, f.kw), "kw")
        # taps are flipped (kh' = kh-1 - kh) so that dy's row grows with the reduction index, as in a forward conv
        # (a tap index with a negative coefficient left LLVM recomputing every pixel's address: 2x slower).
        # Row of padded dy read by pixel h at flipped tap kh: (h + ph - (kh-1 - kh)*dh + bh*sh) / sh >= 0
        off_h, off_w = ph - (f.kh - 1) * dh + bh * sh, pw - (f.kw - 1) * dw + bw * sw

        def tap(n, h, w, weight, dy_channel):
            th, tw = h + off_h + rkh * dh, w + off_w + rkw * dw
            term = pad[n, th // sh, tw // sw, dy_channel] * weight
            hits = [m for m in (th % sh == 0 if sh > 1 else None, tw % sw == 0 if sw > 1 else None) if m is not None]
            return expr.if_then_else(expr.all(*hits), term, zero) if hits else term

        if algorithm == "dot":
            L = DOT_LANES
            rcq = te.reduce_axis((0, opg // L), "cq")

            def partial_body(n, h, w, ci, lane):
                co = rcq * L + lane
                weight = wgt[f.kh - 1 - rkh, f.kw - 1 - rkw, group_ci(ci), group_co(ci, co)]
                return te.sum(tap(n, h, w, weight, group_co(ci, co)), axis=[rkh, rkw, rcq])

            partial = te.compute((f.n, f.h, f.w, f.cin, L), partial_body, name=prefix + "partial")
            rl = te.reduce_axis((0, L), "lane")
            dx = te.compute((f.n, f.h, f.w, f.cin), lambda n, h, w, ci: te.sum(partial[n, h, w, ci, rl], axis=rl),
                            name=prefix + "dx")
            return Declaration(fresh, [dx])
        wt = te.compute((f.kh, f.kw, opg, f.cin), lambda kh, kw, co, ci: wgt[
            f.kh - 1 - kh, f.kw - 1 - kw, group_ci(ci), group_co(ci, co)], name=prefix + "wt")
        rco = te.reduce_axis((0, opg), "co")

        def body(n, h, w, ci):
            return te.sum(tap(n, h, w, wt[rkh, rkw, rco, ci], group_co(ci, rco)), axis=[rkh, rkw, rco])

        dx = te.compute((f.n, f.h, f.w, f.cin), body, name=prefix + "dx")
        return Declaration(fresh, [dx])

    def reference(self, w, dy):
        """dx in float64 as the kernels gather it: for every tap whose stride test a pixel passes, the zero-padded
        dy (padded()) times the weight. With finite numbers this is scatter_reference(); it also gives the
        kernels' answer on inf and NaN weights, where a padding zero times inf is NaN (as in Conv2d's forward)."""
        f = self.forward
        (sh, sw), (ph, pw), (dh, dw) = f.strides, f.pads, f.dilations
        ((bh, ah), (bw, aw)) = self.padded()
        g, cpg, opg = f.groups, f.cin_per_group, f.cout_per_group
        dyp = np.pad(dy.astype(np.float64).reshape(f.n, f.oh, f.ow, g, opg),
                     ((0, 0), (bh, ah), (bw, aw), (0, 0), (0, 0)))
        wg = w.astype(np.float64).reshape(f.kh, f.kw, cpg, g, opg)
        dx = np.zeros((f.n, f.h, f.w, g, cpg))
        for i in range(f.kh):
            th = np.arange(f.h) + ph - i * dh + bh * sh          # >= 0: bh rows of padding before dy
            for j in range(f.kw):
                tw = np.arange(f.w) + pw - j * dw + bw * sw
                taps = np.einsum("nhwgo,cgo->nhwgc", dyp[:, th // sh][:, :, tw // sw], wg[i, j])
                hit = ((th % sh == 0)[:, None] & (tw % sw == 0)[None, :])[None, :, :, None, None]
                dx += np.where(hit, taps, 0)
        return np.ascontiguousarray(dx.reshape(f.n, f.h, f.w, f.cin).astype(out_dtype(w, dy)))

    def scatter_reference(self, w, dy):
        """The definition, scattered tap by tap in float64: dx[.., oh*s + kh*d - p, ..] += dy w^T."""
        f = self.forward
        (sh, sw), (ph, pw), (dh, dw) = f.strides, f.pads, f.dilations
        g, cpg, opg = f.groups, f.cin_per_group, f.cout_per_group
        dxp = np.zeros((f.n, f.h + 2 * ph, f.w + 2 * pw, g, cpg))
        wg = w.astype(np.float64).reshape(f.kh, f.kw, cpg, g, opg)
        dyg = dy.astype(np.float64).reshape(f.n, f.oh, f.ow, g, opg)
        for i in range(f.kh):
            for j in range(f.kw):
                dxp[:, i * dh: i * dh + sh * (f.oh - 1) + 1: sh, j * dw: j * dw + sw * (f.ow - 1) + 1: sw] += \
                    np.einsum("nhwgo,cgo->nhwgc", dyg, wg[i, j])
        dx = dxp[:, ph: ph + f.h, pw: pw + f.w].reshape(f.n, f.h, f.w, f.cin)
        return np.ascontiguousarray(dx.astype(out_dtype(w, dy)))


@dataclass(frozen=True)
class Conv2dWeightGrad(NestedLayer):
    """dw of an NHWC Conv2d: a reduction over every output pixel.

      dw[kh, kw, ci, co] = sum over n, oh, ow of
                           x[n, oh*stride + kh*dilation - pad, ow*stride + kw*dilation - pad, group(co)*cpg + ci]
                           * dy[n, oh, ow, co]          (x zero outside the image)
    Arguments: x (n, h, w, cin) (the forward's input), dy (n, oh, ow, cout).
    Output: dw (kh, kw, cin/groups, cout), HWIO like the forward's w.
    Stages and axes:
      "pad"  zero-padded x, as the forward's "pad": axes n, h, w, c
      "dw"   spatial kh, kw, ci, co; reduction n, oh, ow
    """

    forward: Conv2d = Conv2d()

    KIND: ClassVar[str] = "conv2d_weight_grad"

    def __post_init__(self):
        super().__post_init__()
        _check_conv(self, self.forward)

    def input_specs(self):
        f = self.forward
        return [TensorSpec("x", f.input_specs()[0].shape, "float32"),
                TensorSpec("dy", (f.n, f.oh, f.ow, f.cout), "float32")]

    def output_specs(self):
        return [TensorSpec("dw", self.forward.input_specs()[1].shape, "float32")]

    def ops(self):
        return self.forward.ops()

    def default_template(self):
        return "conv2d_weight_grad/nhwc"

    def tolerance(self):
        f = self.forward
        return (1e-4, 2e-6 * f.n * f.oh * f.ow)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        f = self.forward
        (sh, sw), (dh, dw_) = f.strides, f.dilations
        cpg, opg = f.cin_per_group, f.cout_per_group
        args, fresh = self.arguments(inputs, prefix)
        x, dy = args["x"], args["dy"]
        padded = f.pad_stage(x, prefix)
        rn = te.reduce_axis((0, f.n), "n")
        roh = te.reduce_axis((0, f.oh), "oh")
        row = te.reduce_axis((0, f.ow), "ow")
        dw = te.compute((f.kh, f.kw, cpg, f.cout), lambda kh, kw, ci, co: te.sum(
            padded[rn, roh * sh + kh * dh, row * sw + kw * dw_, ci if f.groups == 1 else (co // opg) * cpg + ci]
            * dy[rn, roh, row, co],
            axis=[rn, roh, row]), name=prefix + "dw")
        return Declaration(fresh, [dw])

    def reference(self, x, dy):
        f = self.forward
        (sh, sw), (ph, pw), (dh, dw) = f.strides, f.pads, f.dilations
        g, cpg, opg = f.groups, f.cin_per_group, f.cout_per_group
        xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        dyg = dy.astype(np.float64).reshape(f.n, f.oh, f.ow, g, opg)
        out = np.zeros((f.kh, f.kw, cpg, g, opg))
        for i in range(f.kh):
            for j in range(f.kw):
                win = xp[:, i * dh: i * dh + sh * (f.oh - 1) + 1: sh, j * dw: j * dw + sw * (f.ow - 1) + 1: sw]
                out[i, j] = np.einsum("nhwgc,nhwgo->cgo", win.reshape(f.n, f.oh, f.ow, g, cpg), dyg)
        return out.reshape(f.kh, f.kw, cpg, f.cout).astype(out_dtype(x, dy))


@dataclass(frozen=True)
class BiasGrad(Layer):
    """db[c] = sum over n, h, w of dy[n, h, w, c]: the gradient of a per-channel bias, NHWC fp32.

    Arguments: dy (n, h, w, c). Output: db (c,).
    Stages and axes:
      "rows"  each image row's sum: spatial n, h, c; reduction w   (a row per task: no atomics, deterministic)
      "db"    the sum of the rows: spatial c; reduction rn, rh
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64

    KIND: ClassVar[str] = "bias_grad"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)

    def input_specs(self):
        return [TensorSpec("dy", (self.n, self.h, self.w, self.c), "float32")]

    def output_specs(self):
        return [TensorSpec("db", (self.c,), "float32")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "bias_grad/nhwc"

    def tolerance(self):
        return (1e-5, 2e-7 * (self.n * self.h * self.w) ** 0.5 + 1e-7 * self.w)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        dy = args["dy"]
        rw = te.reduce_axis((0, self.w), "w")
        rows = te.compute((self.n, self.h, self.c), lambda n, h, c: te.sum(dy[n, h, rw, c], axis=rw),
                          name=prefix + "rows")
        rn = te.reduce_axis((0, self.n), "rn")
        rh = te.reduce_axis((0, self.h), "rh")
        db = te.compute((self.c,), lambda c: te.sum(rows[rn, rh, c], axis=[rn, rh]), name=prefix + "db")
        return Declaration(fresh, [db])

    def reference(self, dy):
        return dy.astype(np.float64).sum(axis=(0, 1, 2)).astype(out_dtype(dy))


def conv2d_backward(conv: Conv2d) -> Backward:
    """Steps, in order: [dz = ReLUGrad(saved y, grad dy) when act="relu"], dx = Conv2dDataGrad(input w, g),
    dw = Conv2dWeightGrad(input x, g), [db = BiasGrad(g) when bias], [dr = g when residual], where g is dz
    (after a fused ReLU) or dy."""
    core = _core(conv)
    steps = []
    g = "grad:y"
    if conv.act == "relu":
        steps.append(step("dz", ReLUGrad(ReLU(conv.n, conv.oh, conv.ow, conv.cout)), "saved:y", "grad:y"))
        g = "step:dz"
    steps.append(step("dx", Conv2dDataGrad(core), "input:w", g, wrt="x"))
    steps.append(step("dw", Conv2dWeightGrad(core), "input:x", g, wrt="w"))
    if conv.bias:
        steps.append(step("db", BiasGrad(conv.n, conv.oh, conv.ow, conv.cout), g, wrt="b"))
    if conv.residual:
        steps.append(step("dr", None, g, wrt="r"))
    return Backward(conv, tuple(steps))


registry.register_backward(Conv2d, conv2d_backward)
