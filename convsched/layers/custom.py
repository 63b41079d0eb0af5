"""Custom layers: your TE compute + a numpy reference + schedule files, and convsched does the rest.

    from dataclasses import dataclass
    from typing import ClassVar
    from convsched.layers.custom import CustomLayer, TensorSpec

    @dataclass(frozen=True)
    class Scale(CustomLayer):
        '''y = x * factor.  Stages: "scale" (axes n, h, w, c).'''    # document stage and axis names
        n: int = 1; h: int = 8; w: int = 8; c: int = 16; factor: float = 2.0   # parameters = dataclass fields
        KIND: ClassVar[str] = "scale"                    # templates live in <TEMPLATES>/scale/*.py
        TEMPLATES: ClassVar[str] = "my_schedules"        # a directory (relative to the defining file or absolute)

        def input_specs(self):
            return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

        def compute(self, te, expr, x):                  # TE only: te.compute names are the stage names
            return te.compute(x.shape, lambda n, h, w, c: x[n, h, w, c] * self.factor, name="scale")

        def reference(self, x):
            return (x * self.factor).astype("float32")

    k = cs.compile(Scale(h=32, w=32))                    # first template of "scale", or DEFAULT_TEMPLATE

What CustomLayer fills in: output_specs() from the TE output's shape and dtype (the declaration runs once per
layer: `self.cached(name, fn)` keeps what a layer derives from its fields, e.g. constant tensors its
prepare_inputs() adds), declare() (placeholders from input_specs(), then compute(); `algorithm` is passed on
when compute takes it), ops() (output elements unless you say otherwise) and default_template()
(DEFAULT_TEMPLATE, else the first file of <TEMPLATES>/<KIND>/).
The template search finds TEMPLATES through the layer registry as soon as the class is defined. Everything
else is an ordinary Layer: tests, tuning, graphs and export work the same way as for the shipped layers.

Inside a fused kernel (convsched.graph) a custom layer's stages are renamed "<member>_<stage>": compute() is
handed a `te` whose compute() and placeholder() add that prefix, so the same compute() serves both.

Gradients (the backward hook): declare each gradient as a CustomGrad, a custom layer whose one parameter is its
forward layer, and list them in GRADIENTS; layer.backward() then returns the Backward pass (see
convsched/layers/backward/base.py and docs/backward.md):

    @dataclass(frozen=True)
    class ScaleGrad(CustomGrad):
        '''dx = dy * factor.  Stages: "dx" (axes n, h, w, c).'''
        KIND: ClassVar[str] = "scale_grad"               # its own templates: <TEMPLATES>/scale_grad/*.py
        TEMPLATES: ClassVar[str] = "my_schedules"
        ARGS: ClassVar[tuple] = ("grad:y",)              # its arguments: "input:<name>" (a forward input),
                                                         # "saved:<name>" (a forward output), "grad:<name>" (dL/d<name>)
        WRT: ClassVar[tuple] = ("x",)                    # its outputs are the gradients of these forward inputs

        def compute(self, te, expr, dy):
            return te.compute(dy.shape, lambda n, h, w, c: dy[n, h, w, c] * self.forward.factor, name="dx")

        def reference(self, dy):
            return (dy * self.forward.factor).astype(dy.dtype)

    Scale.GRADIENTS = (ScaleGrad,)                       # or GRADIENTS: ClassVar[tuple] = (...) in Scale itself
    bw = Scale(h=32, w=32).backward()                    # forward: Scale(...) -> y;  dx = ScaleGrad(...)(grad dy)

A layer whose backward needs values the plain forward does not return (positions it sampled, an argmax)
overrides training_forward() to return the layer to run forward in training, whose extra outputs are then
"saved:<name>" arguments. Argument names in a gradient's input_specs(): inputs and saved values keep their
names, the gradient of output y is "dy". window_of() (candidate windows of an input position) and out_dtype()
(float64 references for gradient checks) are here for gradient declarations.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..backend import expr, te
from .backward.base import Backward, NestedLayer, args, out_dtype, step, window_of
from .base import Declaration, Layer, TensorSpec

__all__ = ["CustomLayer", "CustomGrad", "TensorSpec", "window_of", "out_dtype"]


class _PrefixedTE:
    """The `te` module, with the names of the stages and placeholders it creates prefixed."""

    def __init__(self, prefix: str):
        self._prefix = prefix

    def compute(self, shape, fcompute, name="compute", *args, **kwargs):
        return te.compute(shape, fcompute, self._prefix + name, *args, **kwargs)

    def placeholder(self, shape, dtype="float32", name="placeholder"):
        return te.placeholder(shape, dtype, self._prefix + name)

    def __getattr__(self, attr):
        return getattr(te, attr)


@dataclass(frozen=True)
class CustomLayer(Layer):
    KIND: ClassVar[str] = "custom"
    TEMPLATES: ClassVar[str | None] = None          # template directory (laid out as <KIND>/<name>.py)
    DEFAULT_TEMPLATE: ClassVar[str | None] = None   # "<KIND>/<name>"; else the first one found
    OUTPUT_NAMES: ClassVar[tuple] = ("y",)
    GRADIENTS: ClassVar[tuple] = ()                 # CustomGrad subclasses: what backward() returns

    # -- to provide
    def compute(self, te, expr, *inputs):
        """TE stages from the input placeholders; return the output tensor (or a list of them)."""
        raise NotImplementedError(f"{type(self).__name__} must define compute(self, te, expr, *inputs)")

    # -- filled in
    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        args, fresh = self.arguments(inputs, prefix)
        kw = {"algorithm": algorithm} if "algorithm" in inspect.signature(self.compute).parameters else {}
        if algorithm != "direct" and not kw:
            raise ValueError(f"{type(self).__name__}.compute takes no algorithm argument")
        outs = self.compute(_PrefixedTE(prefix) if prefix else te, expr, *args.values(), **kw)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return Declaration(fresh, outs)

    def nonfinite_inputs(self, seed: int = 0):
        """None: the tuner checks a custom layer's kernels on inf/NaN inputs only if the layer says what
        reference() makes of them, by returning such inputs here (Layer.nonfinite_inputs plants some)."""
        return None

    def output_specs(self):
        return list(self.cached("output_specs", self._output_specs))     # declare() runs once per layer

    def _output_specs(self) -> tuple:
        decl = self.declare()
        names = list(self.OUTPUT_NAMES) + [f"y{i}" for i in range(len(self.OUTPUT_NAMES), len(decl.outputs))]
        return tuple(TensorSpec(nm, tuple(int(d) for d in t.shape), str(t.dtype))
                     for nm, t in zip(names, decl.outputs))

    def ops(self) -> int:
        return int(sum(np.prod(s.shape) for s in self.output_specs()))

    def default_template(self) -> str:
        if self.DEFAULT_TEMPLATE:
            return self.DEFAULT_TEMPLATE
        d = self.template_dir()
        names = sorted(p.stem for p in (d / self.KIND).glob("*.py") if not p.name.startswith("_")) if d else []
        if not names:
            raise LookupError(f"{type(self).__name__}: no templates for kind '{self.KIND}' (TEMPLATES="
                              f"{self.TEMPLATES!r}); add <dir>/{self.KIND}/<name>.py")
        return f"{self.KIND}/{names[0]}"

    @classmethod
    def template_dir(cls) -> Path | None:
        """TEMPLATES as a path (relative ones from the file that defines the class), or None."""
        if cls.TEMPLATES is None:
            return None
        p = Path(cls.TEMPLATES)
        if not p.is_absolute():
            module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
            if module_file is None:
                return None
            p = Path(module_file).resolve().parent / p
        return p.resolve()

    # -- gradients
    def training_forward(self) -> Layer:
        """The layer to run forward when gradients will be taken (its outputs are the "saved:" values)."""
        return self

    def backward(self) -> Backward:
        """One step per class in GRADIENTS, in that order: outputs "d<wrt>", arguments from its ARGS."""
        if not self.GRADIENTS:
            raise NotImplementedError(f"{type(self).__name__} declares no gradients: list CustomGrad classes in "
                                      f"its GRADIENTS (see convsched/layers/custom.py)")
        steps = []
        for cls in self.GRADIENTS:
            g = cls(forward=self)
            steps.append(step(", ".join(g.OUTPUT_NAMES), g, *cls.ARGS, wrt=", ".join(cls.WRT)))
        return Backward(self.training_forward(), tuple(steps))


@dataclass(frozen=True)
class CustomGrad(NestedLayer, CustomLayer):
    """A gradient of a CustomLayer, itself a custom layer (TE compute, numpy reference, its own templates).

    Its one parameter is the forward layer (`self.forward`: read the geometry from it). ARGS lists its arguments
    in order as "source:name" (see the module docstring and layers/backward/base.py); input_specs() follows
    from them. WRT names the forward inputs its outputs are the gradients of, in output order (outputs are
    named "d" + that name)."""

    forward: Layer = None
    ARGS: ClassVar[tuple] = ("grad:y",)
    WRT: ClassVar[tuple] = ("x",)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.OUTPUT_NAMES = tuple("d" + w for w in cls.WRT)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.forward, CustomLayer):
            raise ValueError(f"{type(self).__name__}: forward must be a CustomLayer, got {self.forward!r}")

    def input_specs(self):
        fwd = self.forward.training_forward()
        pools = {"input": self.forward.input_specs(), "saved": fwd.output_specs(), "grad": fwd.output_specs()}
        specs = []
        for a in args(*self.ARGS):
            found = [sp for sp in pools.get(a.source, []) if sp.name == a.name]
            if not found:
                raise ValueError(f"{type(self).__name__}.ARGS: no {a.source} value named {a.name!r} in "
                                 f"{fwd if a.source != 'input' else self.forward}")
            sp = found[0]
            specs.append(TensorSpec("d" + sp.name, sp.shape, sp.dtype) if a.source == "grad" else sp)
        return specs
