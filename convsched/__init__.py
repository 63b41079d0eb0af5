"""convsched: a scheduling DSL, autotuner and compiler for CPU neural-net layers, on Apache TVM.

    import convsched as cs
    layer = cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)
    k = cs.compile(layer)                 # best tuning record, else the layer's default template
    y = k(x, w)                           # numpy in, numpy out
    print(k.schedule); print(k.benchmark())
"""
from importlib import import_module

from . import bits, layers, schedule, target
from .errors import BuildError, ConvschedError, KnobError, ScheduleError, TargetError
from .kernel import Kernel, Timing, aligned, aligned_empty, compile

__version__ = "0.1.0"


class _LazyCpuProbe:
    """convsched.target asks LLVM about CPUs through a probe that convsched.backend.cpu provides (target may
    not import the backend: it sits below it). Importing the backend imports TVM (~1 s), so the package root
    installs this stand-in, which imports convsched.backend.cpu on the first question (that import then
    registers the real module in its place)."""

    def __getattr__(self, name):
        from .backend import cpu
        return getattr(cpu, name)


if target._probe is None:
    target.register_probe(_LazyCpuProbe())

# Imported on first use: they pull in optional pieces (the tuner, exporting, graphs).
_LAZY = {
    "tune": ("convsched.tune", "tune"),          # cs.tune(layer, trials=...) -> best record
    "load": ("convsched.export", "load"),        # cs.load(dir) -> Kernel from an exported directory
    "graph": ("convsched.graph", None),          # cs.graph.Graph
}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        m = import_module(mod)
        return getattr(m, attr) if attr else m
    raise AttributeError(f"module 'convsched' has no attribute {name!r}")


__all__ = ["bits", "layers", "schedule", "target", "compile", "load", "tune", "graph", "Kernel", "Timing", "aligned", "aligned_empty",
           "ConvschedError", "ScheduleError", "KnobError", "TargetError", "BuildError", "__version__"]
