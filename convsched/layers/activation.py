"""Activations as layers of their own, NHWC fp32: ReLU, and PReLU (a learned slope per channel for x < 0).

    ReLU(n, h, w, c)    y = max(x, 0)
    PReLU(n, h, w, c)   y = x if x > 0 else slope[c] * x      (He et al. 2015; PyTorch's nn.PReLU(c))

Both are ELEMENTWISE. Their gradients (layer.backward()) live in layers/backward/activation.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..backend import expr, te
from .base import Declaration, Layer, TensorSpec, check_positive, relu


@dataclass(frozen=True)
class _Elementwise(Layer):
    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64

    ELEMENTWISE: ClassVar[bool] = True
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)

    @property
    def shape(self):
        return (self.n, self.h, self.w, self.c)

    def output_specs(self):
        return [TensorSpec("y", self.shape, "float32")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return f"{self.KIND}/nhwc"

    def tolerance(self):
        return (0.0, 0.0)


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """y = max(x, 0), NHWC fp32; NaN stays NaN (as in numpy and PyTorch).

    Arguments: x (n, h, w, c). Output: y (n, h, w, c).
    Stages and axes: "relu" (n, h, w, c).
    """

    KIND: ClassVar[str] = "relu"

    def input_specs(self):
        return [TensorSpec("x", self.shape, "float32")]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        y = te.compute(self.shape, lambda n, h, w, c: relu(x[n, h, w, c], "float32"), name=prefix + "relu")
        return Declaration(fresh, [y])

    def reference(self, x):
        return np.maximum(x, 0).astype(x.dtype)


@dataclass(frozen=True)
class PReLU(_Elementwise):
    """y = x if x > 0 else slope[c] * x, NHWC fp32: a ReLU whose negative slope is learned per channel.

    Arguments: x (n, h, w, c), slope (c,). Output: y (n, h, w, c).
    Stages and axes: "prelu" (n, h, w, c).
    """

    KIND: ClassVar[str] = "prelu"

    def input_specs(self):
        return [TensorSpec("x", self.shape, "float32"), TensorSpec("slope", (self.c,), "float32")]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        x, slope = args["x"], args["slope"]
        y = te.compute(self.shape, lambda n, h, w, c: expr.Select(x[n, h, w, c] > 0, x[n, h, w, c],
                                                                   slope[c] * x[n, h, w, c]), name=prefix + "prelu")
        return Declaration(fresh, [y])

    def reference(self, x, slope):
        return np.where(x > 0, x, slope * x).astype(x.dtype)
