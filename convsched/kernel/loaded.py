"""Kernels loaded from an export directory: the same Kernel, calling the library's C entry point."""
from __future__ import annotations

from ..backend import check_environment
from ..errors import ExportError
from ..export import Library
from .kernel import Kernel


def _kernel(lib: Library, name: str, layers=()) -> Kernel:
    e = lib.entry(name, layers)
    return Kernel(e.layer, e.target, e.schedule, e.function, e.loop_nest, source=e.source)


def load(directory, name: str | None = None, layers=()) -> Kernel:
    """The Kernel in an exported directory (name= picks one of several), calling the library's C entry point.

    layers: layer classes the manifest may name (your custom layers: cs.load(dir, layers=[MyLayer])); shipped
    layers and layer classes already defined in this process are found by name. Nothing named by the manifest
    is imported, and nothing is recompiled. Raises ExportError for a missing, damaged or tampered directory or
    an unknown layer class, and TargetError when this CPU lacks a feature the kernels were built for.
    """
    check_environment()
    lib = Library(directory)
    names = lib.kernel_names
    if name is None:
        if len(names) != 1:
            raise ExportError(f"{directory} holds {len(names)} kernels ({', '.join(names)}): pass name=..., or use "
                              f"load_all()")
        name = names[0]
    return _kernel(lib, name, layers)


def load_all(directory, layers=()) -> dict:
    """{kernel name: Kernel} for every kernel of an export directory (layers: as for load())."""
    check_environment()
    lib = Library(directory)
    return {n: _kernel(lib, n, layers) for n in lib.kernel_names}
