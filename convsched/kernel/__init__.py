"""Kernels: compiled layers. compile() turns a layer + a schedule + a target into one; load() reads one back
from an export directory.

    arrays.py     aligned, checked numpy arguments        timing.py   Timing, the one report of speed
    kernel.py     Kernel (one compiled function)          bound.py    Kernel.bind: some arguments fixed once
    compiler.py   compile(): schedule choice, records     parts.py    building compiled functions
    loss_delta.py LossDeltaKernel (a multi-part kernel)   loaded.py   load(), load_all()
    backprop.py   compile_backward(): a layer's training forward and gradient steps as kernels
"""
from .arrays import ALIGN, aligned, aligned_empty, as_kernel_arg, is_aligned
from .backprop import CompiledBackward, compile_backward
from .bound import BoundKernel
from .compiler import MULTI_PART, compile, layer_assembly, register_multi_part
from .kernel import Kernel, RefusedBuild
from .loaded import load, load_all
from .loss_delta import LossDeltaKernel
from .parts import MultiPart, Recipe
from .timing import Timing

__all__ = ["Kernel", "Timing", "BoundKernel", "LossDeltaKernel", "RefusedBuild", "compile", "load", "load_all",
           "compile_backward", "CompiledBackward",
           "layer_assembly", "register_multi_part", "MULTI_PART", "MultiPart", "Recipe", "aligned", "aligned_empty",
           "as_kernel_arg", "is_aligned", "ALIGN"]
