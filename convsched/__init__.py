"""convsched: a scheduling DSL, autotuner and compiler for CPU neural-net layers, on Apache TVM.

    import convsched as cs
    layer = cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)
    k = cs.compile(layer)                 # best tuning record, else the layer's default template
    y = k(x, w)                           # numpy in, numpy out
    print(k.schedule); print(k.benchmark())

This module is the package's face: it re-exports, and nothing inside the package imports it.
"""
from . import bits, export, graph, layers, records, schedule, target
from .errors import BuildError, ConvschedError, ExportError, GraphError, KnobError, ScheduleError, TargetError
from .kernel import Kernel, Timing, aligned, aligned_empty, compile, compile_backward, load, load_all
from .tune import tune
from .version import __version__

__all__ = ["bits", "layers", "schedule", "target", "graph", "export", "records", "compile", "compile_backward", "load",
           "load_all", "tune", "Kernel", "Timing", "aligned", "aligned_empty", "ConvschedError", "ScheduleError",
           "KnobError", "TargetError", "BuildError", "GraphError", "ExportError", "__version__"]
