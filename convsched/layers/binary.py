"""Binary (1-bit) layers: bit packing, XOR-popcount convolution, popcount thresholds, bit pooling.

Bit encoding (the same everywhere in convsched, see convsched/bits.py): bit 1 = +1, bit 0 = -1. Bit tensors
are NHWC with the channel axis packed little-endian into uint64 words: channel c lives in word c // 64 at
bit c % 64; pad bits (channels >= C in the last word) are 0 in weights and inputs alike, so
popcount(w XOR x) counts exactly the mismatching channels.

At the kernel API a bit input may be given either
  * as logical bits: a bool or 0/1 integer array of the logical shape (..., C) (packed here), or
  * pre-packed: a uint64 array of shape (..., ceil(C / 64)) made by cs.bits.pack(a, axis=-1); its pad bits
    must be 0 (checked: a ValueError names the tensor otherwise).
Bit outputs are returned packed (uint64 words, pad bits 0): cs.bits.unpack(y, C) gives the 0/1 array.

Layers (KIND = the schedules/<KIND>/ directory of their templates):
  BitPack              float NHWC -> packed sign bits (bit = x >= 0).                  kind "bitpack"
  BinaryConv2d         XOR-popcount conv on packed NHWC bits; output the +-1 dot product, the mismatch
                       count, or (threshold=True) packed bits of `value > t[co]`.       kind "binary_conv2d"
  PopcountThreshold    int32 counts + per-channel thresholds -> packed bits.            kind "popcount_threshold"
  SegmentedBitPool     majority vote per segment of an SX x SY grid -> packed bits.     kind "segmented_bit_pool"
  BitMaxPool2d         max pooling of bits = OR of the packed words of each window.     kind "bit_max_pool2d"
  BitGlobalPool        majority (count > floor(HW/2)) or OR over the whole image.       kind "bit_global_pool"
  BinaryConvPool       conv + threshold + segmented pool, fused: the pooled bits are the only output.
                                                                                        kind "binary_conv_pool"

TE helpers other layers may reuse (issue 5's loss deltas, an fp32 conv that packs its own output):
  pack_bits_te(shape, nbits, pred, name)   a "pack" stage: word k = OR_b (pred(idx.., 64k+b) << b)
  sign_pack(tensor, name)                  pack the sign of any NHWC-ish tensor along its last axis;
                                           a schedule may compute_at the producer into it (fusion)
  binary_conv_count(x, w, layer)           the pad / wt / count stages of a binary conv
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import bits as B
from .base import Declaration, Layer, TensorSpec, check_positive, pair
from .conv import _canon, conv_out_size

WORD = 64
COMPARES = (">", "<=")
OUTPUTS = ("dot", "mismatch")


# ---------------------------------------------------------------------------------------- numpy side
def words(c: int) -> int:
    return B.words(c, WORD)


def last_word_mask(c: int) -> int:
    """The valid bits of the last word of a c-bit packed axis."""
    r = c % WORD
    return (1 << r) - 1 if r else (1 << WORD) - 1


def to_packed(arr, c: int, logical_shape: tuple, name: str) -> np.ndarray:
    """A bit argument in either accepted form -> packed uint64 words (..., ceil(c/64)), pad bits checked."""
    a = np.asarray(arr)
    packed_shape = tuple(logical_shape[:-1]) + (words(c),)
    if a.dtype == np.uint64:
        if a.shape != packed_shape:
            raise ValueError(f"'{name}': packed uint64 words must have shape {packed_shape} "
                             f"(logical {tuple(logical_shape)}), got {a.shape}")
        if c % WORD and a.size and np.any(a[..., -1] & ~np.uint64(last_word_mask(c))):
            raise ValueError(f"'{name}': pad bits (channels >= {c} in the last word) must be 0; "
                             f"pack with cs.bits.pack(a, axis=-1)")
        return a
    if a.dtype != np.bool_ and a.dtype.kind not in "iu":
        raise ValueError(f"'{name}': a bit tensor is a bool/0-1 integer array of shape {tuple(logical_shape)} "
                         f"or packed uint64 words of shape {packed_shape}; got dtype {a.dtype}")
    if a.shape != tuple(logical_shape):
        raise ValueError(f"'{name}': logical bits must have shape {tuple(logical_shape)} "
                         f"(or pass packed uint64 words of shape {packed_shape}), got {a.shape}")
    try:
        return B.pack(a, axis=-1)
    except ValueError as e:
        raise ValueError(f"'{name}': {e}") from None


def to_logical(arr, c: int, logical_shape: tuple, name: str) -> np.ndarray:
    """A bit argument in either form -> uint8 0/1 array of the logical shape."""
    return B.unpack(to_packed(arr, c, logical_shape, name), c, axis=-1)


def _random_bits(rng, shape) -> np.ndarray:
    return B.pack(rng.integers(0, 2, shape, dtype=np.uint8), axis=-1)


def _compare(value, thr, compare):
    return value > thr if compare == ">" else value <= thr


def _check_choice(layer, field, value, choices):
    if value not in choices:
        raise ValueError(f"{type(layer).__name__}: {field} must be one of {choices}, got {value!r}")


# ------------------------------------------------------------------------------------------- TE side
def pack_bits_te(shape_prefix: tuple, nbits: int, pred, name: str = "pack", axis_names=None):
    """A TE stage packing `nbits` predicate bits along a new last axis into uint64 words.

    word[idx..., k] = sum over b < 64 of (pred(idx..., 64k + b) ? 1 << b : 0), for 64k + b < nbits.
    Spatial axes are `axis_names` (default i0, i1, ...) then "k" (the word); the reduction axis is "b".
    The channel index given to pred is clamped into [0, nbits), so no out-of-bounds load is ever formed.
    """
    names = axis_names or [f"i{j}" for j in range(len(shape_prefix))]
    return _pack_named(tuple(shape_prefix), nbits, pred, name, names)


def _named(fn, names):
    """A lambda with the given argument names (TE names a stage's axes after its lambda's arguments)."""
    src = f"lambda {', '.join(names)}: fn({', '.join(names)})"
    return eval(src, {"fn": fn})  # noqa: S307 - names are our own identifiers


def sign_pack(x, name: str = "pack", axis_names=("n", "h", "w")):
    """Pack the sign of the last axis of `x` (a TE tensor, e.g. an fp32 conv's output) into uint64 words:
    bit 1 (+1) where x >= 0. Schedules fuse it into the producer with s[producer].compute_at(s[name], ...)."""
    from ..backend import expr
    *prefix, c = [int(d) for d in x.shape]
    zero = expr.const(0, x.dtype)
    return _pack_named(prefix, c, lambda *i: x(*i) >= zero, name, axis_names)


def _pack_named(prefix, nbits, pred, name, axis_names, raw_channel=False):
    """pack_bits_te with spatial axes called `axis_names` + "k" (stable schedule vocabulary).

    raw_channel=True hands pred the unclamped channel 64k + b (the producer must then cover all words x 64
    channels): the access stays affine, which compute_at / reverse_compute_at need.
    """
    from ..backend import expr, te
    b = te.reduce_axis((0, WORD), "b")
    one = expr.const(1, "uint64")
    zero = expr.const(0, "uint64")

    def body(*idx):
        *pre, k = idx
        ch = k * WORD + b
        safe = ch if raw_channel else expr.min(ch, nbits - 1)
        bit = expr.if_then_else(expr.all(ch < nbits, pred(*pre, safe)), one << b.astype("uint64"), zero)
        return te.sum(bit, axis=b)

    names = list(axis_names)[:len(prefix)] + ["k"]
    return te.compute(tuple(prefix) + (words(nbits),), _named(body, names), name=name)


def _pad_word(cw_index, c: int, pad_value: int):
    """The packed word that stands for pad_value in word `cw_index` of a c-channel pixel."""
    from ..backend import expr
    if pad_value == -1:
        return expr.const(0, "uint64")
    full = ~expr.const(0, "uint64")
    if c % WORD == 0:
        return full
    return expr.if_then_else(cw_index == words(c) - 1, expr.const(last_word_mask(c), "uint64"), full)


def binary_conv_count(x, w, layer, cout_extent=None):
    """The stages of a binary conv up to the mismatch count; `layer` has the BinaryConv2d geometry fields.

    Returns (pad, wt, count): pad (n, h+2ph, w+2pw, CW) padded input (pad pixels = pad_value words);
    wt (kh, kw, CW, cout) weights with the output channel innermost (a vector of output channels is one
    contiguous load); count (n, oh, ow, co) uint64 = sum over kh, kw, cw of popcount(pad ^ wt).
    cout_extent (>= cout): channels computed; the extra ones have zero weights and are never output (the
    threshold epilogue needs whole 64-channel words of counts).
    """
    from ..backend import expr, te
    (sh, sw), (ph, pw) = pair(layer.stride), pair(layer.pad)
    H, W, CW, C = layer.h, layer.w, words(layer.cin), layer.cin
    pad = te.compute((layer.n, H + 2 * ph, W + 2 * pw, CW), lambda n, h, w_, c: expr.if_then_else(
        expr.all(h >= ph, h < H + ph, w_ >= pw, w_ < W + pw), x[n, h - ph, w_ - pw, c],
        _pad_word(c, C, layer.pad_value)), name="pad")
    CO = cout_extent or layer.cout
    if CO == layer.cout:
        wt = te.compute((layer.kh, layer.kw, CW, CO), lambda kh, kw, cw, co: w[co, kh, kw, cw], name="wt")
    else:
        wt = te.compute((layer.kh, layer.kw, CW, CO), lambda kh, kw, cw, co: expr.if_then_else(
            co < layer.cout, w[expr.min(co, layer.cout - 1), kh, kw, cw], expr.const(0, "uint64")), name="wt")
    rkh = te.reduce_axis((0, layer.kh), "kh")
    rkw = te.reduce_axis((0, layer.kw), "kw")
    rcw = te.reduce_axis((0, CW), "cw")
    count = te.compute((layer.n, layer.oh, layer.ow, CO), lambda n, oh, ow, co: te.sum(
        expr.popcount(pad[n, oh * sh + rkh, ow * sw + rkw, rcw] ^ wt[rkh, rkw, rcw, co]),
        axis=[rkh, rkw, rcw]), name="count")
    return pad, wt, count


def _value(layer, count_elem):
    """int32 output value from a uint64 mismatch count: the count itself, or the +-1 dot product."""
    v = count_elem.astype("int32")
    return v if layer.output == "mismatch" else layer.k_bits - 2 * v


# ---------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class BitPack(Layer):
    """y = sign bits of x, packed: bit 1 (+1) where x >= 0, bit 0 (-1) where x < 0 (cs.bits.from_sign).

    Arguments: x (n, h, w, c) float32. Output: (n, h, w, ceil(c/64)) uint64, little-endian, pad bits 0.
    Stages: "pack" (spatial n, h, w, k = word; reduction b = bit in word). To fuse the packing into a
    producer, declare the producer and call sign_pack(producer_tensor) (module-level helper).
    """

    n: int = 1
    h: int = 32
    w: int = 32
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
        return [TensorSpec("y", (self.n, self.h, self.w, words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "bitpack/rows"

    def declare(self, algorithm: str = "direct"):
        from ..backend import te
        x = te.placeholder((self.n, self.h, self.w, self.c), "float32", name="x")
        return Declaration([x], [sign_pack(x, "pack")])

    def reference(self, x):
        return B.pack(B.from_sign(x), axis=-1)


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
    w: int = 32
    cin: int = 64
    cout: int = 64
    kh: int = 3
    kw: int = 3
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
            object.__setattr__(self, f, _canon(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, cin=self.cin, cout=self.cout, kh=self.kh, kw=self.kw)
        if min(pair(self.stride)) <= 0 or min(pair(self.pad)) < 0:
            raise ValueError(f"{type(self).__name__}: stride must be positive and pad >= 0 "
                             f"(stride={self.stride}, pad={self.pad})")
        if self.pad_value not in (-1, 1):
            raise ValueError(f"{type(self).__name__}: pad_value must be -1 (bit 0) or +1 (bit 1), "
                             f"got {self.pad_value!r}")
        _check_choice(self, "output", self.output, OUTPUTS)
        _check_choice(self, "compare", self.compare, COMPARES)
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
        return words(self.cin)

    @property
    def cout_words(self):
        return words(self.cout)

    def _bit_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.cin_words), "uint64"),
                TensorSpec("w", (self.cout, self.kh, self.kw, self.cin_words), "uint64")]

    def _logical(self):
        return {"x": ((self.n, self.h, self.w, self.cin), self.cin),
                "w": ((self.cout, self.kh, self.kw, self.cin), self.cin)}

    def input_specs(self):
        specs = self._bit_specs()
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
        return _prepare(self, arrays)

    def random_inputs(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        out = [_random_bits(rng, shape) for shape, _ in self._logical().values()]
        if self.threshold:
            out.append(self._random_thresholds(rng))
        return out

    def _random_thresholds(self, rng):
        # around the value's mean, one standard deviation either side: both bit values are common
        k, sd = self.k_bits, max(1, int(np.sqrt(self.k_bits)))
        mid = 0 if self.output == "dot" else k // 2
        return rng.integers(mid - sd, mid + sd, self.cout, endpoint=True).astype(np.int32)

    # algorithm
    def declare(self, algorithm: str = "direct"):
        from ..backend import te
        x = te.placeholder((self.n, self.h, self.w, self.cin_words), "uint64", name="x")
        w = te.placeholder((self.cout, self.kh, self.kw, self.cin_words), "uint64", name="w")
        _, _, count = binary_conv_count(x, w, self, None if not self.threshold else self.cout_words * WORD)
        from ..backend import expr
        if not self.threshold:
            out = te.compute(count.shape, lambda n, oh, ow, co: _value(self, count[n, oh, ow, co]), name="out")
            return Declaration([x, w], [out])
        t = te.placeholder((self.cout,), "int32", name="thresholds")
        pack = _pack_named((self.n, self.oh, self.ow), self.cout,
                           lambda n, oh, ow, co: _te_compare(_value(self, count[n, oh, ow, co]),
                                                             t[expr.min(co, self.cout - 1)], self.compare),
                           "pack", ("n", "oh", "ow"), raw_channel=True)
        return Declaration([x, w, t], [pack])

    def reference_values(self, x, w) -> np.ndarray:
        """int32 (n, oh, ow, cout): the dot product or the mismatch count, per `output`."""
        (sh, sw), (ph, pw) = pair(self.stride), pair(self.pad)
        xs = B.to_pm1(to_logical(x, self.cin, self._logical()["x"][0], "x")).astype(np.int32)
        ws = B.to_pm1(to_logical(w, self.cin, self._logical()["w"][0], "w")).astype(np.int32)
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
        return B.pack(_compare(v, np.asarray(thresholds)[None, None, None, :], self.compare), axis=-1)


def _te_compare(value, thr, compare):
    return value > thr if compare == ">" else value <= thr


def _prepare(layer, arrays):
    """Pack the bit arguments given as logical 0/1 arrays; check pre-packed ones; pass others through."""
    arrays = list(arrays)
    logical = layer._logical()
    specs = layer.input_specs()
    out = []
    for i, a in enumerate(arrays):
        if i < len(specs) and specs[i].name in logical:
            shape, c = logical[specs[i].name]
            out.append(to_packed(a, c, shape, specs[i].name))
        else:
            out.append(a)
    return out


@dataclass(frozen=True)
class PopcountThreshold(Layer):
    """y = packed bits of (counts[n, h, w, c] compare thresholds[c]), compare ">" (default) or "<=".

    Arguments: counts (n, h, w, c) int32, thresholds (c,) int32. Output: (n, h, w, ceil(c/64)) uint64.
    (BinaryConv2d(threshold=True) fuses the same epilogue into the conv.)
    Stages: "pack" (spatial n, h, w, k = word; reduction b = bit in word).
    """

    n: int = 1
    h: int = 16
    w: int = 16
    c: int = 64
    compare: str = ">"

    KIND: ClassVar[str] = "popcount_threshold"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        _check_choice(self, "compare", self.compare, COMPARES)

    def input_specs(self):
        return [TensorSpec("counts", (self.n, self.h, self.w, self.c), "int32"),
                TensorSpec("thresholds", (self.c,), "int32")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.h, self.w, words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * self.c

    def default_template(self):
        return "popcount_threshold/rows"

    def random_inputs(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        return [rng.integers(-40, 40, (self.n, self.h, self.w, self.c), endpoint=True).astype(np.int32),
                rng.integers(-20, 20, self.c, endpoint=True).astype(np.int32)]

    def declare(self, algorithm: str = "direct"):
        from ..backend import te
        cnt = te.placeholder((self.n, self.h, self.w, self.c), "int32", name="counts")
        t = te.placeholder((self.c,), "int32", name="thresholds")
        pack = _pack_named((self.n, self.h, self.w), self.c,
                           lambda n, h, w, c: _te_compare(cnt[n, h, w, c], t[c], self.compare), "pack",
                           ("n", "h", "w"))
        return Declaration([cnt, t], [pack])

    def reference(self, counts, thresholds):
        return B.pack(_compare(np.asarray(counts), np.asarray(thresholds), self.compare), axis=-1)


def _segments(segments):
    sx, sy = pair(segments)
    if sx <= 0 or sy <= 0:
        raise ValueError(f"segments must be positive, got {segments!r}")
    return sx, sy


@dataclass(frozen=True)
class SegmentedBitPool(Layer):
    """Majority vote of bits per segment: the h x w grid is cut into SX x SY segments of floor(h/SX) x
    floor(w/SY) pixels from the top-left (leftover rows/columns belong to no segment); per segment and
    channel, bit = (number of 1 bits) > floor(n_seg / 2), n_seg = floor(h/SX) * floor(w/SY).

    Arguments: x (n, h, w, c) bits. Output: (n, SX, SY, ceil(c/64)) uint64 packed bits.
    Stages: "count" int32 ones per segment and channel (spatial n, sx, sy, c; reduction i, j = pixel in
    the segment); "pack" (spatial n, sx, sy, k; reduction b).
    """

    n: int = 1
    h: int = 14
    w: int = 14
    c: int = 64
    segments: int | tuple = 2

    KIND: ClassVar[str] = "segmented_bit_pool"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "segments", _canon(self.segments))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        sx, sy = _segments(self.segments)
        if sx > self.h or sy > self.w:
            raise ValueError(f"{type(self).__name__}: {sx}x{sy} segments do not fit a {self.h}x{self.w} grid")

    @property
    def seg_shape(self):
        sx, sy = _segments(self.segments)
        return self.h // sx, self.w // sy

    def _logical(self):
        return {"x": ((self.n, self.h, self.w, self.c), self.c)}

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, words(self.c)), "uint64")]

    def output_specs(self):
        sx, sy = _segments(self.segments)
        return [TensorSpec("y", (self.n, sx, sy, words(self.c)), "uint64")]

    def ops(self):
        sx, sy = _segments(self.segments)
        return self.n * sx * sy * self.seg_shape[0] * self.seg_shape[1] * self.c

    def default_template(self):
        return "segmented_bit_pool/rows"

    def prepare_inputs(self, arrays):
        return _prepare(self, arrays)

    def random_inputs(self, seed: int = 0):
        return [_random_bits(np.random.default_rng(seed), self._logical()["x"][0])]

    def declare(self, algorithm: str = "direct"):
        from ..backend import te
        x = te.placeholder((self.n, self.h, self.w, words(self.c)), "uint64", name="x")
        (nsx, nsy), (gh, gw) = _segments(self.segments), self.seg_shape
        i = te.reduce_axis((0, gh), "i")
        j = te.reduce_axis((0, gw), "j")
        count = te.compute((self.n, nsx, nsy, self.c), lambda n, sx, sy, c: te.sum(
            ((x[n, sx * gh + i, sy * gw + j, c // WORD] >> (c % WORD).astype("uint64"))
             & np.uint64(1)).astype("int32"), axis=[i, j]), name="count")
        half = (gh * gw) // 2
        pack = _pack_named((self.n, nsx, nsy), self.c, lambda n, sx, sy, c: count[n, sx, sy, c] > half, "pack",
                           ("n", "sx", "sy"))
        return Declaration([x], [pack])

    def reference(self, x):
        bits = to_logical(x, self.c, self._logical()["x"][0], "x").astype(np.int32)
        return B.pack(segment_majority(bits, _segments(self.segments)), axis=-1)


def segment_majority(bits: np.ndarray, segments) -> np.ndarray:
    """numpy: (n, h, w, c) 0/1 -> (n, SX, SY, c) 0/1, bit = ones in segment > floor(n_seg / 2)."""
    sx, sy = segments
    n, h, w, c = bits.shape
    gh, gw = h // sx, w // sy
    seg = bits[:, :sx * gh, :sy * gw].reshape(n, sx, gh, sy, gw, c).sum(axis=(2, 4))
    return (seg > (gh * gw) // 2).astype(np.uint8)


@dataclass(frozen=True)
class BitMaxPool2d(Layer):
    """Max pooling of bits: +1 wins, so the result is the OR of the packed words of each k x k window.

    Arguments: x (n, h, w, c) bits. Output: (n, oh, ow, ceil(c/64)) uint64. Padding is -1 (bit 0), which
    never wins. Stages: "pad" (n, h, w, c = word), "pool" (spatial n, oh, ow, c; reduction kh, kw).
    """

    n: int = 1
    h: int = 16
    w: int = 16
    c: int = 64
    k: int | tuple = 2
    stride: int | tuple = 2
    pad: int | tuple = 0

    KIND: ClassVar[str] = "bit_max_pool2d"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        for f in ("k", "stride", "pad"):
            object.__setattr__(self, f, _canon(getattr(self, f)))
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        if min(pair(self.k)) <= 0 or min(pair(self.stride)) <= 0 or min(pair(self.pad)) < 0:
            raise ValueError(f"BitMaxPool2d: k and stride must be positive and pad >= 0")
        if self.oh <= 0 or self.ow <= 0:
            raise ValueError(f"BitMaxPool2d: window {self.k} does not fit the {self.h}x{self.w} input")

    @property
    def oh(self):
        return conv_out_size(self.h, pair(self.k)[0], pair(self.stride)[0], pair(self.pad)[0], pair(self.pad)[0], 1)

    @property
    def ow(self):
        return conv_out_size(self.w, pair(self.k)[1], pair(self.stride)[1], pair(self.pad)[1], pair(self.pad)[1], 1)

    def _logical(self):
        return {"x": ((self.n, self.h, self.w, self.c), self.c)}

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, words(self.c)), "uint64")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, self.oh, self.ow, words(self.c)), "uint64")]

    def ops(self):
        kh, kw = pair(self.k)
        return self.n * self.oh * self.ow * words(self.c) * kh * kw

    def default_template(self):
        return "bit_max_pool2d/rows"

    def prepare_inputs(self, arrays):
        return _prepare(self, arrays)

    def random_inputs(self, seed: int = 0):
        return [_random_bits(np.random.default_rng(seed), self._logical()["x"][0])]

    def declare(self, algorithm: str = "direct"):
        from ..backend import expr, te
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        H, W, CW = self.h, self.w, words(self.c)
        x = te.placeholder((self.n, H, W, CW), "uint64", name="x")
        pad = te.compute((self.n, H + 2 * ph, W + 2 * pw, CW), lambda n, h, w, c: expr.if_then_else(
            expr.all(h >= ph, h < H + ph, w >= pw, w < W + pw), x[n, h - ph, w - pw, c],
            expr.const(0, "uint64")), name="pad")
        bor = te.comm_reducer(lambda a, b: a | b, lambda t: expr.const(0, t), name="bit_or")
        rh = te.reduce_axis((0, kh), "kh")
        rw = te.reduce_axis((0, kw), "kw")
        pool = te.compute((self.n, self.oh, self.ow, CW), lambda n, oh, ow, c: bor(
            pad[n, oh * sh + rh, ow * sw + rw, c], axis=[rh, rw]), name="pool")
        return Declaration([x], [pool])

    def reference(self, x):
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride), pair(self.pad)
        b = to_logical(x, self.c, self._logical()["x"][0], "x")
        bp = np.pad(b, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(bp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        return B.pack(win[:, :self.oh, :self.ow].max(axis=(-2, -1)), axis=-1)


@dataclass(frozen=True)
class BitGlobalPool(Layer):
    """Global pooling of bits over the whole h x w image, per channel.

    mode "majority": bit = (number of 1 bits) > floor(h*w / 2)  (the loss-delta "global" head's pooling);
    mode "or": bit = OR over the image (global max pooling of +-1 values).
    Arguments: x (n, h, w, c) bits. Output: (n, 1, 1, ceil(c/64)) uint64.
    Stages: majority: "count" (spatial n, sx, sy, c; reduction i, j), "pack" (n, sx, sy, k; b);
            or: "pool" (spatial n, i0, i1, c = word; reduction i, j).
    """

    n: int = 1
    h: int = 7
    w: int = 7
    c: int = 64
    mode: str = "majority"

    KIND: ClassVar[str] = "bit_global_pool"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c)
        _check_choice(self, "mode", self.mode, ("majority", "or"))

    def _logical(self):
        return {"x": ((self.n, self.h, self.w, self.c), self.c)}

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, words(self.c)), "uint64")]

    def output_specs(self):
        return [TensorSpec("y", (self.n, 1, 1, words(self.c)), "uint64")]

    def ops(self):
        return self.n * self.h * self.w * (self.c if self.mode == "majority" else words(self.c))

    def default_template(self):
        return "bit_global_pool/rows"

    def prepare_inputs(self, arrays):
        return _prepare(self, arrays)

    def random_inputs(self, seed: int = 0):
        return [_random_bits(np.random.default_rng(seed), self._logical()["x"][0])]

    def declare(self, algorithm: str = "direct"):
        from ..backend import expr, te
        if self.mode == "majority":
            seg = SegmentedBitPool(n=self.n, h=self.h, w=self.w, c=self.c, segments=1)
            return seg.declare()
        CW = words(self.c)
        x = te.placeholder((self.n, self.h, self.w, CW), "uint64", name="x")
        bor = te.comm_reducer(lambda a, b: a | b, lambda t: expr.const(0, t), name="bit_or")
        i = te.reduce_axis((0, self.h), "i")
        j = te.reduce_axis((0, self.w), "j")
        pool = te.compute((self.n, 1, 1, CW), lambda n, i0, i1, c: bor(x[n, i0 + i, i1 + j, c], axis=[i, j]),
                          name="pool")
        return Declaration([x], [pool])

    def reference(self, x):
        b = to_logical(x, self.c, self._logical()["x"][0], "x")
        if self.mode == "or":
            return B.pack(b.max(axis=(1, 2), keepdims=True), axis=-1)
        return B.pack(segment_majority(b.astype(np.int32), (1, 1)), axis=-1)


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
        object.__setattr__(self, "segments", _canon(self.segments))
        if not self.threshold:
            raise ValueError("BinaryConvPool: threshold is always True (the pooled bits are thresholded)")
        sx, sy = _segments(self.segments)
        if sx > self.oh or sy > self.ow:
            raise ValueError(f"BinaryConvPool: {sx}x{sy} segments do not fit the {self.oh}x{self.ow} "
                             f"activation grid")

    @property
    def seg_shape(self):
        sx, sy = _segments(self.segments)
        return self.oh // sx, self.ow // sy

    def output_specs(self):
        sx, sy = _segments(self.segments)
        return [TensorSpec("y", (self.n, sx, sy, self.cout_words), "uint64")]

    def ops(self):
        sx, sy = _segments(self.segments)
        gh, gw = self.seg_shape
        return self.n * sx * gh * sy * gw * self.cout * self.k_bits

    def default_template(self):
        return "binary_conv_pool/fused"

    def declare(self, algorithm: str = "direct"):
        from ..backend import te
        x = te.placeholder((self.n, self.h, self.w, self.cin_words), "uint64", name="x")
        w = te.placeholder((self.cout, self.kh, self.kw, self.cin_words), "uint64", name="w")
        t = te.placeholder((self.cout,), "int32", name="thresholds")
        _, _, count = binary_conv_count(x, w, self)
        (nsx, nsy), (gh, gw) = _segments(self.segments), self.seg_shape
        i = te.reduce_axis((0, gh), "i")
        j = te.reduce_axis((0, gw), "j")
        segcount = te.compute((self.n, nsx, nsy, self.cout), lambda n, sx, sy, co: te.sum(
            _te_compare(_value(self, count[n, sx * gh + i, sy * gw + j, co]), t[co], self.compare)
            .astype("int32"), axis=[i, j]), name="segcount")
        half = (gh * gw) // 2
        pack = _pack_named((self.n, nsx, nsy), self.cout, lambda n, sx, sy, co: segcount[n, sx, sy, co] > half,
                           "pack", ("n", "sx", "sy"))
        return Declaration([x, w, t], [pack])

    def reference(self, x, w, thresholds):
        v = self.reference_values(x, w)
        act = _compare(v, np.asarray(thresholds)[None, None, None, :], self.compare).astype(np.int32)
        return B.pack(segment_majority(act, _segments(self.segments)), axis=-1)
