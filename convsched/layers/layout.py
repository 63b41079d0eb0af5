"""Layout transforms between NHWC / NCHW and the blocked NCHWc layout, as kernels.

    t = cs.layers.LayoutTransform(n=1, c=64, h=56, w=56, src="NHWC", dst="NCHWc", cblock=8)
    xb = cs.compile(t)(x)          # (1, 56, 56, 64) -> (1, 8, 56, 56, 8)

A network keeps its activations in NCHWc between NCHWc convolutions and converts only at its edges.
Stage "out" (the only stage) has the destination's axes: NCHWc n, cb, h, w, c; NCHW n, c, h, w; NHWC n, h, w, c.
Weights are not transformed here: Conv2d.pack_weights() blocks them once, in numpy, when they are loaded,
with the numpy helpers below (nchwc_pack / nchwc_unpack for activations, pack_weights_nchwc and
pack_weights_panels for weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..backend import te
from .base import Declaration, Layer, TensorSpec, check_choice, check_positive

LAYOUTS = ("NHWC", "NCHW", "NCHWc")


# ------------------------------------------------------------------ blocked and panel layouts (numpy)
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


@dataclass(frozen=True)
class LayoutTransform(Layer):
    """y = x in another layout (a pure copy: exact). x's layout is `src`, y's is `dst`."""

    n: int = 1
    c: int = 64
    h: int = 56
    w: int = None       # None: follows h
    src: str = "NHWC"
    dst: str = "NCHWc"
    cblock: int = 8
    dtype: str = "float32"

    KIND: ClassVar[str] = "layout_transform"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, c=self.c, h=self.h, w=self.w, cblock=self.cblock)
        for f in ("src", "dst"):
            check_choice(self, f, getattr(self, f), LAYOUTS)
        if self.src == self.dst:
            raise ValueError(f"LayoutTransform: src and dst are both {self.src}")
        if "NCHWc" in (self.src, self.dst) and self.c % self.cblock:
            raise ValueError(f"LayoutTransform: c={self.c} is not a multiple of cblock={self.cblock}")

    def _shape(self, layout):
        return {"NHWC": (self.n, self.h, self.w, self.c), "NCHW": (self.n, self.c, self.h, self.w),
                "NCHWc": (self.n, self.c // self.cblock, self.h, self.w, self.cblock)}[layout]

    def input_specs(self):
        return [TensorSpec("x", self._shape(self.src), self.dtype)]

    def output_specs(self):
        return [TensorSpec("y", self._shape(self.dst), self.dtype)]

    def ops(self) -> int:
        return self.n * self.c * self.h * self.w      # elements moved

    def default_template(self) -> str:
        return "layout_transform/copy"

    def _read(self, x, n, c, h, w):
        """x at logical (n, c, h, w)."""
        if self.src == "NHWC":
            return x[n, h, w, c]
        if self.src == "NCHW":
            return x[n, c, h, w]
        return x[n, c // self.cblock, h, w, c % self.cblock]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        x, cb, name = args["x"], self.cblock, prefix + "out"
        if self.dst == "NCHWc":
            y = te.compute(self._shape("NCHWc"), lambda n, b, h, w, c: self._read(x, n, b * cb + c, h, w), name=name)
        elif self.dst == "NCHW":
            y = te.compute(self._shape("NCHW"), lambda n, c, h, w: self._read(x, n, c, h, w), name=name)
        else:
            y = te.compute(self._shape("NHWC"), lambda n, h, w, c: self._read(x, n, c, h, w), name=name)
        return Declaration(fresh, [y])

    def reference(self, x):
        if self.src == "NCHWc":
            x = nchwc_unpack(x, dst="NCHW")
        elif self.src == "NHWC":
            x = np.transpose(x, (0, 3, 1, 2))
        if self.dst == "NCHWc":
            return nchwc_pack(x, self.cblock, src="NCHW")
        if self.dst == "NHWC":
            return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
        return np.ascontiguousarray(x)
