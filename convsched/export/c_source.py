"""The C side of an exported library: the header (NAME.h) and the generated entry points, from a manifest.

The generated entries.c includes shim.c (this directory): the small runtime a TVM-generated kernel needs
(error messages, a CPUID feature check, a persistent thread pool, aligned workspaces) in plain C, so the
library needs nothing but libc and pthreads.
"""
from __future__ import annotations

import keyword
import math
import re
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..version import __version__

SHIM = Path(__file__).parent / "shim.c"

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
# Names a C program's headers may define as macros or types: never a parameter name in a generated header.
_C_RESERVED = set("""NULL EOF errno stdin stdout stderr assert offsetof size_t ptrdiff_t uintptr_t intptr_t
int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t FILE main""".split())


def c_name(s: str, what: str) -> str:
    if not _IDENT.match(s or "") or s in _C_KEYWORDS:
        raise ExportError(f"{what} {s!r} is not a C identifier (letters, digits, _; not starting with a digit)")
    return s


def arg_name(s: str) -> str:
    """A layer argument's name as a C parameter name in the header (documentation: the generated definitions
    name their parameters cs_arg0, cs_arg1, ..., so no argument name can clash with the code around it)."""
    s = re.sub(r"\W", "_", s)
    bad = s in _C_KEYWORDS or s in _C_RESERVED or keyword.iskeyword(s) or not _IDENT.match(s)
    return s + "_" if bad or s.startswith("cs_") else s


def arg_names(args: list) -> list[str]:
    """Distinct header parameter names for a kernel's arguments (arg_name, numbered where two would meet,
    including in upper case, as the size macros spell them)."""
    out, seen = [], set()
    for i, a in enumerate(args):
        n = arg_name(a["name"])
        if n.upper() in seen:
            n = f"{n}_{i}"
        seen.add(n.upper())
        out.append(n)
    return out


def _c_string(s: str) -> str:
    """`s` as the inside of a C string literal (other bytes as 3-digit octal escapes, which end where they must)."""
    plain = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:;/()[]")
    return "".join(chr(b) if b in plain else f"\\{b:03o}" for b in s.encode())


def header(m: dict) -> str:
    """NAME.h: the plain C entry points of every kernel in manifest `m`, with their arguments documented."""
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
 * Threads: $CONVSCHED_NUM_THREADS, else $TVM_NUM_THREADS, else the CPUs this process may run on (a variable
 * that is set but not a positive integer is an error of the first call); a persistent pool is started by the
 * first parallel kernel. An output buffer must not share memory with another argument (-1 if it does).
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
/* Any kernel by name, with DLPack tensors. Every tensor is checked before the kernel reads it: not NULL, its
 * ndim, shape (not NULL), dtype, device (the CPU), strides (NULL or C-contiguous), byte_offset 0, data not NULL
 * and 64-byte aligned, outputs sharing no memory; a mismatch is -1 with the reason in {lib}_last_error(). */
int {lib}_call(const char* kernel, DLTensor* const* args, int nargs);
"""]
    for k in m["kernels"]:
        K = k["name"].upper()
        lines = [f"/* ---- kernel \"{k['name']}\": {k['layer']['text']}",
                 f" * schedule {k['schedule_hash']}: {k['schedule_text'].splitlines()[0].lstrip('# ')}",
                 " * Arguments, in order:"]
        params = []
        names = arg_names(k["arguments"])
        w = max(len(a["name"]) for a in k["arguments"])
        for a, cname in zip(k["arguments"], names):
            ctype = DTYPES[a["dtype"]][0]
            dims = "".join(f"[{d}]" for d in a["shape"])
            lay = f"  layout {a['layout']}" if a.get("layout") else ""
            lines.append(f" *   {a['name']:<{w}}  {a['role']:<6}  {a['dtype']}{dims}  "
                         f"({int(np.prod(a['shape'], dtype=np.int64))} elements){lay}")
            params.append(f"{'const ' if a['role'] == 'input' else ''}{ctype}* {cname}")
        doc = [ln.rstrip() for ln in k["layer"]["doc"].splitlines()]
        if doc:
            lines.append(" * The layer:")
            lines += [f" *   {ln}".replace("*/", "* /") if ln.strip() else " *" for ln in doc]
        lines.append(" */")
        out.append("\n".join(lines))
        out.append(f"int {k['entry']}({', '.join(params)});")
        out.append(f"#define {L}_{K}_NARGS {len(k['arguments'])}")
        for a, cname in zip(k["arguments"], names):
            A = cname.upper()
            out.append(f"#define {L}_{K}_{A}_NDIM {len(a['shape'])}")
            out.append(f"#define {L}_{K}_{A}_SHAPE {{{', '.join(str(d) for d in a['shape'])}}}")
            out.append(f"#define {L}_{K}_{A}_SIZE {int(np.prod(a['shape'], dtype=np.int64))}")
        out.append("")
    out.append("#ifdef __cplusplus\n}  /* extern \"C\" */\n#endif\n#endif\n")
    return "\n".join(out)


def entries_c(m: dict, digest: str, target) -> str:
    """The generated C of the library: the shim, the required-feature table and one entry point per kernel."""
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
  return rc;
}}

static int cs_ensure_ready(void) {{
  if (atomic_load_explicit(&cs_ready, memory_order_acquire) == 1) return 0;
  cs_error[0] = 0;
  if ({lib}_check_cpu() != 0 || cs_check_thread_env() != 0) return -1;   /* sets this thread's message */
  atomic_store_explicit(&cs_ready, 1, memory_order_release);
  return 0;
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
        specs = ",\n  ".join(
            f'{{"{_c_string(a["name"])}", {len(a["shape"])}, cs_shape_{k["name"]}_{i}, {DTYPES[a["dtype"]][1]}, '
            f'{DTYPES[a["dtype"]][2]}, {math.prod(a["shape"]) * DTYPES[a["dtype"]][2] // 8}u, '
            f'{int(a["role"] == "output")}}}' for i, a in enumerate(args))
        out.append(f"static const cs_argspec cs_args_{k['name']}[{len(args)}] = {{\n  {specs}}};")
        # Parameters and locals carry the reserved cs_ prefix: an argument named a, t or ret (Add's are a, b)
        # must not meet the code's own names; the header keeps the arguments' names for the reader.
        params = ", ".join(f"{'const ' if a['role'] == 'input' else ''}{DTYPES[a['dtype']][0]}* cs_arg{i}"
                           for i, a in enumerate(args))
        body = [f"CS_EXPORT int {k['entry']}({params}) {{",
                "  if (cs_ensure_ready()) return -1;"]
        for i, a in enumerate(args):
            body.append(f'  if (cs_check_pointer("{k["entry"]}", "{_c_string(a["name"])}", cs_arg{i})) return -1;')
        body.append(f"  const void* cs_p[{len(args)}] = {{{', '.join(f'cs_arg{i}' for i in range(len(args)))}}};")
        body.append(f'  if (cs_check_overlap("{k["entry"]}", cs_args_{k["name"]}, cs_p, {len(args)})) return -1;')
        body.append(f"  cs_DLTensor cs_t[{len(args)}];\n  cs_Any cs_a[{len(args)}];")
        for i, a in enumerate(args):
            _, code, bits = DTYPES[a["dtype"]]
            body.append(f"  cs_a[{i}] = cs_tensor_arg(&cs_t[{i}], (void*)cs_arg{i}, {len(a['shape'])}, "
                        f"cs_shape_{k['name']}_{i}, {code}, {bits});")
        body.append("  cs_Any cs_ret;\n  cs_ret.type_index = CS_FFI_NONE;\n  cs_ret.zero_padding = 0;\n"
                    "  cs_ret.v_int64 = 0;")
        body.append(f"  return {sym}(NULL, cs_a, {len(args)}, &cs_ret) == 0 ? 0 : -1;\n}}\n")
        out.append("\n".join(body))
        table.append(f'  {{"{k["name"]}", {sym}, {len(args)}, cs_args_{k["name"]}}},')
    out.append(f"""static const struct {{
  const char* name; cs_safe_call fn; int nargs; const cs_argspec* args;
}} cs_kernels[] = {{
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
    if (nargs > 64 || !args) {{ cs_set_error("{lib}_call: the argument array is NULL"); return -1; }}
    const void* p[64];
    for (int i = 0; i < nargs; i++) {{
      if (cs_check_tensor("{lib}_call", kernel, i, (const cs_DLTensor*)args[i], &cs_kernels[k].args[i])) return -1;
      p[i] = args[i]->data;
    }}
    if (cs_check_overlap("{lib}_call", cs_kernels[k].args, p, nargs)) return -1;
    for (int i = 0; i < nargs; i++) {{
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
