"""Kernels loaded from an export directory: the same Kernel, calling the library's C entry point."""
from __future__ import annotations

from ..backend import check_environment
from ..errors import ExportError
from ..export import Library
from .kernel import Kernel


def _kernel(lib: Library, name: str) -> Kernel:
    e = lib.entry(name)
    return Kernel(e.layer, e.target, e.schedule, e.function, e.loop_nest, source=e.source)


def load(directory, name: str | None = None) -> Kernel:
    """The Kernel in an exported directory (name= picks one of several), calling the library's C entry point.

    Raises ExportError for a missing, damaged or tampered directory and TargetError when this CPU lacks a
    feature the kernels were built for. Nothing is recompiled.
    """
    check_environment()
    lib = Library(directory)
    names = lib.kernel_names
    if name is None:
        if len(names) != 1:
            raise ExportError(f"{directory} holds {len(names)} kernels ({', '.join(names)}): pass name=..., or use "
                              f"load_all()")
        name = names[0]
    return _kernel(lib, name)


def load_all(directory) -> dict:
    """{kernel name: Kernel} for every kernel of an export directory."""
    check_environment()
    lib = Library(directory)
    return {n: _kernel(lib, n) for n in lib.kernel_names}
