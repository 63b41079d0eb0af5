"""Layout transforms between NHWC / NCHW and the blocked NCHWc layout, as kernels.

    t = cs.layers.LayoutTransform(n=1, c=64, h=56, w=56, src="NHWC", dst="NCHWc", cblock=8)
    xb = cs.compile(t)(x)          # (1, 56, 56, 64) -> (1, 8, 56, 56, 8)

A network keeps its activations in NCHWc between NCHWc convolutions and converts only at its edges.
Stage "out" (the only stage) has the destination's axes: NCHWc n, cb, h, w, c; NCHW n, c, h, w; NHWC n, h, w, c.
Weights are not transformed here: Conv2d.pack_weights() blocks them once, in numpy, when they are loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Declaration, Layer, TensorSpec, check_positive
from .conv import nchwc_pack, nchwc_unpack

LAYOUTS = ("NHWC", "NCHW", "NCHWc")


@dataclass(frozen=True)
class LayoutTransform(Layer):
    """y = x in another layout (a pure copy: exact). x's layout is `src`, y's is `dst`."""

    n: int = 1
    c: int = 64
    h: int = 56
    w: int = 56
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
            if getattr(self, f) not in LAYOUTS:
                raise ValueError(f"LayoutTransform: {f} must be one of {LAYOUTS}, got {getattr(self, f)!r}")
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

    def declare(self, algorithm: str = "direct") -> Declaration:
        from ..backend import te
        x = te.placeholder(self._shape(self.src), self.dtype, name="x")
        cb = self.cblock
        if self.dst == "NCHWc":
            y = te.compute(self._shape("NCHWc"), lambda n, b, h, w, c: self._read(x, n, b * cb + c, h, w), name="out")
        elif self.dst == "NCHW":
            y = te.compute(self._shape("NCHW"), lambda n, c, h, w: self._read(x, n, c, h, w), name="out")
        else:
            y = te.compute(self._shape("NHWC"), lambda n, h, w, c: self._read(x, n, c, h, w), name="out")
        return Declaration([x], [y])

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
