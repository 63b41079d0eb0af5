"""Layers that produce packed bits from other values: the sign of floats (BitPack) and a per-channel threshold
of integer counts (PopcountThreshold)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ... import bits as B
from ..base import Declaration, Layer, TensorSpec, check_choice, check_positive
from .stages import COMPARES, pack_stage, sign_pack, threshold_bit


@dataclass(frozen=True)
class BitPack(Layer):
    """y = sign bits of x, packed: bit 1 (+1) where x >= 0, bit 0 (-1) where x < 0 (cs.bits.from_sign).

    Arguments: x (n, h, w, c) float32. Output: (n, h, w, ceil(c/64)) uint64, little-endian, pad bits 0.
    Stages: "pack" (spatial n, h, w, k = word; reduction b = bit in word). To fuse the packing into a
    producer, declare the producer and call stages.sign_pack(producer_tensor).
    """

    n: int = 1
    h: int = 32
    w: int = None       # None: follows h
    c: int = 64

    KIND: ClassVar[str] = "bitpack"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.h, self.w, B.words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "bitpack/rows"

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        args, fresh = self.arguments(inputs, prefix)
        return Declaration(fresh, [sign_pack(args["x"], prefix + "pack")])

    def reference(self, x):
        return B.pack(B.from_sign(x), axis=-1)


@dataclass(frozen=True)
class PopcountThreshold(Layer):
    """y = packed bits of (counts[n, h, w, c] compare thresholds[c]), compare ">" (default) or "<=".

    Arguments: counts (n, h, w, c) int32, thresholds (c,) int32. Output: (n, h, w, ceil(c/64)) uint64.
    (BinaryConv2d(threshold=True) fuses the same epilogue into the conv.)
    Stages: "pack" (spatial n, h, w, k = word; reduction b = bit in word).
    """

    n: int = 1
    h: int = 16
    w: int = None       # None: follows h
    c: int = 64
    compare: str = ">"

    KIND: ClassVar[str] = "popcount_threshold"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        check_choice(self, "compare", self.compare, COMPARES)

    def input_specs(self):
        return [TensorSpec("counts", (self.n, self.h, self.w, self.c), "int32"),
                TensorSpec("thresholds", (self.c,), "int32")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.h, self.w, B.words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "popcount_threshold/rows"

    def random_inputs(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        return [rng.integers(-40, 40, (self.n, self.h, self.w, self.c), endpoint=True).astype(np.int32),
                rng.integers(-20, 20, self.c, endpoint=True).astype(np.int32)]

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        args, fresh = self.arguments(inputs, prefix)
        cnt, t = args["counts"], args["thresholds"]
        pack = pack_stage((self.n, self.h, self.w), self.c,
                          lambda n, h, w, c: threshold_bit(cnt[n, h, w, c], t[c], self.compare), prefix + "pack",
                          ("n", "h", "w"))
        return Declaration(fresh, [pack])

    def reference(self, counts, thresholds):
        return B.pack(threshold_bit(np.asarray(counts), np.asarray(thresholds), self.compare), axis=-1)
