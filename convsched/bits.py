"""Bit tensors: the encoding every binary layer uses, packing in numpy, and checking bit arguments.

Encoding: bit 1 = +1, bit 0 = -1. Bits are packed little-endian along an axis (the channel axis by
convention) into words: logical bit i lives in word i // W at bit position i % W (W = 64 for uint64, the
kernels' word; uint32, uint16 and uint8 words exist where a schedule wants narrower lanes). Pad bits (past
the logical length) are 0, in weights and inputs alike, so popcount(w XOR x) counts mismatches and ignores
the padding.

At a kernel's API a bit argument may be given either as logical bits (a bool or 0/1 integer array of the
logical shape) or pre-packed (uint64 words along the last axis, from pack()); as_packed() and as_bits()
accept both forms and check them.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = {np.dtype(np.uint64): 64, np.dtype(np.uint32): 32, np.dtype(np.uint16): 16, np.dtype(np.uint8): 8}
WORD = 64          # the word of packed kernel arguments (uint64)


def _count(v, what: str, minimum: int = 0) -> int:
    """A bit or word count: an integer (numpy integers too) >= minimum; ValueError otherwise."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < minimum:
        raise ValueError(f"bits: {what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _word_size(word_bits) -> int:
    if word_bits not in (8, 16, 32, 64) or isinstance(word_bits, bool):
        raise ValueError(f"bits: word_bits must be 8, 16, 32 or 64, got {word_bits!r}")
    return int(word_bits)


def words(nbits: int, word_bits: int = WORD) -> int:
    """Words needed for `nbits` bits."""
    return -(-_count(nbits, "nbits") // _word_size(word_bits))


def last_word_mask(nbits: int, word_bits: int = WORD) -> int:
    """The valid bits of the last word of an `nbits`-long packed axis."""
    nbits, word_bits = _count(nbits, "nbits"), _word_size(word_bits)
    r = nbits % word_bits
    return (1 << r) - 1 if r else (1 << word_bits) - 1


def _check_bits(a: np.ndarray, what: str) -> None:
    if a.dtype != np.bool_:
        if a.dtype.kind not in "iu":
            raise ValueError(f"{what}: expected a bool or 0/1 integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{what}: values must be 0 or 1 (bit 1 = +1, bit 0 = -1)")


def _word_bits(dtype) -> int:
    dt = np.dtype(dtype)
    if dt not in WORD_BITS:
        raise ValueError(f"bits: word dtype must be uint64, uint32, uint16 or uint8, got {dt}")
    return WORD_BITS[dt]


def pack(bits, axis: int = -1, dtype=np.uint64, out: np.ndarray | None = None,
         validate: bool = True) -> np.ndarray:
    """0/1 (bool or integer) array -> packed words along `axis` (length ceil(n / word bits)).

    out: an array of the result's shape and dtype to write into (e.g. an aligned kernel argument), along the
    last axis only. validate=False skips the 0/1 check of bits already checked (a pass over the data).
    One flat np.packbits over whole bytes: along the last axis of a 4-D array that is ~5x faster than
    packbits per row (6 vs 30 us per 32x32x32 image, 1 thread, AMD Zen 3, 2026-11)."""
    a = np.asarray(bits)
    if validate:
        _check_bits(a, "bits.pack")
    dt = np.dtype(dtype)
    wb = _word_bits(dt)
    a = np.moveaxis(a, axis, -1)
    lead, n = a.shape[:-1], a.shape[-1]
    n8 = n + (-n) % 8
    if n8 != n:
        padded = np.zeros(lead + (n8,), np.uint8)
        padded[..., :n] = a
        a = padded
    nb, nw = n8 // 8, words(n, wb)
    by = np.packbits(np.ascontiguousarray(a, dtype=np.uint8).reshape(-1), bitorder="little").reshape(lead + (nb,))
    shape = lead + (nw,)
    if out is not None:
        if axis not in (-1, a.ndim - 1) or out.shape != shape or out.dtype != dt or not out.flags.c_contiguous:
            raise ValueError(f"bits.pack: out must be a C-contiguous {dt} array of shape {shape} (last axis)")
        ob = out.view(np.uint8).reshape(lead + (nw * dt.itemsize,))
        ob[..., nb:] = 0
        ob[..., :nb] = by
        return out
    ob = np.zeros(lead + (nw * dt.itemsize,), np.uint8)
    ob[..., :nb] = by
    packed = ob.view("<" + dt.str[1:]).astype(dt, copy=False)         # little-endian words, native order
    return np.ascontiguousarray(np.moveaxis(packed, -1, axis))


def unpack(words_, n: int, axis: int = -1) -> np.ndarray:
    """Packed words along `axis` -> uint8 0/1 array with `n` bits along that axis."""
    w = np.asarray(words_)
    if w.dtype not in WORD_BITS:
        raise ValueError(f"bits.unpack: expected uint64/uint32/uint16/uint8 words, got dtype {w.dtype}")
    if w.ndim == 0:
        raise ValueError("bits.unpack: expected an array of words along an axis, got a scalar")
    n = _count(n, "n (bits to unpack)")
    wb = WORD_BITS[w.dtype]
    w = np.moveaxis(w, axis, -1)
    if n > w.shape[-1] * wb:
        raise ValueError(f"bits.unpack: {w.shape[-1]} words of {wb} bits hold fewer than n={n} bits")
    b = np.ascontiguousarray(w).astype("<" + w.dtype.str[1:], copy=False).view(np.uint8)
    bits = np.unpackbits(b, axis=-1, bitorder="little")[..., :n]
    return np.ascontiguousarray(np.moveaxis(bits, -1, axis))


def to_pm1(bits) -> np.ndarray:
    """0/1 -> -1/+1 (int8): the values the bits stand for."""
    a = np.asarray(bits)
    _check_bits(a, "bits.to_pm1")
    return a.astype(np.int8) * 2 - 1


def from_sign(x) -> np.ndarray:
    """Sign of a float tensor -> bits: 1 where x >= 0 (+1), 0 where x < 0 (-1) and where x is NaN (as the
    kernels' x >= 0 compare)."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"bits.from_sign: expected a numeric array, got dtype {a.dtype}")
    return (a >= 0).astype(np.uint8)


def popcount(a) -> np.ndarray:
    """Set bits of each element of a non-negative integer array, as int64."""
    a = np.asarray(a)
    if a.dtype.kind not in "biu":
        raise ValueError(f"bits.popcount: expected an integer array, got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError("bits.popcount: expected non-negative integers (packed words), got negative values")
    if hasattr(np, "bitwise_count"):            # numpy >= 2
        return np.bitwise_count(a).astype(np.int64)
    return np.vectorize(lambda v: bin(int(v)).count("1"), otypes=[np.int64])(a)


def hamming(a, b) -> np.ndarray:
    """(N, K) Hamming distances between the 0/1 rows of a (N, ...) and b (K, ...): popcount(a XOR b) as
    sum(a) + sum(b) - 2 a.b, one float64 matrix product (exact), not an N x K x bits array."""
    A = np.asarray(a).reshape(len(a), -1).astype(np.float64)
    B = np.asarray(b).reshape(len(b), -1).astype(np.float64)
    return np.rint(A.sum(1)[:, None] + B.sum(1)[None] - 2 * (A @ B.T)).astype(np.int64)


def random_packed(rng: np.random.Generator, logical_shape) -> np.ndarray:
    """Uniform random bits of `logical_shape`, packed into uint64 words along the last axis."""
    return pack(rng.integers(0, 2, logical_shape, dtype=np.uint8), axis=-1)


# ------------------------------------------------------------------------------------ bit arguments
def as_packed(arr, logical_shape, name: str) -> np.ndarray:
    """A bit argument in either form -> packed uint64 words (..., ceil(C / 64)), C = logical_shape[-1].

    Pre-packed words must have zero pad bits (checked); logical bits must be bool or 0/1 integers."""
    a = np.asarray(arr)
    logical_shape = tuple(logical_shape)
    c = logical_shape[-1]
    packed_shape = logical_shape[:-1] + (words(c),)
    if a.dtype == np.uint64:
        if a.shape != packed_shape:
            raise ValueError(f"'{name}': packed uint64 words must have shape {packed_shape} "
                             f"(logical {logical_shape}), got {a.shape}")
        if c % WORD and a.size and np.any(a[..., -1] & ~np.uint64(last_word_mask(c))):
            raise ValueError(f"'{name}': pad bits (channels >= {c} in the last word) must be 0; "
                             f"pack with cs.bits.pack(a, axis=-1)")
        return a
    if a.dtype != np.bool_ and a.dtype.kind not in "iu":
        raise ValueError(f"'{name}': a bit tensor is a bool/0-1 integer array of shape {logical_shape} "
                         f"or packed uint64 words of shape {packed_shape}; got dtype {a.dtype}")
    if a.shape != logical_shape:
        raise ValueError(f"'{name}': logical bits must have shape {logical_shape} "
                         f"(or pass packed uint64 words of shape {packed_shape}), got {a.shape}")
    try:
        return pack(a, axis=-1)
    except ValueError as e:
        raise ValueError(f"'{name}': {e}") from None


def as_bits(arr, logical_shape, name: str, batch: bool = False) -> np.ndarray:
    """A bit argument in either form -> uint8 0/1 array of the logical shape.

    batch=True: the argument has a leading batch axis of any length before `logical_shape`."""
    a = np.asarray(arr)
    logical_shape = tuple(logical_shape)
    if batch:
        if a.ndim != len(logical_shape) + 1:
            raise ValueError(f"'{name}': expected shape (batch,) + {logical_shape}, got {a.shape}")
        logical_shape = a.shape[:1] + logical_shape
    if a.dtype != np.uint64 and a.shape == logical_shape and a.dtype.kind in "biu":
        _check_bits(a, f"'{name}'")
        return a.astype(np.uint8, copy=False)
    return unpack(as_packed(a, logical_shape, name), logical_shape[-1], axis=-1)

