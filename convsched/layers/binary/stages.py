"""TE stages the binary layers share (and other layers may reuse: an fp32 conv that packs its own output).

    pack_stage(prefix_shape, nbits, pred, name, axis_names)  word k = OR_b (pred(idx.., 64k+b) << b)
    sign_pack(tensor, name)            pack the sign of any NHWC-ish tensor along its last axis; a schedule
                                       may compute_at the producer into it (fusion)
    binary_conv_count(x, w, layer, prefix)   the pad / wt / count stages of a binary conv

and their numpy counterparts for arguments and references (prepare_bit_args, threshold_bit,
segment_majority).
"""
from __future__ import annotations

import numpy as np

from ...backend import expr, te
from ...bits import WORD, as_packed, last_word_mask, words
from ..base import pair

COMPARES = (">", "<=")
OUTPUTS = ("dot", "mismatch")


# ------------------------------------------------------------------------------------------ numpy side
def threshold_bit(value, thr, how: str):
    """value > thr (how ">") or value <= thr ("<="), on numpy arrays or TE expressions alike."""
    return value > thr if how == ">" else value <= thr


def prepare_bit_args(layer, arrays) -> list:
    """Pack the bit arguments given as logical 0/1 arrays, check pre-packed ones, pass the others through.

    layer.logical_bits() names the bit arguments: {argument: logical shape}."""
    def bit_arguments():          # which position holds which bit argument: a fact of the layer, found once
        logical = layer.logical_bits()
        return [(s.name, logical[s.name]) if s.name in logical else None for s in layer.input_specs()]

    bit_args = layer.cached("bit_arguments", bit_arguments)
    out = []
    for i, a in enumerate(arrays):
        bit = bit_args[i] if i < len(bit_args) else None
        out.append(a if bit is None else as_packed(a, bit[1], bit[0]))
    return out


def segments_of(segments, layer=None) -> tuple[int, int]:
    sx, sy = pair(segments)
    if sx <= 0 or sy <= 0:
        who = f"{type(layer).__name__}: " if layer is not None else ""
        raise ValueError(f"{who}segments must be positive, got {segments!r}")
    return sx, sy


def segment_majority(bits: np.ndarray, segments) -> np.ndarray:
    """numpy: (n, h, w, c) 0/1 -> (n, SX, SY, c) 0/1, bit = ones in segment > floor(n_seg / 2)."""
    sx, sy = segments
    n, h, w, c = bits.shape
    gh, gw = h // sx, w // sy
    seg = bits[:, :sx * gh, :sy * gw].reshape(n, sx, gh, sy, gw, c).sum(axis=(2, 4))
    return (seg > (gh * gw) // 2).astype(np.uint8)


# --------------------------------------------------------------------------------------------- TE side
def _named(fn, names):
    """A lambda with the given argument names (TE names a stage's axes after its lambda's arguments)."""
    src = f"lambda {', '.join(names)}: fn({', '.join(names)})"
    return eval(src, {"fn": fn})  # noqa: S307 - names are our own identifiers


def pack_stage(prefix_shape, nbits: int, pred, name: str = "pack", axis_names=None, raw_channel: bool = False):
    """A TE stage packing `nbits` predicate bits along a new last axis into uint64 words.

    word[idx..., k] = sum over b < 64 of (pred(idx..., 64k + b) ? 1 << b : 0), for 64k + b < nbits.
    Spatial axes are `axis_names` (default i0, i1, ...) then "k" (the word); the reduction axis is "b".
    The channel index given to pred is clamped into [0, nbits), so no out-of-bounds load is ever formed;
    raw_channel=True hands pred the unclamped channel 64k + b instead (the producer must then cover all
    words x 64 channels): the access stays affine, which compute_at / reverse_compute_at need.
    """
    prefix_shape = tuple(prefix_shape)
    names = list(axis_names or [f"i{j}" for j in range(len(prefix_shape))])[:len(prefix_shape)] + ["k"]
    b = te.reduce_axis((0, WORD), "b")
    one = expr.const(1, "uint64")
    zero = expr.const(0, "uint64")

    def body(*idx):
        *pre, k = idx
        ch = k * WORD + b
        safe = ch if raw_channel else expr.min(ch, nbits - 1)
        bit = expr.if_then_else(expr.all(ch < nbits, pred(*pre, safe)), one << b.astype("uint64"), zero)
        return te.sum(bit, axis=b)

    return te.compute(prefix_shape + (words(nbits),), _named(body, names), name=name)


def sign_pack(x, name: str = "pack", axis_names=("n", "h", "w")):
    """Pack the sign of the last axis of `x` (a TE tensor, e.g. an fp32 conv's output) into uint64 words:
    bit 1 (+1) where x >= 0. Schedules fuse it into the producer with s[producer].compute_at(s[name], ...)."""
    *prefix, c = [int(d) for d in x.shape]
    zero = expr.const(0, x.dtype)
    return pack_stage(prefix, c, lambda *i: x(*i) >= zero, name, axis_names)


def pad_word(cw_index, c: int, pad_value: int):
    """The packed word that stands for pad_value in word `cw_index` of a c-channel pixel."""
    if pad_value == -1:
        return expr.const(0, "uint64")
    full = ~expr.const(0, "uint64")
    if c % WORD == 0:
        return full
    return expr.if_then_else(cw_index == words(c) - 1, expr.const(last_word_mask(c), "uint64"), full)


def binary_conv_count(x, w, layer, prefix: str = "", cout_extent=None):
    """The stages of a binary conv up to the mismatch count; `layer` has the BinaryConv2d geometry fields.

    Returns (pad, wt, count): pad (n, h+2ph, w+2pw, CW) padded input (pad pixels = pad_value words);
    wt (kh, kw, CW, cout) weights with the output channel innermost (a vector of output channels is one
    contiguous load); count (n, oh, ow, co) uint64 = sum over kh, kw, cw of popcount(pad ^ wt).
    cout_extent (>= cout): channels computed; the extra ones have zero weights and are never output (the
    threshold epilogue needs whole 64-channel words of counts).
    """
    (sh, sw), (ph, pw) = pair(layer.stride), pair(layer.pad)
    H, W, CW, C = layer.h, layer.w, words(layer.cin), layer.cin
    pad = te.compute((layer.n, H + 2 * ph, W + 2 * pw, CW), lambda n, h, w_, c: expr.if_then_else(
        expr.all(h >= ph, h < H + ph, w_ >= pw, w_ < W + pw), x[n, h - ph, w_ - pw, c],
        pad_word(c, C, layer.pad_value)), name=prefix + "pad")
    CO = cout_extent or layer.cout
    if CO == layer.cout:
        wt = te.compute((layer.kh, layer.kw, CW, CO), lambda kh, kw, cw, co: w[co, kh, kw, cw], name=prefix + "wt")
    else:
        wt = te.compute((layer.kh, layer.kw, CW, CO), lambda kh, kw, cw, co: expr.if_then_else(
            co < layer.cout, w[expr.min(co, layer.cout - 1), kh, kw, cw], expr.const(0, "uint64")),
            name=prefix + "wt")
    rkh = te.reduce_axis((0, layer.kh), "kh")
    rkw = te.reduce_axis((0, layer.kw), "kw")
    rcw = te.reduce_axis((0, CW), "cw")
    count = te.compute((layer.n, layer.oh, layer.ow, CO), lambda n, oh, ow, co: te.sum(
        expr.popcount(pad[n, oh * sh + rkh, ow * sw + rkw, rcw] ^ wt[rkh, rkw, rcw, co]),
        axis=[rkh, rkw, rcw]), name=prefix + "count")
    return pad, wt, count


def conv_value(layer, count_elem):
    """int32 output value from a uint64 mismatch count: the count itself, or the +-1 dot product."""
    v = count_elem.astype("int32")
    return v if layer.output == "mismatch" else layer.k_bits - 2 * v
