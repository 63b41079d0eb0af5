"""Elementwise and fully-connected layers that networks need between convolutions and pools.

    Add(n, h, w, c, act="relu")          y = act(a + b): the residual join of a ResNet block
    Dense(n, h, w, c, cout, bias=True)   y = flatten(x) @ w + b: a classifier head (FC scores)
(BitDense, the binary classifier head, is with the binary layers.)

Both are NHWC fp32. Add is ELEMENTWISE: the graph's fusion planner may inline it into the stage that
produces one of its inputs (a conv's bias epilogue), so it never costs a pass over memory of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..backend import te
from .base import Declaration, Layer, TensorSpec, check_choice, check_positive, relu

ACTIVATIONS = (None, "relu")


@dataclass(frozen=True)
class Add(Layer):
    """y = act(a + b), NHWC fp32, same shape everywhere.

    Arguments: a (n, h, w, c), b (n, h, w, c). Output: y (n, h, w, c).
    Stages and axes: "add" (a + b; axes n, h, w, c), "act" (max(., 0); act="relu" only; same axes).
    """

    n: int = 1
    h: int = 56
    w: int = None       # None: follows h
    c: int = 64
    act: str | None = None
    dtype: str = "float32"

    KIND: ClassVar[str] = "add"
    ELEMENTWISE: ClassVar[bool] = True
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        check_choice(self, "act", self.act, ACTIVATIONS)
        if self.dtype != "float32":
            raise ValueError(f"Add: only float32 is supported, got {self.dtype!r}")

    @property
    def shape(self):
        return (self.n, self.h, self.w, self.c)

    def input_specs(self):
        return [TensorSpec("a", self.shape, self.dtype), TensorSpec("b", self.shape, self.dtype)]

    def output_specs(self):
        return [TensorSpec("y", self.shape, self.dtype)]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "add/nhwc"

    def tolerance(self):
        return (1e-6, 1e-6)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        a, b = args["a"], args["b"]
        out = te.compute(self.shape, lambda n, h, w, c: a[n, h, w, c] + b[n, h, w, c], name=prefix + "add")
        if self.act == "relu":
            s = out
            out = te.compute(self.shape, lambda n, h, w, c: relu(s[n, h, w, c], self.dtype), name=prefix + "act")
        return Declaration(fresh, [out])

    def reference(self, a, b):
        y = a.astype(np.float64) + b
        if self.act == "relu":
            y = np.maximum(y, 0)
        return y.astype(np.float32)


@dataclass(frozen=True)
class Dense(Layer):
    """y = act(flatten(x) @ w + b), fp32: a fully-connected layer (classifier scores).

    Arguments: x (n, h, w, c) (NHWC, flattened in that order: k = (i*w + j)*c + ch), w (h*w*c, cout)
    [cout contiguous], b (cout,) when bias=True. Output: y (n, cout).
    Stages and axes: "dense" (spatial n, co; reduction k), "bias" (bias=True; n, co), "act" (act="relu").
    """

    n: int = 1
    h: int = 1
    w: int = None       # None: follows h
    c: int = 512
    cout: int = 10
    bias: bool = True
    act: str | None = None
    dtype: str = "float32"

    KIND: ClassVar[str] = "dense"

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c, cout=self.cout)
        check_choice(self, "act", self.act, ACTIVATIONS)
        if self.dtype != "float32":
            raise ValueError(f"Dense: only float32 is supported, got {self.dtype!r}")

    @property
    def k(self) -> int:
        return self.h * self.w * self.c

    def input_specs(self):
        specs = [TensorSpec("x", (self.n, self.h, self.w, self.c), self.dtype),
                 TensorSpec("w", (self.k, self.cout), self.dtype)]
        if self.bias:
            specs.append(TensorSpec("b", (self.cout,), self.dtype))
        return specs

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.cout), self.dtype)]

    def ops(self):
        return self.n * self.k * self.cout

    def default_template(self):
        return "dense/direct"

    def tolerance(self):
        return (1e-4, 2e-6 * self.k)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        H, W, C = self.h, self.w, self.c
        args, fresh = self.arguments(inputs, prefix)
        x, wt = args["x"], args["w"]
        k = te.reduce_axis((0, self.k), "k")
        out = te.compute((self.n, self.cout), lambda n, co: te.sum(
            x[n, k // (W * C), k // C % W, k % C] * wt[k, co], axis=k), name=prefix + "dense")
        if self.bias:
            b, d = args["b"], out
            out = te.compute(d.shape, lambda n, co: d[n, co] + b[co], name=prefix + "bias")
        if self.act == "relu":
            p = out
            out = te.compute(p.shape, lambda n, co: relu(p[n, co], self.dtype), name=prefix + "act")
        return Declaration(fresh, [out])

    def reference(self, x, w, b=None):
        y = x.reshape(self.n, -1).astype(np.float64) @ w.astype(np.float64)
        if b is not None:
            y = y + b
        if self.act == "relu":
            y = np.maximum(y, 0)
        return y.astype(np.float32)
