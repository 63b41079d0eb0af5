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

What CustomLayer fills in: output_specs() from the TE output's shape and dtype, declare() (placeholders from
input_specs(), then compute(); `algorithm` is passed on when compute takes it), ops() (output elements unless
you say otherwise), default_template(), and the registration of TEMPLATES with cs.schedule.add_template_dir
the first time the class is used. Everything else is an ordinary Layer: tests, tuning, graphs and export work
the same way as for the shipped layers.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .base import Declaration, Layer, TensorSpec

__all__ = ["CustomLayer", "TensorSpec"]

_registered: set = set()


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
    def declare(self, algorithm: str = "direct") -> Declaration:
        from ..backend import expr, te
        xs = [te.placeholder(tuple(s.shape), s.dtype, name=s.name) for s in self.input_specs()]
        kw = {"algorithm": algorithm} if "algorithm" in inspect.signature(self.compute).parameters else {}
        if algorithm != "direct" and not kw:
            raise ValueError(f"{type(self).__name__}.compute takes no algorithm argument")
        outs = self.compute(te, expr, *xs, **kw)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return Declaration(xs, outs)

    def output_specs(self):
        decl = self.declare()
        names = list(self.OUTPUT_NAMES) + [f"y{i}" for i in range(len(self.OUTPUT_NAMES), len(decl.outputs))]
        return [TensorSpec(nm, tuple(int(d) for d in t.shape), str(t.dtype)) for nm, t in zip(names, decl.outputs)]

    def ops(self) -> int:
        import numpy as np
        return int(sum(np.prod(s.shape) for s in self.output_specs()))

    def default_template(self) -> str:
        from ..schedule import list_templates
        self.register_templates()
        if self.DEFAULT_TEMPLATE:
            return self.DEFAULT_TEMPLATE
        names = list_templates(self.KIND)
        if not names:
            raise LookupError(f"{type(self).__name__}: no templates for kind '{self.KIND}' (TEMPLATES="
                              f"{self.TEMPLATES!r}); add <dir>/{self.KIND}/<name>.py")
        return names[0]

    @classmethod
    def template_dir(cls) -> Path | None:
        if cls.TEMPLATES is None:
            return None
        p = Path(cls.TEMPLATES)
        if not p.is_absolute():
            p = Path(sys.modules[cls.__module__].__file__).resolve().parent / p
        return p

    @classmethod
    def register_templates(cls) -> None:
        """Make this layer's template directory known to cs.schedule (once)."""
        from ..schedule import add_template_dir
        d = cls.template_dir()
        if d is not None and d not in _registered:
            add_template_dir(d)
            _registered.add(d)

    def __post_init__(self):
        type(self).register_templates()
