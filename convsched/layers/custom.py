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
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..backend import expr, te
from .base import Declaration, Layer, TensorSpec

__all__ = ["CustomLayer", "TensorSpec"]


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
