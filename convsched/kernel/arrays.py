"""Kernel arguments as numpy arrays: 64-byte aligned, C-contiguous, of the spec's shape and dtype.

TVM kernels assume 64-byte aligned, contiguous buffers and segfault otherwise (an aligned vmovaps on a
misaligned pointer), and tvm-ffi checks shape, dtype and contiguity but not alignment: every argument is
checked here and copied into an aligned buffer when it is misaligned or strided.
"""
from __future__ import annotations

import math

import numpy as np

ALIGN = 64


def _buffer_dtype(dtype, what: str) -> np.dtype:
    """A dtype a kernel buffer can hold: booleans and numbers (never objects: their bytes are pointers)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"{what}: {dtype!r} is not a numpy dtype ({e})") from None
    if dt.kind not in "biufc" or dt.hasobject or dt.shape:
        raise ValueError(f"{what}: dtype {dt} cannot be a kernel buffer (booleans and numbers only)")
    return dt


def _shape(shape, what: str) -> tuple:
    """A shape: an int or a sequence of non-negative ints (numpy integers accepted)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise ValueError(f"{what}: shape must be an int or a tuple of ints, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0 for d in dims):
        raise ValueError(f"{what}: shape must be non-negative integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary."""
    shape, dt = _shape(shape, "aligned_empty"), _buffer_dtype(dtype, "aligned_empty")
    if not isinstance(align, (int, np.integer)) or isinstance(align, bool) or align < 1 or align & (align - 1):
        raise ValueError(f"aligned_empty: align must be a power of two, got {align!r}")
    nbytes = math.prod(shape) * dt.itemsize         # not np.prod: 2.5 us of every kernel call (Xeon, 2026-12)
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off: off + nbytes].view(dt).reshape(shape)


def is_aligned(a: np.ndarray, align: int = ALIGN) -> bool:
    return a.ctypes.data % align == 0


def aligned(a, dtype=None) -> np.ndarray:
    """`a` as a C-contiguous, 64-byte aligned, writeable array (itself if it already is one, else a copy).

    Kernels copy any other argument on every call (numpy's own allocations are usually only 16-byte
    aligned): convert long-lived inputs such as weights once with cs.aligned(), or allocate them with
    cs.aligned_empty(shape, dtype), and the call passes them straight through. Read-only arrays (np.load with
    mmap_mode="r") are copied too: DLPack, which hands arrays to TVM, refuses read-only buffers."""
    if isinstance(a, np.ma.MaskedArray):
        raise ValueError("masked arrays are not kernel arguments: pass a.filled(value) (the mask would be lost)")
    a = np.asarray(a, dtype=dtype)
    _buffer_dtype(a.dtype, "aligned")
    if a.flags.c_contiguous and a.flags.writeable and is_aligned(a):
        return a
    b = aligned_empty(a.shape, a.dtype)
    np.copyto(b, a)
    return b


def as_kernel_arg(a, spec, what: str) -> np.ndarray:
    """Check one argument against its TensorSpec; return it, or an aligned contiguous copy."""
    if isinstance(a, np.ma.MaskedArray):
        raise ValueError(f"{what} '{spec.name}': a masked array; pass a.filled(value) (the mask would be lost)")
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except ValueError as e:             # ragged nested lists
            raise ValueError(f"{what} '{spec.name}': not an array: {e}") from None
    want = np.dtype(spec.dtype)
    if a.dtype != want and a.dtype.newbyteorder("=") == want:
        a = a.astype(want)                  # big-endian data: the same values, in this machine's byte order
    if a.dtype != want:
        raise ValueError(f"{what} '{spec.name}': dtype is {a.dtype}, expected {want} "
                         f"(convert with .astype(np.{want.name}))")
    if tuple(a.shape) != tuple(spec.shape):
        raise ValueError(f"{what} '{spec.name}': shape is {tuple(a.shape)}, expected {tuple(spec.shape)}")
    return aligned(a)
