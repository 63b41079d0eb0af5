"""manifest.json of an export directory: what each kernel is (layer, arguments, schedule, target, versions)
and the integrity fields (the library's SHA-256, the manifest's own digest, which the library embeds)."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..backend import TVM_VERSION
from ..backend.export import TVM_FFI_VERSION
from ..errors import ExportError
from ..layers import Conv2d
from ..target import ISA_FEATURES
from ..version import __version__
from .c_source import CPUID_FEATURES, DTYPES

FORMAT = "convsched-export"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("name", "library", "kernels", "library_sha256", "manifest_digest", "target")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digest(manifest: dict) -> str:
    """SHA-256 of the manifest without its two integrity fields: the library embeds it."""
    body = {k: v for k, v in manifest.items() if k not in ("library_sha256", "manifest_digest")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tvm_symbol(lib: str, kernel: str) -> str:
    """The name TVM gives a kernel's function inside the library (behind the plain C entry point)."""
    return f"{lib}__{kernel}_impl"


def _compiler_version(cc) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "unknown"


def _layouts(layer) -> dict:
    """Per-argument layout names, where the layer has a layout parameter (else the docstring says it)."""
    layout = getattr(layer, "layout", None)
    if isinstance(layer, Conv2d):
        return {"x": layout, "w": "HWIO" if layout == "NHWC" else "OIHW", "b": "C", "y": layout}
    if layout:
        return {s.name: layout for s in layer.input_specs() + layer.output_specs() if len(s.shape) == 4}
    return {}


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def build(named: dict, lib: str, target, cc) -> dict:
    """The manifest of library `lib` holding {kernel name: kernel}, without its integrity fields."""
    required = sorted(f for f in target.features if f in ISA_FEATURES and f in CPUID_FEATURES)
    kernels = []
    for kname, k in named.items():
        layouts = _layouts(k.layer)
        args = []
        for role, specs in (("input", k.layer.input_specs()), ("output", k.layer.output_specs())):
            for s in specs:
                if s.dtype not in DTYPES:
                    raise ExportError(f"kernel '{kname}': argument '{s.name}' has dtype {s.dtype}, which the C "
                                      f"entry point cannot take (supported: {', '.join(DTYPES)})")
                args.append({"name": s.name, "role": role, "shape": [int(d) for d in s.shape], "dtype": s.dtype,
                             "layout": layouts.get(s.name) or layouts.get("y" if role == "output" else "", None)})
        kernels.append({
            "name": kname,
            "entry": f"{lib}_{kname}",
            "tvm_symbol": "__tvm_ffi_" + tvm_symbol(lib, kname),
            "layer": {"class": type(k.layer).__name__, "kind": k.layer.KIND, "params": _jsonable(k.layer.params()),
                      "text": str(k.layer), "doc": inspect.cleandoc(type(k.layer).__doc__ or "")},
            "workload_key": k.layer.workload_key,
            "arguments": args,
            "ops": int(k.layer.ops()), "op_unit": k.layer.op_unit, "flops_per_op": k.layer.flops_per_op,
            "schedule": k.schedule.to_json(), "schedule_text": k.schedule.text(), "schedule_hash": k.schedule.hash,
            "loop_nest": k._loop_nest,
        })
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": lib,
        "library": f"lib{lib}.so", "header": f"{lib}.h",
        "target": {**target.to_json(), "disabled": sorted(target.disabled), "tvm": target.to_tvm()},
        "required_cpu_features": required,
        "versions": {"convsched": __version__, "tvm": TVM_VERSION, "tvm_ffi": TVM_FFI_VERSION,
                     "compiler": _compiler_version(cc), "python": sys.version.split()[0]},
        "abi": {"return": "int: 0 ok, -1 error (message from <name>_last_error())",
                "buffers": "C-contiguous (row-major), 64-byte aligned, dtypes and shapes as in 'arguments'",
                "bits": "bit tensors are uint64 words, bits packed little-endian along the last (channel) axis, "
                        "bit 1 = +1, bit 0 = -1, pad bits 0"},
        "kernels": kernels,
    }


def _malformed(m: dict) -> str | None:
    """What in a manifest (whose digest matches) is not of the shape write() gives it, or None."""
    if not isinstance(m["name"], str) or not m["name"].isidentifier():
        return f"name {m['name']!r} is not a C identifier"
    if not isinstance(m["library"], str) or m["library"] != f"lib{m['name']}.so":
        return f"library {m['library']!r} is not lib{m['name']}.so"
    if not all(isinstance(m[k], str) for k in ("library_sha256", "manifest_digest")):
        return "its integrity fields are not strings"
    t = m["target"]
    if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in ("name", "mcpu", "triple")) or \
            not isinstance(t.get("features"), list) or not isinstance(t.get("cores"), int):
        return "target is not {name, mcpu, triple, features, cores}"
    if not isinstance(m["kernels"], list) or not m["kernels"]:
        return "kernels is not a list of kernels"
    for k in m["kernels"]:
        if not isinstance(k, dict) or not all(isinstance(k.get(f), str) for f in ("name", "entry", "workload_key")):
            return "a kernel lacks its name, entry or workload_key"
        if not isinstance(k.get("layer"), dict) or not isinstance(k["layer"].get("class"), str) or \
                not isinstance(k["layer"].get("params"), dict) or not isinstance(k.get("schedule"), dict):
            return f"kernel {k['name']!r}: its layer or schedule is malformed"
        args = k.get("arguments")
        if not isinstance(args, list) or not all(
                isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("dtype"), str)
                and isinstance(a.get("shape"), list) for a in args):
            return f"kernel {k['name']!r}: its arguments are malformed"
    return None


def read(directory: Path) -> dict:
    """The manifest of an export directory, checked: readable, of this format, complete and untampered, and
    the library it names present and unmodified. ExportError says what is wrong."""
    if not isinstance(directory, (str, os.PathLike)):
        raise ExportError(f"an export directory is a path, got {directory!r}")
    d = Path(directory)
    mpath = d / "manifest.json"
    if not d.is_dir():
        raise ExportError(f"{d}: no such export directory")
    if not mpath.is_file():
        raise ExportError(f"{d}: not a convsched export directory (no manifest.json)")
    try:
        m = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{mpath}: not valid JSON ({e}); the manifest was damaged or edited") from None
    except OSError as e:
        raise ExportError(f"{mpath}: cannot be read: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ExportError(f"{mpath}: not a convsched export manifest (format is not '{FORMAT}')")
    if m.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{mpath}: format version {m.get('format_version')!r}; this convsched reads "
                          f"version {FORMAT_VERSION}: export the kernels again")
    missing = [k for k in REQUIRED_FIELDS if k not in m]
    if missing:
        raise ExportError(f"{mpath}: missing fields {missing}; the manifest was damaged or edited")
    if digest(m) != m["manifest_digest"]:
        raise ExportError(f"{mpath}: the manifest was modified after export (its contents do not match "
                          f"its digest); export the kernels again")
    why = _malformed(m)
    if why:
        raise ExportError(f"{mpath}: {why}; the manifest was damaged or edited: export the kernels again")
    libpath = d / m["library"]
    if not libpath.is_file():
        raise ExportError(f"{d}: the library {m['library']} named by the manifest is missing")
    if sha256(libpath) != m["library_sha256"]:
        raise ExportError(f"{libpath}: the library was modified after export (its SHA-256 does not match the "
                          f"manifest); export the kernels again")
    return m
