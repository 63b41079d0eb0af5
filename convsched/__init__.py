"""convsched: a scheduling DSL, autotuner and compiler for CPU neural-net layers, on Apache TVM.

    import convsched as cs
    layer = cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)
    k = cs.compile(layer)                 # best tuning record, else the layer's default template
    y = k(x, w)                           # numpy in, numpy out
    print(k.schedule); print(k.benchmark())
"""
from . import layers, schedule, target
from .errors import BuildError, ConvschedError, KnobError, ScheduleError, TargetError
from .kernel import Kernel, Timing, compile

__version__ = "0.1.0"

__all__ = ["layers", "schedule", "target", "compile", "Kernel", "Timing", "ConvschedError", "ScheduleError",
           "KnobError", "TargetError", "BuildError", "__version__"]
