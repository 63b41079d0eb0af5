"""The binary classifier head: popcount mismatches between packed feature bits and per-class weight bits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ... import bits as B
from ...backend import expr, te
from ..base import Declaration, Layer, TensorSpec, check_positive
from .stages import prepare_bit_args


@dataclass(frozen=True)
class BitDense(Layer):
    """Binary fully-connected scores: y[n, k] = popcount(x[n] XOR w[k]) over all h*w*c bits (int32).

    The loss-delta heads' "score_k = popcount(fc[k] XOR pooled)": the number of mismatching bits,
    so a low score means agreement (in +-1 values the dot product is h*w*c - 2*score).
    Arguments: x (n, h, w, c) bits, w (classes, h, w, c) bits: logical 0/1 arrays or packed uint64 words
    (cs.bits.pack along the last axis; pad bits 0). Output: (n, classes) int32.
    Stages and axes: "scores" (spatial n, k; reduction i, j, q = word).
    """

    n: int = 1
    h: int = 2
    w: int = None       # None: follows h
    c: int = 64
    classes: int = 10

    KIND: ClassVar[str] = "bit_dense"
    op_unit: ClassVar[str] = "bit-MAC"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c, classes=self.classes)

    @property
    def cw(self) -> int:
        return B.words(self.c)

    def logical_bits(self) -> dict:
        return {"x": (self.n, self.h, self.w, self.c), "w": (self.classes, self.h, self.w, self.c)}

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.cw), "uint64"),
                TensorSpec("w", (self.classes, self.h, self.w, self.cw), "uint64")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.classes), "int32")]

    def ops(self):
        return self.n * self.classes * self.h * self.w * self.c

    def default_template(self):
        return "bit_dense/direct"

    def prepare_inputs(self, arrays):
        return prepare_bit_args(self, arrays)

    def random_inputs(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        return [B.random_packed(rng, shape) for shape in self.logical_bits().values()]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        x, wt = args["x"], args["w"]
        i = te.reduce_axis((0, self.h), "i")
        j = te.reduce_axis((0, self.w), "j")
        q = te.reduce_axis((0, self.cw), "q")
        y = te.compute((self.n, self.classes), lambda n, k: te.sum(
            expr.popcount(x[n, i, j, q] ^ wt[k, i, j, q]).astype("int32"), axis=[i, j, q]), name=prefix + "scores")
        return Declaration(fresh, [y])

    def reference(self, x, w):
        logical = self.logical_bits()
        xp = B.as_packed(x, logical["x"], "x")
        wp = B.as_packed(w, logical["w"], "w")
        mism = B.popcount(xp[:, None] ^ wp[None])
        return mism.reshape(self.n, self.classes, -1).sum(-1).astype(np.int32)
