"""Backward of the activations: ReLUGrad and PReLUGrad (gradients to the input and to the slopes), NHWC fp32.

At x == 0 both take the x <= 0 branch (ReLU: gradient 0; PReLU: slope), as PyTorch does; so does NaN (every
test of x > 0 is false for it): ReLU's gradient 0, PReLU's slope * dy and a NaN slope gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...backend import expr, te
from .. import registry
from ..activation import PReLU, ReLU
from ..base import Declaration, TensorSpec
from .base import Backward, NestedLayer, out_dtype, step


@dataclass(frozen=True)
class ReLUGrad(NestedLayer):
    """dx = dy where y > 0, else 0 (y = the saved ReLU output; y > 0 exactly where x > 0).

    Arguments: y (n, h, w, c) (saved forward output), dy (n, h, w, c). Output: dx (n, h, w, c).
    Stages and axes: "dx" (n, h, w, c).
    """

    forward: ReLU = ReLU()

    KIND: ClassVar[str] = "relu_grad"
    ELEMENTWISE: ClassVar[bool] = True
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def input_specs(self):
        shape = self.forward.shape
        return [TensorSpec("y", shape, "float32"), TensorSpec("dy", shape, "float32")]

    def output_specs(self):
        return [TensorSpec("dx", self.forward.shape, "float32")]

    def ops(self):
        return self.forward.ops()

    def default_template(self):
        return "relu_grad/nhwc"

    def tolerance(self):
        return (0.0, 0.0)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        y, dy = args["y"], args["dy"]
        dx = te.compute(self.forward.shape, lambda n, h, w, c: expr.Select(
            y[n, h, w, c] > 0, dy[n, h, w, c], expr.const(0.0, "float32")), name=prefix + "dx")
        return Declaration(fresh, [dx])

    def reference(self, y, dy):
        return np.where(y > 0, dy, 0).astype(out_dtype(dy))


@dataclass(frozen=True)
class PReLUGrad(NestedLayer):
    """Gradients of PReLU to its input and to its slopes, in one kernel:

      dx[n, h, w, c] = dy if x > 0 else slope[c] * dy
      dslope[c]      = sum over n, h, w of (0 if x > 0 else x * dy)

    Arguments: x (n, h, w, c), slope (c,) (the forward's inputs), dy (n, h, w, c).
    Outputs: dx (n, h, w, c), dslope (c,).
    Stages and axes:
      "dx"      n, h, w, c
      "rows"    each image row's share of dslope: spatial n, h, c; reduction w   (a row per task, no atomics)
      "dslope"  the sum of the rows: spatial c; reduction rn, rh
    """

    forward: PReLU = PReLU()

    KIND: ClassVar[str] = "prelu_grad"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def input_specs(self):
        f = self.forward
        return [TensorSpec("x", f.shape, "float32"), TensorSpec("slope", (f.c,), "float32"),
                TensorSpec("dy", f.shape, "float32")]

    def output_specs(self):
        f = self.forward
        return [TensorSpec("dx", f.shape, "float32"), TensorSpec("dslope", (f.c,), "float32")]

    def ops(self):
        return 2 * self.forward.ops()

    def default_template(self):
        return "prelu_grad/nhwc"

    def tolerance(self):
        # dslope sums n*h*w products of values in [-1, 1) in float32, a row at a time
        f = self.forward
        return (1e-5, 2e-7 * (f.n * f.h * f.w) ** 0.5 + 1e-7 * f.w)

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        f = self.forward
        zero = expr.const(0.0, "float32")
        args, fresh = self.arguments(inputs, prefix)
        x, slope, dy = args["x"], args["slope"], args["dy"]
        dx = te.compute(f.shape, lambda n, h, w, c: expr.Select(x[n, h, w, c] > 0, dy[n, h, w, c],
                                                                slope[c] * dy[n, h, w, c]), name=prefix + "dx")
        rw = te.reduce_axis((0, f.w), "w")
        rows = te.compute((f.n, f.h, f.c), lambda n, h, c: te.sum(expr.Select(
            x[n, h, rw, c] > 0, zero, x[n, h, rw, c] * dy[n, h, rw, c]), axis=rw), name=prefix + "rows")
        rn = te.reduce_axis((0, f.n), "rn")
        rh = te.reduce_axis((0, f.h), "rh")
        dslope = te.compute((f.c,), lambda c: te.sum(rows[rn, rh, c], axis=[rn, rh]), name=prefix + "dslope")
        return Declaration(fresh, [dx, dslope])

    def reference(self, x, slope, dy):
        dt = out_dtype(x, dy)
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        pos = x64 > 0                  # NaN x is not > 0: slope * dy, and NaN into dslope (PyTorch's rule too)
        dx = np.where(pos, dy64, slope.astype(np.float64) * dy64)
        dslope = np.where(pos, 0, x64 * dy64).sum(axis=(0, 1, 2))
        return dx.astype(dt), dslope.astype(dt)


def relu_backward(relu: ReLU) -> Backward:
    return Backward(relu, (step("dx", ReLUGrad(relu), "saved:y", "grad:y", wrt="x"),))


def prelu_backward(prelu: PReLU) -> Backward:
    """One kernel gives both gradients."""
    return Backward(prelu, (step("dx, dslope", PReLUGrad(prelu), "input:x", "input:slope", "grad:y",
                                 wrt="x, slope"),))


registry.register_backward(ReLU, relu_backward)
registry.register_backward(PReLU, prelu_backward)
