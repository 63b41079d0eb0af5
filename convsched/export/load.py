"""Loading an export directory: the library checked and dlopen()ed, its C entry points callable from Python.

Library(dir).entry(name) gives everything a kernel needs (the layer rebuilt from the manifest through the
layer registry, the target, the schedule, a CFunction calling the C entry point); convsched.kernel.load()
wraps it into a Kernel.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConvschedError, ExportError, TargetError
from ..layers import registry
from ..schedule import Schedule
from ..target import Target
from . import manifest as M


class LoadedEntry(NamedTuple):
    layer: object
    target: Target
    schedule: Schedule
    function: "CFunction"
    loop_nest: str
    source: str


class CFunction:
    """One kernel's C entry point, called through ctypes: what a Kernel loaded by load() runs."""

    def __init__(self, library: "Library", kernel: dict):
        self.library, self.name, self.entry = library, kernel["name"], kernel["entry"]
        self.nargs = len(kernel["arguments"])
        self.fn = library._symbol(self.entry)
        self.fn.argtypes = [ctypes.c_void_p] * self.nargs
        self.fn.restype = ctypes.c_int

    def __call__(self, *arrays):
        if len(arrays) != self.nargs:
            raise ValueError(f"{self.entry} takes {self.nargs} arrays, got {len(arrays)}")
        if self.fn(*[a.ctypes.data for a in arrays]) != 0:
            raise ConvschedError(self.library.last_error())

    def time(self, arrays, number: int = 1, repeat: int = 10, min_repeat_ms: int = 0) -> list:
        """Seconds per call, one entry per repeat (each the mean of >= `number` calls lasting >= min_repeat_ms):
        the calls are made from Python, one ctypes call each."""
        ptrs = [a.ctypes.data for a in arrays]
        fn = self.fn
        self(*arrays)                                   # warm up; raises on error
        t0 = time.perf_counter()
        fn(*ptrs)
        one = max(time.perf_counter() - t0, 1e-7)
        n = max(number, int(np.ceil(min_repeat_ms * 1e-3 / one)))
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(*ptrs)
            out.append((time.perf_counter() - t0) / n)
        return out


class Library:
    """An export directory, checked: manifest readable and untampered, library untampered, CPU able."""

    def __init__(self, directory):
        m = M.read(directory)
        self.directory = d = Path(directory)
        libpath = d / m["library"]
        try:
            self.dll = ctypes.CDLL(_loadable_path(libpath.resolve(), m["library_sha256"]))
        except OSError as e:
            raise ExportError(f"{libpath}: cannot load the library: {e}") from None
        lib = m["name"]
        self.manifest, self.name = m, lib
        self._last_error = self._symbol(f"{lib}_last_error")
        self._last_error.restype = ctypes.c_char_p
        embedded = self._symbol(f"{lib}_manifest_digest")
        embedded.restype = ctypes.c_char_p
        if (embedded() or b"").decode(errors="replace") != m["manifest_digest"]:
            raise ExportError(f"{d}: manifest.json belongs to another build of {m['library']} (digests differ)")
        check = self._symbol(f"{lib}_check_cpu")
        check.restype = ctypes.c_int
        if check() != 0:
            raise TargetError(self.last_error())

    def _symbol(self, name: str):
        try:
            return getattr(self.dll, name)
        except AttributeError:
            raise ExportError(f"{self.directory}: the library has no function {name}; export the kernels again") \
                from None

    def last_error(self) -> str:
        return (self._last_error() or b"").decode(errors="replace")

    def set_num_threads(self, n: int) -> int:
        f = getattr(self.dll, f"{self.name}_set_num_threads")
        f.argtypes, f.restype = [ctypes.c_int], ctypes.c_int
        return f(n)

    @property
    def kernel_names(self) -> list[str]:
        return [k["name"] for k in self.manifest["kernels"]]

    def entry(self, name: str, layers=()) -> LoadedEntry:
        """Kernel `name` of this library: its layer, target, schedule and C function. layers: layer classes
        to rebuild the kernel's layer with (a custom layer's class), before the registered ones."""
        ks = {k["name"]: k for k in self.manifest["kernels"]}
        if name not in ks:
            raise ExportError(f"{self.directory}: no kernel named '{name}'; it has {', '.join(ks)}")
        k = ks[name]
        t = self.manifest["target"]
        target = Target(t["name"], t["mcpu"], frozenset(t["features"]), int(t["cores"]), t["triple"],
                        frozenset(t.get("disabled", ())))
        return LoadedEntry(_rebuild_layer(k, self.directory, layers), target, Schedule.from_json(k["schedule"]),
                           CFunction(self, k), k.get("loop_nest", ""), f"loaded from {self.directory}")


_loaded: dict = {}   # library path -> SHA-256 of what this process dlopen()ed there


def _loadable_path(path: Path, sha: str) -> str:
    """`path`, or a copy named after its hash when this process already loaded another library from `path`:
    dlopen() matches by name and would hand back the old one (e.g. after exporting again into the same dir)."""
    key = str(path)
    if _loaded.setdefault(key, sha) == sha:
        return key
    copy = Path(tempfile.gettempdir()) / f"convsched-{sha[:16]}-{path.name}"
    if not copy.exists() or M.sha256(copy) != sha:
        tmp = copy.with_name(copy.name + f".{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, copy)
    return str(copy)


def _rebuild_layer(k: dict, directory, layers=()):
    """The layer of manifest entry `k`, rebuilt from its class name and parameters, checked against it.

    Classes come from `layers` (by class name), else from the layer registry (the shipped layers and any layer
    class this process has defined): nothing the manifest names is imported."""
    given = {cls.__name__: cls for cls in layers or ()}

    def layer_class(name):
        if name in given:
            return given[name]
        try:
            return registry.layer_class(name)
        except LookupError:
            raise ExportError(f"{directory}: kernel '{k['name']}' needs the layer class {name}, which this process "
                              f"does not have: pass it, e.g. cs.load(dir, layers=[{name}])") from None

    cls = layer_class(k["layer"]["class"])
    try:
        layer = cls.from_params(k["layer"]["params"], layer_class)
    except (TypeError, ValueError, KeyError) as e:
        raise ExportError(f"{directory}: kernel '{k['name']}': cannot rebuild {cls.__name__}: {e}") from None
    if layer.workload_key != k["workload_key"]:
        raise ExportError(f"{directory}: kernel '{k['name']}': the layer rebuilt from the manifest differs from the "
                          f"exported one ({layer.workload_key} vs {k['workload_key']})")
    specs = [(s.name, list(s.shape), s.dtype) for s in layer.input_specs() + layer.output_specs()]
    if specs != [(a["name"], a["shape"], a["dtype"]) for a in k["arguments"]]:
        raise ExportError(f"{directory}: kernel '{k['name']}': this convsched's {cls.__name__} takes other arguments "
                          f"than the exported kernel; export it again")
    return layer
