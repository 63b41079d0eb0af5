"""The generated assembly of compiled functions: how tests check what a target's build uses (vpopcntq, zmm) on a
host that cannot run it. (The bit-GEMM microbenchmark behind the xor + popcount + add ceiling is in peaks.py.)

    from convsched.backend import binary as bb
    bb.assembly(built)                        # the x86 assembly TVM/LLVM generated for a compiled function

(Kernel.assembly() and convsched.kernel.layer_assembly(layer, "znver4") build on assembly().)
"""
from __future__ import annotations


def assembly(built) -> str:
    """The assembly of a compiled function (a Built, or anything holding its `executable`), e.g. to look for
    vpopcntq."""
    ex = getattr(built, "executable", None)
    if ex is None:
        raise ValueError("assembly(): no compiled module here (a kernel loaded from an export directory runs "
                         "the library's machine code): compile the layer for the target instead")
    return str(ex.mod.inspect_source("asm"))
