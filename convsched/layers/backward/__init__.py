"""Backward layers: gradients declared in TE like any forward layer, and Backward, the pass that strings them.

Get them from a forward layer: `bw = layer.backward()` (see base.py for Backward, GradStep and Arg, and
docs/backward.md for every layer's arguments).
"""
from .activation import PReLUGrad, ReLUGrad
from .base import Arg, Backward, GradStep, NestedLayer, args, step
from .conv import BiasGrad, Conv2dDataGrad, Conv2dWeightGrad
from .pool import GlobalAvgPool2dGrad, Pool2dArgmax, Pool2dGrad

__all__ = ["Arg", "Backward", "GradStep", "NestedLayer", "args", "step", "ReLUGrad", "PReLUGrad", "Pool2dArgmax", "Pool2dGrad",
           "GlobalAvgPool2dGrad",
           "Conv2dDataGrad", "Conv2dWeightGrad", "BiasGrad"]
