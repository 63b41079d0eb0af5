"""The schedule vocabulary: frozen, hashable steps, and Schedule = a tuple of them.

A step names stages and axes by string (the names a layer documents, or the names earlier steps created),
never by TVM object, so a schedule is plain data: printable as Halide-like text, comparable, hashable and
serialisable to JSON. backend.py gives each step its meaning on a TVM s_tir.Schedule.

`loc` (template file and line that recorded the step) is carried for error messages only: it takes no part
in equality, hashing or JSON.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import ClassVar

from ..errors import ScheduleError

STEP_TYPES: dict[str, type] = {}


@dataclass(frozen=True)
class Loc:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _step(op: str):
    def register(cls):
        cls.op = op
        STEP_TYPES[op] = cls
        return cls
    return register


@dataclass(frozen=True)
class Step:
    stage: str
    loc: Loc | None = field(default=None, compare=False, hash=False, repr=False, kw_only=True)
    op: ClassVar[str] = "step"

    def args_text(self) -> str:
        return ""

    def text(self) -> str:
        return f"{self.stage}.{self.op}({self.args_text()})"

    # fields left out of the JSON while at these defaults (added after schedules were first recorded: the
    # schedules in tuning logs, and their hashes, stay as they were)
    _QUIET_DEFAULTS: ClassVar[dict] = {}

    def to_json(self) -> dict:
        d = {"op": self.op}
        for f in fields(self):
            if f.name != "loc":
                v = getattr(self, f.name)
                if f.name in self._QUIET_DEFAULTS and v == self._QUIET_DEFAULTS[f.name]:
                    continue
                d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @staticmethod
    def from_json(d: dict) -> "Step":
        if not isinstance(d, dict):
            raise ScheduleError(f"a serialised schedule step is an object, got {d!r}")
        d = dict(d)
        op = d.pop("op", None)
        if not isinstance(op, str) or op not in STEP_TYPES:
            raise ScheduleError(f"unknown schedule step {op!r} in serialised schedule")
        cls = STEP_TYPES[op]
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        types = {f.name: f.type for f in fields(cls) if f.name != "loc"}
        for k, v in kw.items():
            if k in types and not _json_field_ok(k, types[k], v):
                raise ScheduleError(f"malformed '{op}' step {d}: {k} is {v!r}, not {_JSON_FIELD_KIND[types[k]]}")
        try:
            return cls(**kw)
        except TypeError as e:
            raise ScheduleError(f"malformed '{op}' step {d}: {e}") from None


_JSON_FIELD_KIND = {"str": "a string", "int": "an integer", "tuple": "a list"}


def _json_field_ok(name: str, annotation: str, v) -> bool:
    """A step field read from JSON has its declared kind: names are strings, split factors integers or null."""
    if annotation == "str":
        return isinstance(v, str)
    if annotation == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if annotation == "tuple":
        if not isinstance(v, tuple):
            return False
        if name == "factors":
            return all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in v)
        return all(isinstance(x, str) for x in v)
    return True


def _names(xs) -> str:
    return ", ".join(str(x) for x in xs)


# What a split does when the factors do not divide the loop's extent (Exo's divide_loop(tail=...) and Halide's
# TailStrategy are the models):
#   "guard"   one loop nest, every iteration past the extent skipped by a test (TVM's block predicate; Halide's
#             GuardWithIf). Correct for any split, but a vectorized loop under the test is scalarized by TVM.
#   "cut"     the whole tiles run with no test and the partial last tile runs in a loop of its own (Exo's "cut";
#             TVM's LoopPartition pass splits the outer loop at the last whole tile): a vector loop stays
#             vector code, and LLVM compiles the short tail with partial vectors.
#   "shrink"  the innermost factor shrinks to the largest divisor of the extent not above it (then the next,
#             for a multi-level split), so there is no tail at all (Exo's "perfect", found rather than required).
# (Halide's Predicate -- masked vector loads and stores -- has no lowering for fixed-width x86 vectors in TVM 0.27:
# tirx.enable_buffer_level_predication changed nothing in the generated code; "cut" gets its speed without it.)
TAILS = ("guard", "cut", "shrink")


@_step("split")
@dataclass(frozen=True)
class Split(Step):
    """Split `axis` into len(factors) loops (None: the extent that fits), named `names`, outermost first;
    `tail` says what happens when the factors do not divide the extent (see TAILS)."""
    axis: str = ""
    factors: tuple = ()
    names: tuple = ()
    tail: str = "guard"

    _QUIET_DEFAULTS: ClassVar[dict] = {"tail": "guard"}

    def __post_init__(self):
        if self.tail not in TAILS:
            raise ScheduleError(f"unknown tail policy {self.tail!r}; policies are {', '.join(TAILS)}",
                                stage=self.stage, axis=self.axis)

    def args_text(self):
        t = "" if self.tail == "guard" else f", tail={self.tail}"
        return (f"{self.axis}, [{_names('_' if f is None else f for f in self.factors)}]{t}) -> "
                f"({_names(self.names)}")


@_step("tile")
@dataclass(frozen=True)
class Tile(Step):
    """Split two axes by (fx, fy) and order them x_o, y_o, x_i, y_i (Halide's tile)."""
    x: str = ""
    y: str = ""
    fx: int = 1
    fy: int = 1
    names: tuple = ()

    def args_text(self):
        return f"{self.x}, {self.y}, {self.fx}, {self.fy}) -> ({_names(self.names)}"


@_step("reorder")
@dataclass(frozen=True)
class Reorder(Step):
    axes: tuple = ()

    def args_text(self):
        return _names(self.axes)


@_step("fuse")
@dataclass(frozen=True)
class Fuse(Step):
    axes: tuple = ()
    name: str = ""

    def args_text(self):
        return f"{_names(self.axes)}) -> ({self.name}"


@dataclass(frozen=True)
class _AxisStep(Step):
    axis: str = ""

    def args_text(self):
        return self.axis


@_step("vectorize")
@dataclass(frozen=True)
class Vectorize(_AxisStep):
    pass


@_step("unroll")
@dataclass(frozen=True)
class Unroll(_AxisStep):
    pass


@_step("parallel")
@dataclass(frozen=True)
class Parallel(_AxisStep):
    pass


@_step("decompose_reduction")
@dataclass(frozen=True)
class DecomposeReduction(_AxisStep):
    """Split a reduction's init out of the loop nest, above `axis` (after vectorize/unroll/parallel)."""
    name: str = ""

    def args_text(self):
        return f"{self.axis}) -> ({self.name}"


@_step("compute_at")
@dataclass(frozen=True)
class ComputeAt(Step):
    """Compute this (producer) stage inside `target`'s loop `axis`; only the region needed there."""
    target: str = ""
    axis: str = ""

    def args_text(self):
        return f"{self.target}, {self.axis}"


@_step("reverse_compute_at")
@dataclass(frozen=True)
class ReverseComputeAt(Step):
    """Compute this (consumer) stage inside its producer `target`'s loop `axis` (fused epilogue)."""
    target: str = ""
    axis: str = ""

    def args_text(self):
        return f"{self.target}, {self.axis}"


@_step("compute_inline")
@dataclass(frozen=True)
class ComputeInline(Step):
    pass


@_step("reverse_compute_inline")
@dataclass(frozen=True)
class ReverseComputeInline(Step):
    pass


@_step("cache_write")
@dataclass(frozen=True)
class CacheWrite(Step):
    """Compute into a scratch buffer; a new stage `name` copies it out (place it with reverse_compute_at)."""
    scope: str = "global"
    name: str = ""

    def args_text(self):
        return f"'{self.scope}') -> ({self.name}"


@_step("cache_read")
@dataclass(frozen=True)
class CacheRead(Step):
    """Copy input `buffer` of this stage into a scratch buffer through a new stage `name` (packing)."""
    buffer: str = ""
    scope: str = "global"
    name: str = ""

    def args_text(self):
        return f"{self.buffer}, '{self.scope}') -> ({self.name}"


@_step("annotate")
@dataclass(frozen=True)
class Annotate(Step):
    """A loop annotation, e.g. ("pragma_auto_unroll_max_step", 64)."""
    axis: str = ""
    key: str = ""
    value: int = 0

    def args_text(self):
        return f"{self.axis}, '{self.key}', {self.value}"


@dataclass(frozen=True)
class Schedule:
    """A recorded schedule: which template and knobs produced it, and its steps."""
    steps: tuple = ()
    template: str = ""
    knobs: tuple = ()          # sorted (name, value) pairs
    algorithm: str = "direct"  # which of the layer's declarations the steps apply to (template's ALGORITHM)

    @property
    def knob_dict(self) -> dict:
        return dict(self.knobs)

    def text(self) -> str:
        head = f"# template {self.template or '(none)'}"
        if self.algorithm != "direct":
            head += f"  algorithm: {self.algorithm}"
        if self.knobs:
            head += "  knobs: " + " ".join(f"{k}={v}" for k, v in self.knobs)
        return "\n".join([head] + [s.text() for s in self.steps])

    __str__ = text

    def to_json(self) -> dict:
        return {"template": self.template, "knobs": dict(self.knobs), "algorithm": self.algorithm,
                "steps": [s.to_json() for s in self.steps]}

    @staticmethod
    def from_json(d: "dict | str") -> "Schedule":
        """A Schedule from to_json()'s dict, or from that dict as JSON text; ScheduleError if malformed."""
        if isinstance(d, (str, bytes)):
            try:
                d = json.loads(d)
            except ValueError as e:
                raise ScheduleError(f"a serialised schedule is JSON text or a dict; this text is not JSON ({e})") \
                    from None
        if not isinstance(d, dict):
            raise ScheduleError(f"a serialised schedule is a dict (Schedule.to_json()), got {type(d).__name__}")
        steps, template = d.get("steps", []), d.get("template", "")
        knobs, algorithm = d.get("knobs", {}), d.get("algorithm", "direct")
        if not isinstance(steps, list):
            raise ScheduleError(f"a serialised schedule's steps are a list, got {type(steps).__name__}")
        if not isinstance(template, str) or not isinstance(algorithm, str):
            raise ScheduleError("a serialised schedule's template and algorithm are strings")
        if not isinstance(knobs, dict) or not all(isinstance(k, str) for k in knobs):
            raise ScheduleError(f"a serialised schedule's knobs are a dict {{name: value}}, got {knobs!r}"[:200])
        knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
        return Schedule(tuple(Step.from_json(s) for s in steps), template, tuple(sorted(knobs.items())), algorithm)

    @property
    def hash(self) -> str:
        """Stable across processes and Python versions (unlike hash())."""
        blob = json.dumps([self.algorithm] + [s.to_json() for s in self.steps], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
