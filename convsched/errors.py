"""Typed errors. A search can catch ScheduleError and skip the candidate; a user reads where and why."""
from __future__ import annotations


class ConvschedError(Exception):
    """Base class of every error convsched raises on purpose."""


class ScheduleError(ConvschedError):
    """An illegal or malformed schedule.

    Names where it came from (template file and line), what it touched (stage, axis), which step, and why.
    """

    def __init__(self, cause: str, *, file: str | None = None, line: int | None = None,
                 stage: str | None = None, axis: str | None = None, step: str | None = None,
                 template: str | None = None):
        self.cause, self.file, self.line = cause, file, line
        self.stage, self.axis, self.step, self.template = stage, axis, step, template
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.template:
            where.append(f"template {self.template}")
        if self.stage:
            where.append(f"stage '{self.stage}'")
        if self.axis:
            where.append(f"axis '{self.axis}'")
        if self.step:
            where.append(f"step {self.step}")
        return (", ".join(where) + ": " if where else "") + self.cause


class KnobError(ScheduleError):
    """A knob is missing, unknown, or has a value outside its space."""


class TargetError(ConvschedError):
    """An unknown target name, or a kernel built for CPU features this host lacks."""


class BuildError(ConvschedError):
    """TVM failed to compile a scheduled function (the schedule was legal, codegen was not)."""


class ParameterError(ConvschedError, ValueError):
    """A layer parameter of the wrong type or outside its range: names the layer, the field and the value."""


class GraphError(ConvschedError, ValueError):
    """A malformed graph or fused layer: unknown node, shape or dtype mismatch along an edge, bad fusion."""


class ExportError(ConvschedError):
    """An export directory that cannot be written or loaded: missing or tampered files, no C compiler."""
