"""Bit tensors: the encoding every binary layer uses, and pack/unpack in numpy.

Encoding: bit 1 = +1, bit 0 = -1. Bits are packed little-endian along an axis (the channel axis by
convention) into uint64 words: logical bit i lives in word i // 64 at bit position i % 64. Pad bits (past
the logical length) are 0, in weights and inputs alike, so popcount(w XOR x) counts mismatches and ignores
the padding.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = {np.dtype(np.uint64): 64, np.dtype(np.uint32): 32, np.dtype(np.uint8): 8}


def words(nbits: int, word_bits: int = 64) -> int:
    """Words needed for `nbits` bits."""
    return -(-nbits // word_bits)


def pack(bits, axis: int = -1, dtype=np.uint64) -> np.ndarray:
    """0/1 (bool or integer) array -> packed words along `axis` (length ceil(n / word bits))."""
    a = np.asarray(bits)
    if a.dtype != np.bool_:
        if a.dtype.kind not in "iu":
            raise ValueError(f"bits.pack: expected a bool or 0/1 integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError("bits.pack: values must be 0 or 1 (bit 1 = +1, bit 0 = -1)")
    dt = np.dtype(dtype)
    if dt not in WORD_BITS:
        raise ValueError(f"bits.pack: word dtype must be uint64, uint32 or uint8, got {dt}")
    wb = WORD_BITS[dt]
    a = np.moveaxis(a.astype(np.uint8), axis, -1)
    n = a.shape[-1]
    padded = np.zeros(a.shape[:-1] + (words(n, wb) * wb,), np.uint8)
    padded[..., :n] = a
    packed = np.packbits(padded, axis=-1, bitorder="little")          # bytes, bit 0 first
    packed = np.ascontiguousarray(packed).view("<" + dt.str[1:]).astype(dt, copy=False)
    return np.ascontiguousarray(np.moveaxis(packed, -1, axis))


def unpack(words_, n: int, axis: int = -1) -> np.ndarray:
    """Packed words along `axis` -> uint8 0/1 array with `n` bits along that axis."""
    w = np.asarray(words_)
    if w.dtype not in WORD_BITS:
        raise ValueError(f"bits.unpack: expected uint64/uint32/uint8 words, got dtype {w.dtype}")
    wb = WORD_BITS[w.dtype]
    w = np.moveaxis(w, axis, -1)
    if n > w.shape[-1] * wb:
        raise ValueError(f"bits.unpack: {w.shape[-1]} words of {wb} bits hold fewer than n={n} bits")
    b = np.ascontiguousarray(w).astype("<" + w.dtype.str[1:], copy=False).view(np.uint8)
    bits = np.unpackbits(b, axis=-1, bitorder="little")[..., :n]
    return np.ascontiguousarray(np.moveaxis(bits, -1, axis))


def to_pm1(bits) -> np.ndarray:
    """0/1 -> -1/+1 (int8): the values the bits stand for."""
    return np.asarray(bits).astype(np.int8) * 2 - 1


def from_sign(x) -> np.ndarray:
    """Sign of a float tensor -> bits: 1 where x >= 0 (+1), 0 where x < 0 (-1)."""
    return (np.asarray(x) >= 0).astype(np.uint8)
