"""LLVM's answers about CPUs, for convsched.target (which may not import TVM: backend sits above it).

Importing this module registers it as target's probe (target.register_probe): the host's CPU name and CPUID
features as LLVM reads them, LLVM's feature table of any CPU name, and whether LLVM knows a -mcpu at all.
"""
from __future__ import annotations

import sys
from functools import lru_cache

from .. import target as _target
import tvm


def host_cpu_name() -> str:
    return str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())


def host_cpu_features() -> dict:
    """{feature: bool} read from CPUID by LLVM: the truth about this CPU, whatever its name implies."""
    return {str(k): bool(v) for k, v in tvm.get_global_func("tvm.codegen.llvm.GetHostCPUFeatures")().items()}


def _llvm_target(mcpu: str, triple: str):
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "mtriple": triple})


def cpu_features(mcpu: str, triple: str) -> set:
    """The features LLVM's CPU table gives `mcpu`."""
    with _llvm_target(mcpu, triple):
        return {str(k) for k in tvm.target.codegen.llvm_get_cpu_features()}


@lru_cache(maxsize=None)
def cpu_names(triple: str) -> tuple:
    """Every CPU name LLVM accepts as -mcpu for `triple` (asked once per triple)."""
    return tuple(sorted(str(n) for n in tvm.target.codegen.llvm_get_cpu_archlist(_llvm_target("generic", triple))))


def is_valid_cpu(mcpu: str, triple: str) -> bool:
    """Whether LLVM knows `mcpu` for `triple` (an unknown name would silently compile for generic x86-64) and,
    for a 64-bit triple, whether it is a 64-bit CPU (LLVM aborted compiling x86_64 code for "pentium")."""
    if mcpu not in cpu_names(triple):
        return False
    return not triple.startswith("x86_64") or "64bit" in cpu_features(mcpu, triple)


_target.register_probe(sys.modules[__name__])
