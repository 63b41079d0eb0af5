"""The `s` object a template's schedule() receives: it records steps and applies each one at once.

Applying while recording means every error (an unknown axis, a split by zero, TVM refusing a primitive)
surfaces at the template line that asked for it, and axis names created by earlier steps are real.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ScheduleError
from . import steps as S

_HERE = str(Path(__file__).resolve().parent)


def _caller_loc() -> S.Loc | None:
    """File and line of the innermost frame outside this package: the template line being run."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not str(Path(fn).resolve()).startswith(_HERE):
            return S.Loc(fn, f.f_lineno)
        f = f.f_back
    return None


class Stage:
    """A handle on one stage; every method records one step. Axis arguments are names (strings)."""

    def __init__(self, builder: "ScheduleBuilder", name: str):
        self._b, self.name = builder, name

    def __repr__(self):
        return f"Stage({self.name!r})"

    @property
    def axes(self) -> list:
        """Names of the loops around this stage now, outermost first."""
        return self._b.live.axis_names(self.name)

    def _add(self, step):
        self._b.add(step)

    def split(self, axis: str, factor=None, *, factors=None, names=None, tail: str = "guard"):
        """split("co", 16) -> ("co_o", "co_i"); split("co", factors=[None, 4, 8]) -> co_0, co_1, co_2.
        tail: "guard", "cut" or "shrink", what happens when the factors do not divide the extent (steps.TAILS)."""
        if factors is None:
            if factor is None:
                raise ScheduleError("split needs a factor", stage=self.name, axis=axis, **_loc_kw())
            factors = (None, factor)
        factors = tuple(factors)
        if tail not in S.TAILS:
            raise ScheduleError(f"unknown tail policy {tail!r}; policies are {', '.join(S.TAILS)}",
                                stage=self.name, axis=axis, **_loc_kw())
        if names is None:
            names = (f"{axis}_o", f"{axis}_i") if len(factors) == 2 else tuple(f"{axis}_{i}" for i in range(len(factors)))
        self._add(S.Split(self.name, axis, factors, tuple(names), tail=tail, loc=_caller_loc()))
        return tuple(names)

    def extent(self, axis: str) -> int | None:
        """The trip count of loop `axis` now (None if it is not a constant)."""
        return self._b.live.extent(self.name, axis)

    def tile(self, x: str, y: str, fx: int, fy: int, names=None):
        """Halide's tile: -> (x_o, y_o, x_i, y_i), in that loop order."""
        names = tuple(names or (f"{x}_o", f"{y}_o", f"{x}_i", f"{y}_i"))
        self._add(S.Tile(self.name, x, y, fx, fy, names, loc=_caller_loc()))
        return names

    def reorder(self, *axes):
        self._add(S.Reorder(self.name, tuple(axes), loc=_caller_loc()))
        return self

    def fuse(self, *axes, name=None):
        name = name or "_".join(axes)
        self._add(S.Fuse(self.name, tuple(axes), name, loc=_caller_loc()))
        return name

    def vectorize(self, axis):
        self._add(S.Vectorize(self.name, axis, loc=_caller_loc()))
        return self

    def unroll(self, axis):
        self._add(S.Unroll(self.name, axis, loc=_caller_loc()))
        return self

    def parallel(self, axis):
        self._add(S.Parallel(self.name, axis, loc=_caller_loc()))
        return self

    def annotate(self, axis, key, value):
        self._add(S.Annotate(self.name, axis, key, int(value), loc=_caller_loc()))
        return self

    def compute_at(self, target, axis):
        self._add(S.ComputeAt(self.name, _stage_name(target), axis, loc=_caller_loc()))
        return self

    def reverse_compute_at(self, target, axis):
        self._add(S.ReverseComputeAt(self.name, _stage_name(target), axis, loc=_caller_loc()))
        return self

    def compute_inline(self):
        self._add(S.ComputeInline(self.name, loc=_caller_loc()))

    def reverse_compute_inline(self):
        self._add(S.ReverseComputeInline(self.name, loc=_caller_loc()))

    def cache_write(self, scope="global", name=None) -> "Stage":
        name = name or f"{self.name}_out"
        self._add(S.CacheWrite(self.name, scope, name, loc=_caller_loc()))
        return Stage(self._b, name)

    def cache_read(self, buffer: str, scope="global", name=None) -> "Stage":
        name = name or f"{buffer}_{self.name}_cache"
        self._add(S.CacheRead(self.name, buffer, scope, name, loc=_caller_loc()))
        return Stage(self._b, name)

    def decompose_reduction(self, axis, name=None):
        name = name or f"{self.name}_init"
        self._add(S.DecomposeReduction(self.name, axis, name, loc=_caller_loc()))
        return Stage(self._b, name)


def _stage_name(x) -> str:
    return x.name if isinstance(x, Stage) else x


def _loc_kw() -> dict:
    loc = _caller_loc()
    return {"file": loc.file, "line": loc.line} if loc else {}


class ScheduleBuilder:
    """Passed to schedule(s, layer, **knobs) as `s`: s["conv"] is a Stage; s.target is the Target."""

    def __init__(self, live, layer, target, template: str = ""):
        self.live, self.layer, self.target, self.template = live, layer, target, template
        self.steps: list = []

    def __getitem__(self, stage: str) -> Stage:
        if stage not in self.live.blocks:
            raise ScheduleError(f"no stage '{stage}'; stages of {type(self.layer).__name__} are: "
                                f"{', '.join(self.live.blocks)}", stage=stage, template=self.template,
                                **_loc_kw())
        return Stage(self, stage)

    def __contains__(self, stage: str) -> bool:
        return stage in self.live.blocks

    @property
    def stages(self) -> list:
        return list(self.live.blocks)

    def add(self, step):
        self.live.apply(step)
        self.steps.append(step)
