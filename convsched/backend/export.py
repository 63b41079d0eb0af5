"""The TVM part of exporting kernels: several scheduled functions -> one object file of LLVM machine code.

Each function gets its own name (`global_symbol`); TVM emits it as `__tvm_ffi_<name>` with the safe-call ABI
`int f(void* self, const TVMFFIAny* args, int32_t nargs, TVMFFIAny* ret)`. The object file is linked by
convsched/export.py with a plain-C shim (no libtvm at run time).

We do not use Executable.export_library: it links with TVM's own options and packs an import blob for TVM's
loader; we only need the object file, which LLVM has already compiled for the target CPU (so gcc, which
does not know -march=znver4, never compiles kernel code: it only compiles the generic shim and links).
"""
from __future__ import annotations

import tvm

from ..errors import BuildError
from . import _clean

try:
    import tvm_ffi
    TVM_FFI_VERSION = getattr(tvm_ffi, "__version__", "unknown")
except ImportError:  # pragma: no cover - tvm always brings tvm_ffi in 0.27
    TVM_FFI_VERSION = "unknown"

SAFE_CALL_PREFIX = "__tvm_ffi_"


def compile_object(functions, target, path: str) -> list[str]:
    """Compile [(symbol, LiveSchedule)] for `target` (a convsched Target) into one object file at `path`.

    Returns the entry symbols the object defines, in order (`__tvm_ffi_<symbol>`).
    """
    funcs = {}
    for symbol, live in functions:
        if symbol in funcs:
            raise BuildError(f"two functions named '{symbol}' in one library")
        funcs[symbol] = live.sch.mod["main"].with_attr("global_symbol", symbol)
    try:
        ex = tvm.compile(tvm.IRModule(funcs), target=tvm.target.Target(target.to_tvm()))
        module = ex.mod
        missing = [s for s in funcs if not module.implements_function(s, query_imports=False)]
        if missing:
            raise BuildError(f"the compiled module lacks the functions {missing}")
        module.write_to_file(path)
    except BuildError:
        raise
    except Exception as e:
        raise BuildError(f"TVM could not compile the functions for export: {_clean(e)}") from None
    return [SAFE_CALL_PREFIX + s for s in funcs]
