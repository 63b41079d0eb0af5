"""Binary convolutions: XOR-popcount conv on packed bits (BinaryConv2d), and conv + threshold + segmented
majority pool fused into one layer (BinaryConvPool)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ... import bits as B
from ...backend import expr, te
from ..base import Declaration, Layer, TensorSpec, canon_pair, check_choice, check_positive, conv_out_size, pair
from .stages import (COMPARES, OUTPUTS, binary_conv_count, conv_value, pack_stage, prepare_bit_args,
                     segment_majority, segments_of, threshold_bit)


@dataclass(frozen=True)
class BinaryConv2d(Layer):
    """Binary 2-D convolution on packed NHWC bits: XOR + popcount over kh x kw x cin bits per output.

    Arguments (call order): x (n, h, w, cin) bits, w (cout, kh, kw, cin) bits [OHWI, packed along I], and,
    when threshold=True, thresholds (cout,) int32. Bits as logical 0/1 arrays or packed uint64 words.
    stride, pad: an int or an (along h, along w) pair. Padding pixels have every channel = pad_value
    (-1: bit 0, +1: bit 1), so they count like real pixels in both outputs.
    Output, (n, oh, ow, cout):
      output="dot"       int32 sum over the window of x * w in +-1 values = K - 2 * mismatches,
                         K = kh * kw * cin;
      output="mismatch"  int32 number of mismatching bits (popcount of XOR);
      threshold=True     instead packed bits (n, oh, ow, ceil(cout/64)) uint64 of `value compare t[co]`
                         with compare ">" (default) or "<=" (the opposite), value as chosen by `output`:
                         the PopcountThreshold epilogue fused, so the conv writes packed bits directly.

    Stages and axes (the schedule's vocabulary):
      "pad"    padded input words; axes n, h, w, c (c = word)
      "wt"     weights re-laid (kh, kw, cw, co), output channel innermost; axes kh, kw, cw, co
      "count"  uint64 mismatch count; spatial n, oh, ow, co; reduction kh, kw, cw (cw = input word);
               with threshold=True co runs over whole words (ceil(cout/64) * 64 channels, zero weights
               past cout) so the pack epilogue reads whole words of counts
      "out"    int32 value (threshold=False): axes n, oh, ow, co
      "pack"   packed threshold bits (threshold=True): spatial n, oh, ow, k (output word); reduction b
    ops() = n * oh * ow * cout * kh * kw * cin bit-MACs (logical channels, padding included).
    """

    n: int = 1
    h: int = 32
    w: int = None       # None: follows h
    cin: int = 64
    cout: int = 64
    kh: int = 3
    kw: int = None      # None: follows kh
    stride: int | tuple = 1
    pad: int | tuple = 0
    pad_value: int = -1
    output: str = "dot"
    threshold: bool = False
    compare: str = ">"

    KIND: ClassVar[str] = "binary_conv2d"
    op_unit: ClassVar[str] = "bit-MAC"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        for f in ("stride", "pad"):
            object.__setattr__(self, f, canon_pair(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, cin=self.cin, cout=self.cout, kh=self.kh, kw=self.kw)
        if min(pair(self.stride)) <= 0 or min(pair(self.pad)) < 0:
            raise ValueError(f"{type(self).__name__}: stride must be positive and pad >= 0 "
                             f"(stride={self.stride}, pad={self.pad})")
        if self.pad_value not in (-1, 1):
            raise ValueError(f"{type(self).__name__}: pad_value must be -1 (bit 0) or +1 (bit 1), "
                             f"got {self.pad_value!r}")
        check_choice(self, "output", self.output, OUTPUTS)
        check_choice(self, "compare", self.compare, COMPARES)
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"{type(self).__name__}: a {self.kh}x{self.kw} kernel does not fit the "
                             f"{self.h}x{self.w} input with pad {self.pad}")

    # geometry
    @property
    def oh(self):
        return conv_out_size(self.h, self.kh, pair(self.stride)[0], pair(self.pad)[0], pair(self.pad)[0], 1)

    @property
    def ow(self):
        return conv_out_size(self.w, self.kw, pair(self.stride)[1], pair(self.pad)[1], pair(self.pad)[1], 1)

    @property
    def k_bits(self):
        """Bits per output: kh * kw * cin."""
        return self.kh * self.kw * self.cin

    @property
    def cin_words(self):
        return B.words(self.cin)

    @property
    def cout_words(self):
        return B.words(self.cout)

    def logical_bits(self) -> dict:
        """{bit argument: its logical shape} (the arguments prepare_inputs packs)."""
        return {"x": (self.n, self.h, self.w, self.cin), "w": (self.cout, self.kh, self.kw, self.cin)}

    def input_specs(self):
        specs = [TensorSpec("x", (self.n, self.h, self.w, self.cin_words), "uint64"),
                 TensorSpec("w", (self.cout, self.kh, self.kw, self.cin_words), "uint64")]
        if self.threshold:
            specs.append(TensorSpec("thresholds", (self.cout,), "int32"))
        return specs

    def output_specs(self):
        if self.threshold:
            return [TensorSpec("y", (self.n, self.oh, self.ow, self.cout_words), "uint64")]
        return [TensorSpec("y", (self.n, self.oh, self.ow, self.cout), "int32")]

    def ops(self):
        return self.n * self.oh * self.ow * self.cout * self.k_bits

    def default_template(self):
        return "binary_conv2d/blocked"

    # arguments
    def prepare_inputs(self, arrays):
        return prepare_bit_args(self, arrays)

    def random_inputs(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        out = [B.random_packed(rng, shape) for shape in self.logical_bits().values()]
        if self.threshold:
            out.append(self._random_thresholds(rng))
        return out

    def _random_thresholds(self, rng):
        # around the value's mean, one standard deviation either side: both bit values are common
        k, sd = self.k_bits, max(1, int(np.sqrt(self.k_bits)))
        mid = 0 if self.output == "dot" else k // 2
        return rng.integers(mid - sd, mid + sd, self.cout, endpoint=True).astype(np.int32)

    # algorithm
    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        args, fresh = self.arguments(inputs, prefix)
        extent = None if not self.threshold else self.cout_words * B.WORD
        _, _, count = binary_conv_count(args["x"], args["w"], self, prefix, extent)
        if not self.threshold:
            out = te.compute(count.shape, lambda n, oh, ow, co: conv_value(self, count[n, oh, ow, co]),
                             name=prefix + "out")
            return Declaration(fresh, [out])
        t = args["thresholds"]
        pack = pack_stage((self.n, self.oh, self.ow), self.cout,
                          lambda n, oh, ow, co: threshold_bit(conv_value(self, count[n, oh, ow, co]),
                                                              t[expr.min(co, self.cout - 1)], self.compare),
                          prefix + "pack", ("n", "oh", "ow"), raw_channel=True)
        return Declaration(fresh, [pack])

    def reference_values(self, x, w) -> np.ndarray:
        """int32 (n, oh, ow, cout): the dot product or the mismatch count, per `output`."""
        (sh, sw), (ph, pw) = pair(self.stride), pair(self.pad)
        logical = self.logical_bits()
        xs = B.to_pm1(B.as_bits(x, logical["x"], "x")).astype(np.int32)
        ws = B.to_pm1(B.as_bits(w, logical["w"], "w")).astype(np.int32)
        xp = np.pad(xs, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=self.pad_value)
        win = np.lib.stride_tricks.sliding_window_view(xp, (self.kh, self.kw), axis=(1, 2))
        win = win[:, ::sh, ::sw][:, :self.oh, :self.ow]               # n, oh, ow, cin, kh, kw
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(self.n * self.oh * self.ow, self.k_bits)
        dot = (cols @ ws.reshape(self.cout, self.k_bits).T).reshape(self.n, self.oh, self.ow, self.cout)
        return (dot if self.output == "dot" else (self.k_bits - dot) // 2).astype(np.int32)

    def reference(self, x, w, thresholds=None):
        v = self.reference_values(x, w)
        if not self.threshold:
            return v
        return B.pack(threshold_bit(v, np.asarray(thresholds)[None, None, None, :], self.compare), axis=-1)


@dataclass(frozen=True)
class BinaryConvPool(BinaryConv2d):
    """Binary conv + popcount threshold + segmented bit pool, fused: the pooled bits are the only output.

    act[n, p, co] = (value compare t[co]) with value the dot product or mismatch count of BinaryConv2d
    (same fields: kh, kw, stride, pad, pad_value, output, compare). The oh x ow activation grid is cut into
    SX x SY segments of floor(oh/SX) x floor(ow/SY) patches from the top-left (leftovers belong to no
    segment); pooled bit = (active patches in the segment) > floor(n_seg / 2).
    (The loss-delta layer's forward pass: 3x3 valid conv, output="mismatch", compare ">", t = 9C // 2.)

    Arguments: x (n, h, w, cin) bits, w (cout, kh, kw, cin) bits, thresholds (cout,) int32.
    Output: (n, SX, SY, ceil(cout/64)) uint64.
    Stages: "pad", "wt", "count" as in BinaryConv2d; "segcount" int32 active patches (spatial n, sx, sy, co;
    reduction i, j = patch in segment); "pack" (n, sx, sy, k; b).
    ops() counts the bit-MACs of the patches inside segments (the only ones computed when "count" is
    computed per segment).
    """

    segments: int | tuple = 2
    threshold: bool = True

    KIND: ClassVar[str] = "binary_conv_pool"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "segments", canon_pair(self.segments))
        if not self.threshold:
            raise ValueError("BinaryConvPool: threshold is always True (the pooled bits are thresholded)")
        sx, sy = segments_of(self.segments, self)
        if sx > self.oh or sy > self.ow:
            raise ValueError(f"BinaryConvPool: {sx}x{sy} segments do not fit the {self.oh}x{self.ow} "
                             f"activation grid")

    @property
    def seg_shape(self):
        sx, sy = segments_of(self.segments)
        return self.oh // sx, self.ow // sy

    def output_specs(self):
        sx, sy = segments_of(self.segments)
        return [TensorSpec("y", (self.n, sx, sy, self.cout_words), "uint64")]

    def ops(self):
        sx, sy = segments_of(self.segments)
        gh, gw = self.seg_shape
        return self.n * sx * gh * sy * gw * self.cout * self.k_bits

    def default_template(self):
        return "binary_conv_pool/fused"

    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = ""):
        args, fresh = self.arguments(inputs, prefix)
        t = args["thresholds"]
        _, _, count = binary_conv_count(args["x"], args["w"], self, prefix)
        (nsx, nsy), (gh, gw) = segments_of(self.segments), self.seg_shape
        i = te.reduce_axis((0, gh), "i")
        j = te.reduce_axis((0, gw), "j")
        segcount = te.compute((self.n, nsx, nsy, self.cout), lambda n, sx, sy, co: te.sum(
            threshold_bit(conv_value(self, count[n, sx * gh + i, sy * gw + j, co]), t[co], self.compare)
            .astype("int32"), axis=[i, j]), name=prefix + "segcount")
        half = (gh * gw) // 2
        pack = pack_stage((self.n, nsx, nsy), self.cout, lambda n, sx, sy, co: segcount[n, sx, sy, co] > half,
                          prefix + "pack", ("n", "sx", "sy"))
        return Declaration(fresh, [pack])

    def reference(self, x, w, thresholds):
        v = self.reference_values(x, w)
        act = threshold_bit(v, np.asarray(thresholds)[None, None, None, :], self.compare).astype(np.int32)
        return B.pack(segment_majority(act, segments_of(self.segments)), axis=-1)
