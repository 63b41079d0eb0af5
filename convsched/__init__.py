"""convsched: a scheduling DSL, autotuner and compiler for CPU neural-net layers, on Apache TVM.

    import convsched as cs
    layer = cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)
    k = cs.compile(layer)                 # best tuning record, else the layer's default template
    y = k(x, w)                           # numpy in, numpy out
    print(k.schedule); print(k.benchmark())

This module is the package's face: it re-exports, and nothing inside the package imports it.
"""
# First: target asks LLVM about CPUs through a probe that backend/cpu.py registers when imported (target sits
# below the backend and may not import it; nothing else imports backend.cpu).
from .backend import cpu as _llvm_cpu_probe  # noqa: F401  (isort: keep first)
from . import bits, export, graph, layers, records, schedule, target  # noqa: E402
from .errors import (BuildError, ConvschedError, ExportError, GraphError, KnobError,  # noqa: E402
                     ScheduleError, TargetError)
from .kernel import Kernel, Timing, aligned, aligned_empty, compile, compile_backward, load, load_all  # noqa: E402
from .tune import tune  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["bits", "layers", "schedule", "target", "graph", "export", "records", "compile", "compile_backward", "load",
           "load_all", "tune", "Kernel", "Timing", "aligned", "aligned_empty", "ConvschedError", "ScheduleError",
           "KnobError", "TargetError", "BuildError", "GraphError", "ExportError", "__version__"]
