"""Exported kernels: a shared library, a C header and a JSON manifest that other programs load.

    k.export("out/conv56")                        # one kernel
    cs.export.export({"conv1": k1, "bconv": k2}, "out/net")   # several kernels, one library, distinct entries
    k2 = cs.load("out/conv56")                    # a Kernel again, without recompiling (calls the C entry)
    python -m convsched.export Conv2d h=56 w=56 cin=64 cout=64 --out out/conv56

An export directory DIR named NAME (the directory's base name, or name=...) holds
    libNAME.so      the kernels (LLVM machine code for the target CPU) + a plain-C shim: error messages,
                    a CPU-feature check, a persistent thread pool, workspaces. Needs only libc and pthreads.
    NAME.h          one plain C entry point per kernel:  int NAME_<kernel>(const float* x, ..., float* y);
                    (0 = ok, -1 = error, message from NAME_last_error()), plus NAME_check_cpu(),
                    NAME_set_num_threads(n) and NAME_call(kernel, DLTensor* const* args, nargs).
    manifest.json   layer, parameters, argument shapes/dtypes/layouts, schedule, target, required CPU
                    features, versions, and the library's SHA-256 (so a tampered directory is refused).

The library checks the CPU before its first kernel runs: a kernel built for AVX-512 returns -1 with a message
on an AVX2 host instead of dying of an illegal instruction; load() raises TargetError for the same reason.
Test hook: CONVSCHED_HIDE_CPU_FEATURES="avx2,fma" makes the check treat those features as absent.
"""
from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ConvschedError, TargetError

FORMAT = "convsched-export"
FORMAT_VERSION = 1
SHIM = Path(__file__).parent / "export_templates" / "shim.c"

# dtype -> (C type, DLPack type code, bits)
DTYPES = {
    "float32": ("float", 2, 32), "float64": ("double", 2, 64),
    "int8": ("int8_t", 0, 8), "int16": ("int16_t", 0, 16), "int32": ("int32_t", 0, 32), "int64": ("int64_t", 0, 64),
    "uint8": ("uint8_t", 1, 8), "uint16": ("uint16_t", 1, 16), "uint32": ("uint32_t", 1, 32),
    "uint64": ("uint64_t", 1, 64),
}

# LLVM feature name -> (CPUID leaf, subleaf, register, bit, XCR0 state the OS must enable). The generated
# library checks every ISA feature of its target that appears here (all of target.ISA_FEATURES).
_AVX, _AVX512, _AMX = "CS_XCR0_AVX", "CS_XCR0_AVX512", "CS_XCR0_AMX"
CPUID_FEATURES = {
    "sse": (1, 0, "d", 25, 0), "sse2": (1, 0, "d", 26, 0),
    "sse3": (1, 0, "c", 0, 0), "pclmul": (1, 0, "c", 1, 0), "ssse3": (1, 0, "c", 9, 0),
    "fma": (1, 0, "c", 12, _AVX), "sse4.1": (1, 0, "c", 19, 0), "sse4.2": (1, 0, "c", 20, 0),
    "movbe": (1, 0, "c", 22, 0), "popcnt": (1, 0, "c", 23, 0), "aes": (1, 0, "c", 25, 0),
    "avx": (1, 0, "c", 28, _AVX), "f16c": (1, 0, "c", 29, _AVX),
    "bmi": (7, 0, "b", 3, 0), "avx2": (7, 0, "b", 5, _AVX), "bmi2": (7, 0, "b", 8, 0),
    "avx512f": (7, 0, "b", 16, _AVX512), "avx512dq": (7, 0, "b", 17, _AVX512), "adx": (7, 0, "b", 19, 0),
    "avx512ifma": (7, 0, "b", 21, _AVX512), "avx512cd": (7, 0, "b", 28, _AVX512), "sha": (7, 0, "b", 29, 0),
    "avx512bw": (7, 0, "b", 30, _AVX512), "avx512vl": (7, 0, "b", 31, _AVX512),
    "avx512vbmi": (7, 0, "c", 1, _AVX512), "avx512vbmi2": (7, 0, "c", 6, _AVX512), "gfni": (7, 0, "c", 8, 0),
    "vaes": (7, 0, "c", 9, _AVX), "vpclmulqdq": (7, 0, "c", 10, _AVX), "avx512vnni": (7, 0, "c", 11, _AVX512),
    "avx512bitalg": (7, 0, "c", 12, _AVX512), "avx512vpopcntdq": (7, 0, "c", 14, _AVX512),
    "amx-bf16": (7, 0, "d", 22, _AMX), "avx512fp16": (7, 0, "d", 23, _AVX512), "amx-tile": (7, 0, "d", 24, _AMX),
    "amx-int8": (7, 0, "d", 25, _AMX),
    "avxvnni": (7, 1, "a", 4, _AVX), "avx512bf16": (7, 1, "a", 5, _AVX512),
    "lzcnt": (0x80000001, 0, "c", 5, 0), "sse4a": (0x80000001, 0, "c", 6, 0),
    "xop": (0x80000001, 0, "c", 11, _AVX), "fma4": (0x80000001, 0, "c", 16, _AVX),
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while bool true false class new delete this template typename namespace operator""".split())


class ExportError(ConvschedError):
    """An export directory that cannot be written or loaded: missing or tampered files, no C compiler."""


# ------------------------------------------------------------------------------------------------ export
def export(kernels, directory, name: str | None = None, *, cc: str | None = None) -> Path:
    """Write a shared library, a C header and a manifest for one or several kernels into `directory`.

    kernels: a Kernel, a list of Kernels (entry names: the layer kind, numbered if repeated) or a dict
    {entry name: Kernel}. All must share one target. name: the library's name (a C identifier; default: the
    directory's base name). cc: the C compiler (default $CC, else gcc). Returns the directory.
    """
    from .kernel import Kernel
    named = _name_kernels(kernels, Kernel)
    directory = Path(directory)
    lib = _c_name(name or directory.resolve().name, "library name")
    if len({(k.target.key, repr(k.target.to_tvm())) for k in named.values()}) > 1:
        raise ExportError("all kernels of one library must share one target; got "
                          + ", ".join(sorted({k.target.key for k in named.values()})))
    target = next(iter(named.values())).target
    cc = cc or os.environ.get("CC") or "gcc"
    if shutil.which(cc) is None:
        raise ExportError(f"no C compiler '{cc}' on PATH: exporting links the kernels with a small C shim "
                          f"(install gcc, or set CC)")

    manifest = _manifest(named, lib, target, cc)
    digest = _digest(manifest)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=directory) as tmp:
        tmp = Path(tmp)
        from .backend.export import compile_object
        from .schedule.template import replay
        compile_object([(_tvm_symbol(lib, kname), replay(k.layer, k.schedule)) for kname, k in named.items()],
                       target, str(tmp / "kernels.o"))
        (tmp / f"{lib}.h").write_text(_header(manifest))
        (tmp / "entries.c").write_text(_entries_c(manifest, digest, target))
        libfile = f"lib{lib}.so"
        # The shim is compiled for generic x86-64 (no -march): its CPU check must run on any x86-64 CPU.
        _run([cc, "-O2", "-fPIC", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-function",
              "-Werror=implicit-function-declaration", "-I", str(tmp), "-c", "entries.c", "-o", "entries.o"], tmp)
        # -Bsymbolic: the kernels call this library's own shim even if another library (libtvm_runtime, a
        # second export) defines the same slot symbols; --no-undefined: nothing left for run time to find.
        _run([cc, "-shared", "-o", libfile, "entries.o", "kernels.o", "-Wl,-Bsymbolic", "-Wl,--no-undefined",
              "-lpthread"], tmp)
        manifest["library_sha256"] = _sha256(tmp / libfile)
        manifest["manifest_digest"] = digest
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        for f in (libfile, f"{lib}.h", "manifest.json"):
            os.replace(tmp / f, directory / f)   # a new inode: a process that loaded the old library keeps it
    return directory


def _name_kernels(kernels, Kernel) -> dict:
    if isinstance(kernels, Kernel):
        kernels = [kernels]
    if isinstance(kernels, dict):
        named = dict(kernels)
    else:
        kernels = list(kernels)
        kinds = [k.layer.KIND for k in kernels]
        named = {}
        for i, k in enumerate(kernels):
            base = re.sub(r"\W", "_", k.layer.KIND)
            named[base if kinds.count(k.layer.KIND) == 1 else f"{base}{sum(1 for x in kinds[:i] if x == k.layer.KIND)}"] = k
    if not named:
        raise ExportError("nothing to export: no kernels given")
    for kname, k in named.items():
        _c_name(kname, "kernel name")
        if not isinstance(k, Kernel):
            raise ExportError(f"kernel '{kname}': expected a convsched Kernel, got {type(k).__name__}")
    return named


def _c_name(s: str, what: str) -> str:
    if not _IDENT.match(s or "") or s in _C_KEYWORDS:
        raise ExportError(f"{what} {s!r} is not a C identifier (letters, digits, _; not starting with a digit)")
    return s


def _arg_name(s: str) -> str:
    s = re.sub(r"\W", "_", s)
    return s + "_" if s in _C_KEYWORDS or keyword.iskeyword(s) or not _IDENT.match(s) else s


def _tvm_symbol(lib: str, kernel: str) -> str:
    return f"{lib}__{kernel}_impl"


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ExportError(f"'{' '.join(cmd)}' failed ({r.returncode}):\n{(r.stderr or r.stdout)[-3000:]}")


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest(manifest: dict) -> str:
    """SHA-256 of the manifest without its two integrity fields: the library embeds it."""
    body = {k: v for k, v in manifest.items() if k not in ("library_sha256", "manifest_digest")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _compiler_version(cc) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "unknown"


def _layouts(layer) -> dict:
    """Per-argument layout names, where the layer has a layout parameter (else the docstring says it)."""
    layout = getattr(layer, "layout", None)
    if type(layer).__name__ == "Conv2d":
        return {"x": layout, "w": "HWIO" if layout == "NHWC" else "OIHW", "b": "C",
                "y": layout}
    if layout:
        return {s.name: layout for s in layer.input_specs() + layer.output_specs() if len(s.shape) == 4}
    return {}


def _manifest(named: dict, lib: str, target, cc) -> dict:
    from .backend import TVM_VERSION
    from .backend.export import TVM_FFI_VERSION
    from .target import ISA_FEATURES
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
            "tvm_symbol": "__tvm_ffi_" + _tvm_symbol(lib, kname),
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


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _header(m: dict) -> str:
    lib, L = m["name"], m["name"].upper()
    t = m["target"]
    out = [f"""/* {m['header']}: convsched kernels in {m['library']} (generated by convsched {m['versions']['convsched']},
 * TVM {m['versions']['tvm']}; see manifest.json for everything else).
 *
 * Built for {t['mcpu']} ({t['triple']}), needs CPU features: {', '.join(m['required_cpu_features']) or '(none)'}.
 * Link with -L<dir> -l{lib} -Wl,-rpath,<dir> (the library needs only libc and pthreads).
 *
 * Every entry point returns 0, or -1 with the reason in {lib}_last_error() (a thread-local string).
 * Buffers: C-contiguous (row-major), 64-byte aligned (aligned_alloc(64, bytes rounded up to 64)), with
 * exactly the dtypes and shapes documented below. Bit tensors are uint64 words: bits packed little-endian
 * along the last (channel) axis, bit 1 = +1, bit 0 = -1, pad bits 0.
 * Threads: $CONVSCHED_NUM_THREADS, else $TVM_NUM_THREADS, else the CPUs this process may run on; a
 * persistent pool is started by the first parallel kernel.
 */
#ifndef CONVSCHED_{L}_H
#define CONVSCHED_{L}_H
#include <stdint.h>

/* DLPack's tensor (dlpack.h, v1), for {lib}_call. Include dlpack.h before this file to use its own. */
#if !defined(DLPACK_MAJOR_VERSION) && !defined(DLPACK_VERSION) && !defined(CONVSCHED_DLTENSOR)
#define CONVSCHED_DLTENSOR
typedef struct {{ int32_t device_type; int32_t device_id; }} DLDevice;          /* device_type 1 = CPU */
typedef struct {{ uint8_t code; uint8_t bits; uint16_t lanes; }} DLDataType;    /* code 0 int, 1 uint, 2 float */
typedef struct {{
  void* data; DLDevice device; int32_t ndim; DLDataType dtype;
  int64_t* shape; int64_t* strides; uint64_t byte_offset;                   /* strides NULL = C-contiguous */
}} DLTensor;
#endif

#ifdef __cplusplus
extern "C" {{
#endif

/* 0 if this CPU has every feature the kernels use; else -1 and {lib}_last_error() names the missing ones.
 * Every entry point checks this itself before its first run. */
int {lib}_check_cpu(void);
/* The message of the last failed call on this thread ("" if none). */
const char* {lib}_last_error(void);
/* Use n threads (0 = the default above); returns the number now used, or -1. Not during a kernel call. */
int {lib}_set_num_threads(int n);
/* The manifest digest this library was built with (manifest.json "manifest_digest"). */
const char* {lib}_manifest_digest(void);
/* Any kernel by name, with DLPack tensors: the generated code checks ndim, dtype, shape, strides and
 * device of every argument and reports a mismatch through {lib}_last_error(). */
int {lib}_call(const char* kernel, DLTensor* const* args, int nargs);
"""]
    for k in m["kernels"]:
        K = k["name"].upper()
        lines = [f"/* ---- kernel \"{k['name']}\": {k['layer']['text']}",
                 f" * schedule {k['schedule_hash']}: {k['schedule_text'].splitlines()[0].lstrip('# ')}",
                 " * Arguments, in order:"]
        params = []
        w = max(len(a["name"]) for a in k["arguments"])
        for a in k["arguments"]:
            ctype = DTYPES[a["dtype"]][0]
            dims = "".join(f"[{d}]" for d in a["shape"])
            lay = f"  layout {a['layout']}" if a.get("layout") else ""
            lines.append(f" *   {a['name']:<{w}}  {a['role']:<6}  {a['dtype']}{dims}  "
                         f"({int(np.prod(a['shape'], dtype=np.int64))} elements){lay}")
            params.append(f"{'const ' if a['role'] == 'input' else ''}{ctype}* {_arg_name(a['name'])}")
        doc = [ln.rstrip() for ln in k["layer"]["doc"].splitlines()]
        if doc:
            lines.append(" * The layer:")
            lines += [f" *   {ln}".replace("*/", "* /") if ln.strip() else " *" for ln in doc]
        lines.append(" */")
        out.append("\n".join(lines))
        out.append(f"int {k['entry']}({', '.join(params)});")
        out.append(f"#define {L}_{K}_NARGS {len(k['arguments'])}")
        for a in k["arguments"]:
            A = _arg_name(a["name"]).upper()
            out.append(f"#define {L}_{K}_{A}_NDIM {len(a['shape'])}")
            out.append(f"#define {L}_{K}_{A}_SHAPE {{{', '.join(str(d) for d in a['shape'])}}}")
            out.append(f"#define {L}_{K}_{A}_SIZE {int(np.prod(a['shape'], dtype=np.int64))}")
        out.append("")
    out.append("#ifdef __cplusplus\n}  /* extern \"C\" */\n#endif\n#endif\n")
    return "\n".join(out)


def _entries_c(m: dict, digest: str, target) -> str:
    lib = m["name"]
    feats = []
    for f in m["required_cpu_features"]:
        leaf, sub, reg, bit, x = CPUID_FEATURES[f]
        feats.append(f'  {{"{f}", {leaf:#x}u, {sub}u, \'{reg}\', {bit}, {x or 0}}},')
    built_for = f"{target.mcpu} ({target.triple})"
    out = [f'/* Generated by convsched {__version__}: the entry points of lib{lib}.so. */',
           "#define _GNU_SOURCE   /* sched_getaffinity */",
           f'#define CS_LIB "lib{lib}.so"',
           f'#include "{lib}.h"',
           SHIM.read_text(),
           "/* ------------------------------------------------------------------- generated: this library */",
           f"static const cs_feature cs_required[] = {{\n" + ("\n".join(feats) or '  {"", 0, 0, 0, 0, 0},') + "\n};",
           f"static const int cs_num_required = {len(feats)};",
           f'static const char cs_built_for[] = "{built_for}";',
           f"""
CS_EXPORT const char* {lib}_last_error(void) {{ return cs_error; }}
CS_EXPORT const char* {lib}_manifest_digest(void) {{ return "{digest}"; }}
CS_EXPORT int {lib}_set_num_threads(int n) {{ return cs_set_num_threads(n); }}

CS_EXPORT int {lib}_check_cpu(void) {{
  int rc = cs_check_features(cs_required, cs_num_required, CS_LIB, cs_built_for);
  if (rc == 0) cs_fill_slots();
  atomic_store(&cs_ready, rc == 0 ? 1 : -1);
  return rc;
}}

static int cs_ensure_ready(void) {{
  if (atomic_load_explicit(&cs_ready, memory_order_acquire) == 1) return 0;
  cs_error[0] = 0;
  return {lib}_check_cpu();   /* also when it failed before: sets this thread's message */
}}
"""]
    table = []
    for k in m["kernels"]:
        sym = k["tvm_symbol"]
        args = k["arguments"]
        out.append(f"extern int {sym}(void* self, const cs_Any* args, int32_t nargs, cs_Any* ret);")
        for i, a in enumerate(args):
            out.append(f"static const int64_t cs_shape_{k['name']}_{i}[{max(1, len(a['shape']))}] = "
                       f"{{{', '.join(str(d) for d in a['shape']) or '0'}}};")
        params = ", ".join(f"{'const ' if a['role'] == 'input' else ''}{DTYPES[a['dtype']][0]}* {_arg_name(a['name'])}"
                           for a in args)
        body = [f"CS_EXPORT int {k['entry']}({params}) {{",
                "  if (cs_ensure_ready()) return -1;"]
        for a in args:
            body.append(f'  if (cs_check_pointer("{k["entry"]}", "{a["name"]}", {_arg_name(a["name"])})) return -1;')
        body.append(f"  cs_DLTensor t[{len(args)}];\n  cs_Any a[{len(args)}];")
        for i, a in enumerate(args):
            _, code, bits = DTYPES[a["dtype"]]
            body.append(f"  a[{i}] = cs_tensor_arg(&t[{i}], (void*){_arg_name(a['name'])}, {len(a['shape'])}, "
                        f"cs_shape_{k['name']}_{i}, {code}, {bits});")
        body.append("  cs_Any ret;\n  ret.type_index = CS_FFI_NONE;\n  ret.zero_padding = 0;\n  ret.v_int64 = 0;")
        body.append(f"  return {sym}(NULL, a, {len(args)}, &ret) == 0 ? 0 : -1;\n}}\n")
        out.append("\n".join(body))
        table.append(f'  {{"{k["name"]}", {sym}, {len(args)}}},')
    out.append(f"""static const struct {{ const char* name; cs_safe_call fn; int nargs; }} cs_kernels[] = {{
{chr(10).join(table)}
}};

CS_EXPORT int {lib}_call(const char* kernel, DLTensor* const* args, int nargs) {{
  if (cs_ensure_ready()) return -1;
  if (!kernel) {{ cs_set_error("{lib}_call: kernel name is NULL"); return -1; }}
  for (size_t k = 0; k < sizeof cs_kernels / sizeof cs_kernels[0]; k++) {{
    if (strcmp(kernel, cs_kernels[k].name) != 0) continue;
    if (nargs != cs_kernels[k].nargs) {{
      cs_set_error("{lib}_call: kernel '%s' takes %d tensors, got %d", kernel, cs_kernels[k].nargs, nargs);
      return -1;
    }}
    cs_Any a[64];
    if (nargs > 64 || !args) {{ cs_set_error("{lib}_call: bad argument array"); return -1; }}
    for (int i = 0; i < nargs; i++) {{
      if (!args[i]) {{ cs_set_error("{lib}_call: kernel '%s': tensor %d is NULL", kernel, i); return -1; }}
      if (!args[i]->data || ((uintptr_t)args[i]->data + args[i]->byte_offset) % 64) {{
        cs_set_error("{lib}_call: kernel '%s': tensor %d: data is NULL or not 64-byte aligned", kernel, i);
        return -1;
      }}
      a[i].type_index = CS_FFI_DLTENSOR_PTR;
      a[i].zero_padding = 0;
      a[i].v_ptr = args[i];
    }}
    cs_Any ret;
    ret.type_index = CS_FFI_NONE;
    ret.zero_padding = 0;
    ret.v_int64 = 0;
    return cs_kernels[k].fn(NULL, a, nargs, &ret) == 0 ? 0 : -1;
  }}
  cs_set_error("{lib}_call: no kernel named '%s' in " CS_LIB, kernel);
  return -1;
}}
""")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------- load
class CFunction:
    """One kernel's C entry point, called through ctypes: what a Kernel loaded by load() runs."""

    def __init__(self, library: "Library", kernel: dict):
        self.library, self.name, self.entry = library, kernel["name"], kernel["entry"]
        self.nargs = len(kernel["arguments"])
        self.fn = getattr(library.dll, self.entry)
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
        self.directory = d = Path(directory)
        mpath = d / "manifest.json"
        if not d.is_dir():
            raise ExportError(f"{d}: no such export directory")
        if not mpath.is_file():
            raise ExportError(f"{d}: not a convsched export directory (no manifest.json)")
        try:
            m = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExportError(f"{mpath}: not valid JSON ({e}); the manifest was damaged or edited") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ExportError(f"{mpath}: not a convsched export manifest (format is not '{FORMAT}')")
        if m.get("format_version") != FORMAT_VERSION:
            raise ExportError(f"{mpath}: format version {m.get('format_version')!r}; this convsched reads "
                              f"version {FORMAT_VERSION}: export the kernels again")
        missing = [k for k in ("name", "library", "kernels", "library_sha256", "manifest_digest", "target")
                   if k not in m]
        if missing:
            raise ExportError(f"{mpath}: missing fields {missing}; the manifest was damaged or edited")
        if _digest(m) != m["manifest_digest"]:
            raise ExportError(f"{mpath}: the manifest was modified after export (its contents do not match "
                              f"its digest); export the kernels again")
        libpath = d / m["library"]
        if not libpath.is_file():
            raise ExportError(f"{d}: the library {m['library']} named by the manifest is missing")
        if _sha256(libpath) != m["library_sha256"]:
            raise ExportError(f"{libpath}: the library was modified after export (its SHA-256 does not match the "
                              f"manifest); export the kernels again")
        try:
            self.dll = ctypes.CDLL(_loadable_path(libpath.resolve(), m["library_sha256"]))
        except OSError as e:
            raise ExportError(f"{libpath}: cannot load the library: {e}") from None
        lib = m["name"]
        self.manifest, self.name = m, lib
        self._last_error = getattr(self.dll, f"{lib}_last_error")
        self._last_error.restype = ctypes.c_char_p
        embedded = getattr(self.dll, f"{lib}_manifest_digest")
        embedded.restype = ctypes.c_char_p
        if embedded().decode() != m["manifest_digest"]:
            raise ExportError(f"{d}: manifest.json belongs to another build of {m['library']} (digests differ)")
        check = getattr(self.dll, f"{lib}_check_cpu")
        check.restype = ctypes.c_int
        if check() != 0:
            raise TargetError(self.last_error())

    def last_error(self) -> str:
        return (self._last_error() or b"").decode(errors="replace")

    def set_num_threads(self, n: int) -> int:
        f = getattr(self.dll, f"{self.name}_set_num_threads")
        f.argtypes, f.restype = [ctypes.c_int], ctypes.c_int
        return f(n)

    @property
    def kernel_names(self) -> list[str]:
        return [k["name"] for k in self.manifest["kernels"]]

    def kernel(self, name: str):
        from .kernel import Kernel
        from .schedule.steps import Schedule
        from .target import Target
        ks = {k["name"]: k for k in self.manifest["kernels"]}
        if name not in ks:
            raise ExportError(f"{self.directory}: no kernel named '{name}'; it has {', '.join(ks)}")
        k = ks[name]
        layer = _layer_from(k, self.directory)
        t = self.manifest["target"]
        target = Target(t["name"], t["mcpu"], frozenset(t["features"]), int(t["cores"]), t["triple"],
                        frozenset(t.get("disabled", ())))
        return Kernel(layer, target, Schedule.from_json(k["schedule"]), CFunction(self, k), k.get("loop_nest", ""),
                      source=f"loaded from {self.directory}")


_loaded: dict = {}   # library path -> SHA-256 of what this process dlopen()ed there


def _loadable_path(path: Path, sha: str) -> str:
    """`path`, or a copy named after its hash when this process already loaded another library from `path`:
    dlopen() matches by name and would hand back the old one (e.g. after exporting again into the same dir)."""
    key = str(path)
    if _loaded.setdefault(key, sha) == sha:
        return key
    copy = Path(tempfile.gettempdir()) / f"convsched-{sha[:16]}-{path.name}"
    if not copy.exists() or _sha256(copy) != sha:
        tmp = copy.with_name(copy.name + f".{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, copy)
    return str(copy)


def _layer_from(k: dict, directory):
    from . import layers
    cls = getattr(layers, k["layer"]["class"], None)
    if cls is None:
        raise ExportError(f"{directory}: kernel '{k['name']}' is a {k['layer']['class']}, a layer this convsched "
                          f"does not have")
    params = {p: tuple(v) if isinstance(v, list) else v for p, v in k["layer"]["params"].items()}
    try:
        layer = cls(**params)
    except (TypeError, ValueError) as e:
        raise ExportError(f"{directory}: kernel '{k['name']}': cannot rebuild {cls.__name__}: {e}") from None
    if layer.workload_key != k["workload_key"]:
        raise ExportError(f"{directory}: kernel '{k['name']}': the layer rebuilt from the manifest differs from the "
                          f"exported one ({layer.workload_key} vs {k['workload_key']})")
    specs = [(s.name, list(s.shape), s.dtype) for s in layer.input_specs() + layer.output_specs()]
    if specs != [(a["name"], a["shape"], a["dtype"]) for a in k["arguments"]]:
        raise ExportError(f"{directory}: kernel '{k['name']}': this convsched's {cls.__name__} takes other arguments "
                          f"than the exported kernel; export it again")
    return layer


def load(directory, name: str | None = None):
    """The Kernel in an exported directory (name= picks one of several), calling the library's C entry point.

    Raises ExportError for a missing, damaged or tampered directory and TargetError when this CPU lacks a
    feature the kernels were built for. Nothing is recompiled.
    """
    lib = Library(directory)
    names = lib.kernel_names
    if name is None:
        if len(names) != 1:
            raise ExportError(f"{directory} holds {len(names)} kernels ({', '.join(names)}): pass name=..., or use "
                              f"load_all()")
        name = names[0]
    return lib.kernel(name)


def load_all(directory) -> dict:
    """{kernel name: Kernel} for every kernel of an export directory."""
    lib = Library(directory)
    return {n: lib.kernel(n) for n in lib.kernel_names}


# --------------------------------------------------------------------------------------------------- CLI
def _value(s: str):
    """k=v values on the command line: ints, floats, True/False/None, 'a,b' pairs, else strings."""
    if "," in s:
        return tuple(_value(x) for x in s.split(","))
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return {"True": True, "true": True, "False": False, "false": False, "None": None, "none": None}.get(s, s)


def main(argv=None) -> int:
    """convsched export LAYER k=v ... --out DIR [--template T] [--knob k=v ...] [--target T] [--name N]"""
    import argparse

    import convsched as cs
    p = argparse.ArgumentParser(prog="convsched export", description="Compile a layer and export it as a shared "
                                "library + C header + manifest.")
    p.add_argument("layer", help="layer class (Conv2d) or kind (conv2d)")
    p.add_argument("params", nargs="*", help="layer parameters k=v (pairs as a,b)")
    p.add_argument("--out", required=True, help="export directory")
    p.add_argument("--name", help="library name (default: the directory's name)")
    p.add_argument("--template", help="schedule template, e.g. conv2d/nhwc_direct")
    p.add_argument("--knob", action="append", default=[], help="knob k=v (repeatable)")
    p.add_argument("--target", default="host", help="host (default) or a named target, e.g. znver4")
    a = p.parse_args(argv)
    classes = {c.lower(): getattr(cs.layers, c) for c in dir(cs.layers) if isinstance(getattr(cs.layers, c), type)}
    kinds = {getattr(c, "KIND", None): c for c in classes.values()}
    cls = classes.get(a.layer.lower()) or kinds.get(a.layer)
    if cls is None:
        p.error(f"unknown layer {a.layer!r}; known: {', '.join(sorted(k for k in kinds if k and k != 'layer'))}")

    def kv(items, what):
        out = {}
        for it in items:
            if "=" not in it:
                p.error(f"{what} {it!r} is not k=v")
            k, v = it.split("=", 1)
            out[k] = _value(v)
        return out

    layer = cls(**kv(a.params, "parameter"))
    k = cs.compile(layer, template=a.template, knobs=kv(a.knob, "knob") or None, target=a.target)
    d = export(k, a.out, name=a.name)
    m = json.loads((d / "manifest.json").read_text())
    print(f"exported {layer} -> {d}/{m['library']}, {m['header']}, manifest.json  (entry {m['kernels'][0]['entry']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
