"""Kernel arguments as numpy arrays: 64-byte aligned, C-contiguous, of the spec's shape and dtype.

TVM kernels assume 64-byte aligned, contiguous buffers and segfault otherwise (an aligned vmovaps on a
misaligned pointer), and tvm-ffi checks shape, dtype and contiguity but not alignment: every argument is
checked here and copied into an aligned buffer when it is misaligned or strided.
"""
from __future__ import annotations

import ctypes
import math
from typing import NamedTuple

import numpy as np

ALIGN = 64
_UINT8 = np.dtype(np.uint8)


class Spec(NamedTuple):
    """A TensorSpec prepared for per-call checks: the shape as a tuple of ints, the dtype as a numpy dtype."""
    name: str
    shape: tuple
    dtype: np.dtype


def spec_of(spec) -> Spec:
    return Spec(spec.name, tuple(int(d) for d in spec.shape), np.dtype(spec.dtype))


def _interface_address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _field_reader():
    """A reader of an ndarray's data pointer straight from the array object, or None if it reads wrong here.

    NumPy's array object starts with PyObject_HEAD and then `char *data` (PyArrayObject_fields in
    numpy/ndarraytypes.h, the same in NumPy 1 and 2); reading that field costs ~0.2 us where a.ctypes.data and
    a.__array_interface__ build Python objects (~1.5 us; per argument and per output of every kernel call,
    Intel Xeon, rocketlake, 2026-12). It is checked against __array_interface__ on views with offsets first."""
    offset = object.__basicsize__
    read = ctypes.c_void_p.from_address

    def field(a: np.ndarray) -> int:
        return read(id(a) + offset).value or 0

    probe = np.arange(120, dtype=np.float32)
    for a in (probe, probe[3:], probe.reshape(12, 10)[1:, 2:], np.empty((0, 4), np.int8)):
        if field(a) != _interface_address(a):
            return None
    return field


_field = _field_reader()


def address(a: np.ndarray) -> int:
    """Where the data of ndarray `a` starts."""
    if _field is not None and isinstance(a, np.ndarray):
        return _field(a)
    return _interface_address(a)


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
    return new_aligned(shape, dt, int(align))


def new_aligned(shape: tuple, dt: np.dtype, align: int = ALIGN) -> np.ndarray:
    """aligned_empty() for a shape and dtype already checked (a kernel's output specs): nothing re-validated.
    math.prod and one ndarray over the raw buffer: np.prod and slice/view/reshape cost ~6 us more per call
    (Intel Xeon, rocketlake, 2026-12), which was most of a small kernel's call overhead."""
    raw = np.empty(math.prod(shape) * dt.itemsize + align, dtype=_UINT8)
    return np.ndarray(shape, dt, raw, (-address(raw)) % align)


def is_aligned(a: np.ndarray, align: int = ALIGN) -> bool:
    return address(a) % align == 0


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
    """Check one argument against its TensorSpec (or Spec); return it, or an aligned contiguous copy."""
    if isinstance(a, np.ma.MaskedArray):
        raise ValueError(f"{what} '{spec.name}': a masked array; pass a.filled(value) (the mask would be lost)")
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except ValueError as e:             # ragged nested lists
            raise ValueError(f"{what} '{spec.name}': not an array: {e}") from None
    want = spec.dtype if isinstance(spec.dtype, np.dtype) else np.dtype(spec.dtype)
    if a.dtype != want and a.dtype.newbyteorder("=") == want:
        a = a.astype(want)                  # big-endian data: the same values, in this machine's byte order
    if a.dtype != want:
        raise ValueError(f"{what} '{spec.name}': dtype is {a.dtype}, expected {want} "
                         f"(convert with .astype(np.{want.name}))")
    shape = spec.shape if isinstance(spec.shape, tuple) else tuple(spec.shape)
    if a.shape != shape:
        raise ValueError(f"{what} '{spec.name}': shape is {tuple(a.shape)}, expected {shape}")
    # read-only arrays are copied: DLPack, which hands arrays to TVM, refuses them
    if a.flags.c_contiguous and a.flags.writeable and address(a) % ALIGN == 0:
        return a
    b = new_aligned(shape, want)        # dtype and shape are checked: copy without aligned()'s checks again
    np.copyto(b, a)
    return b
