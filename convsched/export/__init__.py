"""Exported kernels: a shared library, a C header and a JSON manifest that other programs load.

    k.export("out/conv56")                        # one kernel
    cs.export.export({"conv1": k1, "bconv": k2}, "out/net")   # several kernels, one library, distinct entries
    k2 = cs.load("out/conv56")                    # a Kernel again, without recompiling (calls the C entry)
    convsched export conv2d h=56 w=56 cin=64 cout=64 --out out/conv56

An export directory DIR named NAME (the directory's base name, or name=...) holds
    libNAME.so      the kernels (LLVM machine code for the target CPU) + a plain-C shim: error messages,
                    a CPU-feature check, a persistent thread pool, workspaces. Needs only libc and pthreads.
    NAME.h          one plain C entry point per kernel:  int NAME_<kernel>(const float* x, ..., float* y);
                    (0 = ok, -1 = error, message from NAME_last_error()), plus NAME_check_cpu(),
                    NAME_set_num_threads(n) and NAME_call(kernel, DLTensor* const* args, nargs).
    manifest.json   layer, parameters, argument shapes/dtypes/layouts, schedule, target, required CPU
                    features, versions, and the library's SHA-256 (so a tampered directory is refused).

The library checks the CPU before its first kernel runs: a kernel built for AVX-512 returns -1 with a message
on an AVX2 host instead of dying of an illegal instruction; loading raises TargetError for the same reason.
Test hook: CONVSCHED_HIDE_CPU_FEATURES="avx2,fma" makes the check treat those features as absent.

The package's jobs: write.py (compile, link, write), c_source.py (header and generated C), manifest.py
(what the manifest holds and its integrity checks), load.py (dlopen and call the entry points).
"""
from ..errors import ExportError
from .load import CFunction, Library, LoadedEntry
from .manifest import FORMAT, FORMAT_VERSION
from .write import export

__all__ = ["export", "ExportError", "Library", "CFunction", "LoadedEntry", "FORMAT", "FORMAT_VERSION"]
