"""Pooling of packed bits: majority vote per segment (SegmentedBitPool), max pooling = OR of the words of
each window (BitMaxPool2d), and global majority or OR (BitGlobalPool)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ... import bits as B
from ...backend import expr, te
from ..base import Declaration, Layer, TensorSpec, canon_pair, check_choice, check_positive, conv_out_size, pair
from .stages import pack_stage, prepare_bit_args, segment_majority, segments_of


class _BitInput:
    """One argument x: (n, h, w, c) bits, given as logical 0/1 or packed uint64 words."""

    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def logical_bits(self) -> dict:
        return {"x": (self.n, self.h, self.w, self.c)}

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, B.words(self.c)), "uint64")]

    def prepare_inputs(self, arrays):
        return prepare_bit_args(self, arrays)

    def random_inputs(self, seed: int = 0):
        return [B.random_packed(np.random.default_rng(seed), self.logical_bits()["x"])]

    def x_bits(self, x) -> np.ndarray:
        """x as a 0/1 uint8 array of its logical shape (for references)."""
        return B.as_bits(x, self.logical_bits()["x"], "x")


def _bit_or():
    return te.comm_reducer(lambda a, b: a | b, lambda t: expr.const(0, t), name="bit_or")


@dataclass(frozen=True)
class SegmentedBitPool(_BitInput, Layer):
    """Majority vote of bits per segment: the h x w grid is cut into SX x SY segments of floor(h/SX) x
    floor(w/SY) pixels from the top-left (leftover rows/columns belong to no segment); per segment and
    channel, bit = (number of 1 bits) > floor(n_seg / 2), n_seg = floor(h/SX) * floor(w/SY).

    Arguments: x (n, h, w, c) bits. Output: (n, SX, SY, ceil(c/64)) uint64 packed bits.
    Stages: "count" int32 ones per segment and channel (spatial n, sx, sy, c; reduction i, j = pixel in
    the segment); "pack" (spatial n, sx, sy, k; reduction b).
    """

    n: int = 1
    h: int = 14
    w: int = None       # None: follows h
    c: int = 64
    segments: int | tuple = 2

    KIND: ClassVar[str] = "segmented_bit_pool"

    def __post_init__(self):
        object.__setattr__(self, "segments", canon_pair(self.segments))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        sx, sy = segments_of(self.segments, self)
        if sx > self.h or sy > self.w:
            raise ValueError(f"{type(self).__name__}: {sx}x{sy} segments do not fit a {self.h}x{self.w} grid")

    @property
    def seg_shape(self):
        sx, sy = segments_of(self.segments)
        return self.h // sx, self.w // sy

    def output_specs(self):
        sx, sy = segments_of(self.segments)
        return [TensorSpec("y", (self.n, sx, sy, B.words(self.c)), "uint64")]

    def ops(self):
        sx, sy = segments_of(self.segments)
        return self.n * sx * sy * self.seg_shape[0] * self.seg_shape[1] * self.c

    def default_template(self):
        return "segmented_bit_pool/rows"

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        (nsx, nsy), (gh, gw) = segments_of(self.segments), self.seg_shape
        i = te.reduce_axis((0, gh), "i")
        j = te.reduce_axis((0, gw), "j")
        count = te.compute((self.n, nsx, nsy, self.c), lambda n, sx, sy, c: te.sum(
            ((x[n, sx * gh + i, sy * gw + j, c // B.WORD] >> (c % B.WORD).astype("uint64"))
             & np.uint64(1)).astype("int32"), axis=[i, j]), name=prefix + "count")
        half = (gh * gw) // 2
        pack = pack_stage((self.n, nsx, nsy), self.c, lambda n, sx, sy, c: count[n, sx, sy, c] > half,
                          prefix + "pack", ("n", "sx", "sy"))
        return Declaration(fresh, [pack])

    def reference(self, x):
        return B.pack(segment_majority(self.x_bits(x).astype(np.int32), segments_of(self.segments)), axis=-1)


@dataclass(frozen=True)
class BitMaxPool2d(_BitInput, Layer):
    """Max pooling of bits: +1 wins, so the result is the OR of the packed words of each k x k window.

    Arguments: x (n, h, w, c) bits. Output: (n, oh, ow, ceil(c/64)) uint64. Padding is -1 (bit 0), which
    never wins. Stages: "pad" (n, h, w, c = word), "pool" (spatial n, oh, ow, c; reduction kh, kw).
    """

    n: int = 1
    h: int = 16
    w: int = None       # None: follows h
    c: int = 64
    k: int | tuple = 2
    stride: int | tuple = 2
    pad: int | tuple = 0

    KIND: ClassVar[str] = "bit_max_pool2d"

    def __post_init__(self):
        for f in ("k", "stride", "pad"):
            object.__setattr__(self, f, canon_pair(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        if min(pair(self.k)) <= 0 or min(pair(self.stride)) <= 0 or min(pair(self.pad)) < 0:
            raise ValueError("BitMaxPool2d: k and stride must be positive and pad >= 0")
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"BitMaxPool2d: window {self.k} does not fit the {self.h}x{self.w} input")

    @property
    def oh(self):
        return conv_out_size(self.h, pair(self.k)[0], pair(self.stride)[0], pair(self.pad)[0], pair(self.pad)[0], 1)

    @property
    def ow(self):
        return conv_out_size(self.w, pair(self.k)[1], pair(self.stride)[1], pair(self.pad)[1], pair(self.pad)[1], 1)

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.oh, self.ow, B.words(self.c)), "uint64")]

    def ops(self):
        kh, kw = pair(self.k)
        return self.n * self.oh * self.ow * B.words(self.c) * kh * kw

    def default_template(self):
        return "bit_max_pool2d/rows"

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        H, W, CW = self.h, self.w, B.words(self.c)
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        pad = te.compute((self.n, H + 2 * ph, W + 2 * pw, CW), lambda n, h, w, c: expr.if_then_else(
            expr.all(h >= ph, h < H + ph, w >= pw, w < W + pw), x[n, h - ph, w - pw, c],
            expr.const(0, "uint64")), name=prefix + "pad")
        bor = _bit_or()
        rh = te.reduce_axis((0, kh), "kh")
        rw = te.reduce_axis((0, kw), "kw")
        pool = te.compute((self.n, self.oh, self.ow, CW), lambda n, oh, ow, c: bor(
            pad[n, oh * sh + rh, ow * sw + rw, c], axis=[rh, rw]), name=prefix + "pool")
        return Declaration(fresh, [pool])

    def reference(self, x):
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        bp = np.pad(self.x_bits(x), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(bp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        return B.pack(win[:, :self.oh, :self.ow].max(axis=(-2, -1)), axis=-1)


@dataclass(frozen=True)
class BitGlobalPool(_BitInput, Layer):
    """Global pooling of bits over the whole h x w image, per channel.

    mode "majority": bit = (number of 1 bits) > floor(h*w / 2)  (the loss-delta "global" head's pooling);
    mode "or": bit = OR over the image (global max pooling of +-1 values).
    Arguments: x (n, h, w, c) bits. Output: (n, 1, 1, ceil(c/64)) uint64.
    Stages: majority: "count" (spatial n, sx, sy, c; reduction i, j), "pack" (n, sx, sy, k; b);
            or: "pool" (spatial n, i0, i1, c = word; reduction i, j).
    """

    n: int = 1
    h: int = 7
    w: int = None       # None: follows h
    c: int = 64
    mode: str = "majority"

    KIND: ClassVar[str] = "bit_global_pool"

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        check_choice(self, "mode", self.mode, ("majority", "or"))

    def output_specs(self):
        return [TensorSpec("y", (self.n, 1, 1, B.words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * (self.c if self.mode == "majority" else B.words(self.c))

    def default_template(self):
        return "bit_global_pool/rows"

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        if self.mode == "majority":
            seg = SegmentedBitPool(n=self.n, h=self.h, w=self.w, c=self.c, segments=1)
            return seg.declare(inputs=inputs, prefix=prefix)
        args, fresh = self.arguments(inputs, prefix)
        x = args["x"]
        bor = _bit_or()
        i = te.reduce_axis((0, self.h), "i")
        j = te.reduce_axis((0, self.w), "j")
        pool = te.compute((self.n, 1, 1, B.words(self.c)), lambda n, i0, i1, c: bor(x[n, i0 + i, i1 + j, c],
                                                                                  axis=[i, j]),
                          name=prefix + "pool")
        return Declaration(fresh, [pool])

    def reference(self, x):
        b = self.x_bits(x)
        if self.mode == "or":
            return B.pack(b.max(axis=(1, 2), keepdims=True), axis=-1)
        return B.pack(segment_majority(b.astype(np.int32), (1, 1)), axis=-1)
