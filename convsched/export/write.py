"""Writing an export directory: the kernels' machine code linked with the C shim, the header, the manifest."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..backend.export import compile_object
from ..errors import ExportError
from ..schedule import Schedule, replay
from . import manifest as M
from .c_source import c_name, entries_c, header


def export(kernels, directory, name: str | None = None, *, cc: str | None = None) -> Path:
    """Write a shared library, a C header and a manifest for one or several kernels into `directory`.

    kernels: a Kernel, a list of Kernels (entry names: the layer kind, numbered if repeated) or a dict
    {entry name: Kernel}. All must share one target. name: the library's name (a C identifier; default: the
    directory's base name). cc: the C compiler (default $CC, else gcc). Returns the directory.
    """
    named = _name_kernels(kernels)
    if not isinstance(directory, (str, os.PathLike)):
        raise ExportError(f"an export directory is a path, got {directory!r}")
    directory = Path(directory)
    lib = c_name(name or directory.resolve().name, "library name")
    if len({(k.target.key, repr(k.target.to_tvm())) for k in named.values()}) > 1:
        raise ExportError("all kernels of one library must share one target; got "
                          + ", ".join(sorted({k.target.key for k in named.values()})))
    target = next(iter(named.values())).target
    cc = cc or os.environ.get("CC") or "gcc"
    if shutil.which(cc) is None:
        raise ExportError(f"no C compiler '{cc}' on PATH: exporting links the kernels with a small C shim "
                          f"(install gcc, or set CC)")

    manifest = M.build(named, lib, target, cc)
    digest = M.digest(manifest)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the export directory {directory}: {e}") from None
    with tempfile.TemporaryDirectory(prefix=".export-", dir=directory) as tmp:
        tmp = Path(tmp)
        compile_object([(M.tvm_symbol(lib, kname), replay(k.layer, k.schedule)) for kname, k in named.items()],
                       target, str(tmp / "kernels.o"))
        (tmp / f"{lib}.h").write_text(header(manifest))
        (tmp / "entries.c").write_text(entries_c(manifest, digest, target))
        libfile = f"lib{lib}.so"
        # The shim is compiled for generic x86-64 (no -march): its CPU check must run on any x86-64 CPU.
        _run([cc, "-O2", "-fPIC", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-function",
              "-Werror=implicit-function-declaration", "-I", str(tmp), "-c", "entries.c", "-o", "entries.o"], tmp)
        # -Bsymbolic: the kernels call this library's own shim even if another library (libtvm_runtime, a
        # second export) defines the same slot symbols; --no-undefined: nothing left for run time to find.
        _run([cc, "-shared", "-o", libfile, "entries.o", "kernels.o", "-Wl,-Bsymbolic", "-Wl,--no-undefined",
              "-lpthread"], tmp)
        manifest["library_sha256"] = M.sha256(tmp / libfile)
        manifest["manifest_digest"] = digest
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        for f in (libfile, f"{lib}.h", "manifest.json"):
            os.replace(tmp / f, directory / f)   # a new inode: a process that loaded the old library keeps it
    return directory


def _is_kernel(k) -> bool:
    """A single-function kernel: a layer, a recorded Schedule to replay, a target (multi-part kernels are not)."""
    return all(hasattr(k, a) for a in ("layer", "target", "_loop_nest")) and isinstance(
        getattr(k, "schedule", None), Schedule)


def _name_kernels(kernels) -> dict:
    if _is_kernel(kernels):
        kernels = [kernels]
    if isinstance(kernels, dict):
        named = dict(kernels)
    else:
        kernels = list(kernels)
        kinds = [k.layer.KIND for k in kernels]
        named = {}
        for i, k in enumerate(kernels):
            base = re.sub(r"\W", "_", k.layer.KIND)
            repeat = sum(1 for x in kinds[:i] if x == k.layer.KIND)
            named[base if kinds.count(k.layer.KIND) == 1 else f"{base}{repeat}"] = k
    if not named:
        raise ExportError("nothing to export: no kernels given")
    for kname, k in named.items():
        c_name(kname, "kernel name")
        if not _is_kernel(k):
            raise ExportError(f"kernel '{kname}': expected a convsched Kernel, got {type(k).__name__}")
    return named


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ExportError(f"'{' '.join(cmd)}' failed ({r.returncode}):\n{(r.stderr or r.stdout)[-3000:]}")
