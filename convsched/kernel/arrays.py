"""Kernel arguments as numpy arrays: 64-byte aligned, C-contiguous, of the spec's shape and dtype.

TVM kernels assume 64-byte aligned, contiguous buffers and segfault otherwise (an aligned vmovaps on a
misaligned pointer), and tvm-ffi checks shape, dtype and contiguity but not alignment: every argument is
checked here and copied into an aligned buffer when it is misaligned or strided.
"""
from __future__ import annotations

import numpy as np

ALIGN = 64


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off: off + nbytes].view(dt).reshape(shape)


def is_aligned(a: np.ndarray, align: int = ALIGN) -> bool:
    return a.ctypes.data % align == 0


def aligned(a, dtype=None) -> np.ndarray:
    """`a` as a C-contiguous, 64-byte aligned array (itself if it already is one, else a copy).

    Kernels copy any other argument on every call (numpy's own allocations are usually only 16-byte
    aligned): convert long-lived inputs such as weights once with cs.aligned(), or allocate them with
    cs.aligned_empty(shape, dtype), and the call passes them straight through."""
    a = np.asarray(a, dtype=dtype)
    if a.flags.c_contiguous and is_aligned(a):
        return a
    b = aligned_empty(a.shape, a.dtype)
    np.copyto(b, a)
    return b


def as_kernel_arg(a, spec, what: str) -> np.ndarray:
    """Check one argument against its TensorSpec; return it, or an aligned contiguous copy."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    want = np.dtype(spec.dtype)
    if a.dtype != want:
        raise ValueError(f"{what} '{spec.name}': dtype is {a.dtype}, expected {want} "
                         f"(convert with .astype(np.{want.name}))")
    if tuple(a.shape) != tuple(spec.shape):
        raise ValueError(f"{what} '{spec.name}': shape is {tuple(a.shape)}, expected {tuple(spec.shape)}")
    return aligned(a)
