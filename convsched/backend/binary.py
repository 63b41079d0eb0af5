"""The generated assembly of kernels: how tests check what a target's build uses (vpopcntq, zmm) on a host
that cannot run it. (The bit-GEMM microbenchmark behind the xor + popcount + add ceiling is in peaks.py.)

    from convsched.backend import binary as bb
    bb.assembly(kernel)                       # the x86 assembly TVM/LLVM generated for a compiled Kernel
    bb.layer_assembly(layer, "znver4")        # build for any target (nothing runs) -> its assembly
"""
from __future__ import annotations


def assembly(kernel) -> str:
    """The assembly of a compiled convsched Kernel (or backend.Built), e.g. to look for vpopcntq."""
    built = getattr(kernel, "_built", kernel)
    ex = getattr(built, "executable", None)
    if ex is None:
        raise ValueError("assembly(): this kernel has no compiled module here (it was built for CPU features "
                         "the host lacks, or loaded): use layer_assembly(layer, target)")
    return str(ex.mod.inspect_source("asm"))


def layer_assembly(layer, target, template: str | None = None, knobs: dict | None = None) -> str:
    """Build `layer` with a template for `target` (any named target: nothing is run) and return the
    assembly: how a test checks that a znver4 build uses vpopcntq on a host without it."""
    from .. import target as _target
    from ..schedule import template as T
    from . import build
    tgt = _target.get(target)
    tmpl = T.get_template(template or layer.default_template())
    _, live = tmpl.record(layer, tgt, tmpl.check_knobs(layer, tgt, knobs))
    return str(build(live, tgt).executable.mod.inspect_source("asm"))
