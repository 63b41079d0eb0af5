"""Schedule templates: files in schedules/<layer>/<name>.py (and user directories), loaded by name.

A template file defines:
    LAYER = "conv2d"                      # the layer kind it schedules
    KNOBS = {"co_tile": [8, 16, 32],      # knob -> list of values, or a callable (layer, target) -> list
             "ow_tile": divisors_of("w")}
    def schedule(s, layer, **knobs): ...  # records steps on s
and optionally:
    ALGORITHM = "winograd"                # which of the layer's declarations to schedule (default "direct";
                                          # layer.declare(algorithm=...) provides it, layer.ALGORITHMS lists them)
    def applies(layer, target): ...       # True, or a string saying why the template does not apply
    def defaults(layer, target): ...      # default knobs (else the first value of each space)
    def constraint(layer, target, **knobs): ...  # True, or a string: filters illegal points before building

Template names are "<layer>/<file stem>", e.g. "conv2d/nhwc_direct". Templates are searched in the
directories given to add_template_dir(), then those custom layers name (their TEMPLATES), then
$CONVSCHED_SCHEDULES, then the shipped schedules/ (the repository's folder in a checkout, a copy inside an
installed package: convsched/paths.py).
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import math
import os
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import backend
from ..errors import ConvschedError, KnobError, ScheduleError
from ..layers import registry
from ..paths import shipped_templates
from .recorder import ScheduleBuilder
from .steps import Schedule

BUILTIN_DIR = shipped_templates()        # the repository's schedules/, or an installed package's copy
MAX_KNOB_VALUES = 10_000      # a knob space is a list to search, not range(10**9): the search would never end
_user_dirs: list[Path] = []
_cache: dict = {}


def add_template_dir(path) -> None:
    """Search `path` (laid out as <layer>/<name>.py) before the shipped schedules/."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"add_template_dir: expected a directory path, got {path!r}")
    p = Path(path).resolve()
    if not p.is_dir():
        raise FileNotFoundError(f"template directory {p} does not exist")
    if p not in _user_dirs:
        _user_dirs.insert(0, p)


def user_template_dirs() -> list[Path]:
    """The directories given to add_template_dir() in this process (tuning workers are handed them)."""
    return list(_user_dirs)


_env_warned: set = set()


def template_dirs() -> list[Path]:
    env = [Path(d) for d in os.environ.get("CONVSCHED_SCHEDULES", "").split(os.pathsep) if d]
    for d in env:
        if not d.is_dir() and d not in _env_warned:      # a typo would otherwise hide the templates quietly
            _env_warned.add(d)
            warnings.warn(f"CONVSCHED_SCHEDULES names {d}, which is not a directory", stacklevel=2)
    layer_dirs = [d for d in registry.template_dirs() if d not in _user_dirs]
    return _user_dirs + layer_dirs + env + [BUILTIN_DIR]


def _find(name: str) -> Path:
    if not isinstance(name, str) or name.count("/") != 1 or not all(
            part and not part.startswith(".") and "\\" not in part for part in name.split("/")):
        raise ScheduleError(f"template name {name!r} must be '<layer>/<name>', e.g. 'conv2d/nhwc_direct'")
    for d in template_dirs():
        p = d / f"{name}.py"
        if p.is_file():
            return p
    known = ", ".join(list_templates(name.split("/")[0])) or "none"
    raise ScheduleError(f"unknown template '{name}' (templates for {name.split('/')[0]}: {known})")


def list_templates(layer_kind: str | None = None) -> list[str]:
    """Template names for a layer kind (all kinds if None), shipped and user ones."""
    names = set()
    for d in template_dirs():
        if not d.is_dir():
            continue
        for sub in d.iterdir():
            if sub.is_dir() and (layer_kind is None or sub.name == layer_kind):
                names.update(f"{sub.name}/{p.stem}" for p in sub.glob("*.py") if not p.name.startswith("_"))
    return sorted(names)


def get_template(name: str) -> "Template":
    path = _find(name)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _cache:
        _cache[key] = Template.load(name, path)
    return _cache[key]


def _line_of(source: str, name: str) -> int | None:
    """The line of the module-level assignment (or def) of `name` in a template's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.lineno
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node.lineno
    return None


def _knobs_line(source: str) -> int:
    return _line_of(source, "KNOBS") or 1


def _knob_value(v):
    """A knob value as records and Candidates hold it: a hashable JSON-like scalar (numpy scalars made
    Python's), or a tuple of them; TypeError for anything else (a list, an object, NaN)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, tuple):
        return tuple(_knob_value(x) for x in v)
    if v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    raise TypeError(f"knob value {_short(v)} is not a number, string, boolean, None or tuple of them")


def _in_space(value, space) -> bool:
    """value is one of space's values, of the same kind: True is not 1, 16.0 is not 16."""
    return any(value == v and type(value) is type(v) for v in space)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _template_frame_line(tb, path: str) -> int | None:
    line = None
    for fr in traceback.extract_tb(tb):
        if Path(fr.filename).resolve() == Path(path).resolve():
            line = fr.lineno
    return line


@dataclass
class Template:
    name: str
    path: Path
    source_hash: str
    layer_kind: str
    doc: str
    ns: dict = field(repr=False)
    knobs_line: int = 1

    @staticmethod
    def load(name: str, path: Path) -> "Template":
        try:
            src = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ScheduleError(f"template cannot be read: {e}", file=str(path), template=name) from None
        try:
            code = compile(src, str(path), "exec")
        except (SyntaxError, ValueError) as e:     # ValueError: NUL bytes in the source
            raise ScheduleError(f"syntax error in template: {getattr(e, 'msg', e)}", file=str(path),
                                line=getattr(e, "lineno", None), template=name) from None
        ns = {"__file__": str(path), "__name__": f"convsched_template_{name.replace('/', '_')}"}
        try:
            exec(code, ns)
        except (Exception, SystemExit) as e:       # a template's sys.exit() must not end the tuner
            raise ScheduleError(f"template failed to load: {type(e).__name__}: {e}", file=str(path),
                                line=_template_frame_line(e.__traceback__, str(path)), template=name) from None
        knobs_line = _knobs_line(src)
        for required in ("LAYER", "KNOBS", "schedule"):
            if required not in ns:
                raise ScheduleError(f"template defines no {required}", file=str(path), template=name)
        if ns["LAYER"] != name.split("/")[0]:
            raise ScheduleError(f"template says LAYER = {ns['LAYER']!r} but lives under {name.split('/')[0]}/",
                                file=str(path), line=_line_of(src, "LAYER"), template=name)
        if not isinstance(ns["KNOBS"], dict) or not all(isinstance(k, str) for k in ns["KNOBS"]):
            raise KnobError(f"KNOBS must be a dict {{knob name: list of values, or a function (layer, target) -> "
                            f"list}}, got {type(ns['KNOBS']).__name__}", file=str(path), line=knobs_line,
                            template=name)
        for fn in ("schedule", "applies", "defaults", "constraint"):
            if fn in ns and not callable(ns[fn]):
                raise ScheduleError(f"{fn} must be a function, got {type(ns[fn]).__name__}", file=str(path),
                                    line=_line_of(src, fn), template=name)
        if not isinstance(ns.get("ALGORITHM", "direct"), str):
            raise ScheduleError(f"ALGORITHM must be a string, got {ns['ALGORITHM']!r}", file=str(path),
                                line=_line_of(src, "ALGORITHM"), template=name)
        return Template(name, path, hashlib.sha256(src.encode()).hexdigest()[:16], ns["LAYER"],
                        (ns.get("__doc__") or "").strip() if isinstance(ns.get("__doc__"), str) else "", ns,
                        knobs_line)

    # -- calling the template's functions: whatever one raises or returns, the caller gets a ScheduleError
    #    (KnobError for knob spaces and constraints) naming the template file and line
    def _err(self, cls, cause, **kw):
        return cls(cause, file=str(self.path), template=self.name, **kw)

    def _call(self, what: str, fn, *args, error=ScheduleError, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConvschedError as e:
            if isinstance(e, ScheduleError) and e.file:
                raise
            raise self._err(error, f"{what} raised {type(e).__name__}: {e}", line=self._line(e, fn)) from None
        except (Exception, SystemExit) as e:
            raise self._err(error, f"{what} raised {type(e).__name__}: {e}", line=self._line(e, fn)) from None

    def _line(self, e: BaseException | None, fn) -> int | None:
        """The template line an error points at: the deepest frame in the template file, else fn's def."""
        line = _template_frame_line(e.__traceback__, str(self.path)) if e is not None else None
        code = getattr(fn, "__code__", None)
        if line is None and code is not None and Path(code.co_filename).resolve() == self.path.resolve():
            line = code.co_firstlineno
        return line

    def _verdict(self, what: str, fn, result) -> "bool | str":
        """applies() and constraint() answer True, or False / a string saying why not."""
        if result is True or result is False or isinstance(result, str):
            return result
        if isinstance(result, (bool, np.bool_)):
            return bool(result)
        raise self._err(KnobError if what.startswith("constraint") else ScheduleError,
                        f"{what} returned {_short(result)}; expected True, or False / a string saying why not",
                        line=self._line(None, fn))

    def knob_space(self, layer, target) -> dict:
        """{knob: [values]} for this layer and target (callables in KNOBS evaluated)."""
        space = {}
        for k, v in self.ns["KNOBS"].items():
            vals = self._call(f"knob space of '{k}'", v, layer, target, error=KnobError) if callable(v) else v
            if isinstance(vals, (str, bytes, dict)) or not isinstance(vals, Iterable):
                raise self._err(KnobError, f"knob space of '{k}' is {_short(vals)}; expected a list of values",
                                line=self.knobs_line)
            try:
                vals = [_knob_value(x) for x in itertools.islice(vals, MAX_KNOB_VALUES + 1)]
            except (TypeError, ValueError) as e:
                raise self._err(KnobError, f"knob space of '{k}': {e}", line=self.knobs_line) from None
            if len(vals) > MAX_KNOB_VALUES:
                raise self._err(KnobError, f"knob space of '{k}' has more than {MAX_KNOB_VALUES} values",
                                line=self.knobs_line)
            space[k] = vals
        return space

    def applies(self, layer, target) -> "bool | str":
        if layer.KIND != self.layer_kind:
            return f"template is for {self.layer_kind}, layer is {layer.KIND}"
        fn = self.ns.get("applies")
        return True if fn is None else self._verdict("applies()", fn, self._call("applies()", fn, layer, target))

    def defaults(self, layer, target) -> dict:
        fn = self.ns.get("defaults")
        if fn is None:
            return {k: v[0] for k, v in self.knob_space(layer, target).items() if v}
        got = self._call("defaults()", fn, layer, target, error=KnobError)
        if not isinstance(got, dict) or not all(isinstance(k, str) for k in got):
            raise self._err(KnobError, f"defaults() returned {_short(got)}; expected a dict {{knob: value}}",
                            line=self._line(None, fn))
        unknown = sorted(set(got) - set(self.ns["KNOBS"]))
        if unknown:
            raise self._err(KnobError, f"defaults() returned unknown knob(s) {', '.join(unknown)}",
                            line=self._line(None, fn))
        try:
            return {k: _knob_value(v) for k, v in got.items()}
        except (TypeError, ValueError) as e:
            raise self._err(KnobError, f"defaults(): {e}", line=self._line(None, fn)) from None

    def constraint(self, layer, target, knobs) -> "bool | str":
        fn = self.ns.get("constraint")
        if fn is None:
            return True
        return self._verdict("constraint()", fn, self._call("constraint()", fn, layer, target, **knobs,
                                                              error=KnobError))

    def knob_problem(self, layer, target, knobs: dict, space: dict | None = None) -> str | None:
        """Why `knobs` (every knob given) is not a legal point for this layer and target, or None: what a
        tuning record must be before compile() uses it. The template's own errors are ScheduleErrors."""
        ok = self.applies(layer, target)
        if ok is not True:
            return f"template {self.name} does not apply: {ok or 'applies() said no'}"
        space = self.knob_space(layer, target) if space is None else space
        if set(knobs) != set(space):
            return f"knobs {sorted(knobs)} are not the knobs of {self.name} ({', '.join(space)})"
        for k, vals in space.items():
            if not _in_space(knobs[k], vals):
                return f"knob '{k}'={knobs[k]!r} is outside its space {vals}"
        c = self.constraint(layer, target, knobs)
        if c is not True:
            return f"knobs violate the constraint of {self.name}: {c or 'rejected'}"
        return None

    def check_knobs(self, layer, target, knobs: dict | None) -> dict:
        """Fill missing knobs from defaults; reject unknown ones and values outside the space."""
        ok = self.applies(layer, target)
        if ok is not True:
            raise self._err(ScheduleError, f"template does not apply to {layer}: {ok or 'applies() said no'}")
        space = self.knob_space(layer, target)
        if knobs is not None and not isinstance(knobs, dict):
            raise self._err(KnobError, f"knobs must be a dict {{knob: value}}, got {_short(knobs)}")
        try:
            knobs = {k: _knob_value(v) for k, v in (knobs or {}).items()}
        except (TypeError, ValueError) as e:
            raise self._err(KnobError, f"knobs: {e}", line=self.knobs_line) from None
        unknown = sorted(set(knobs) - set(space), key=str)
        if unknown:
            raise self._err(KnobError, f"unknown knob(s) {', '.join(map(str, unknown))}; knobs are "
                                       f"{', '.join(space)}", line=self.knobs_line)
        full = {**self.defaults(layer, target), **knobs}
        for k, vals in space.items():
            if k not in full:
                raise self._err(KnobError, f"knob '{k}' has no value and its space is empty for this layer",
                                line=self.knobs_line)
            if not _in_space(full[k], vals):
                raise self._err(KnobError, f"knob '{k}'={full[k]!r} is outside its space {vals} "
                                           f"for this layer and target", line=self.knobs_line)
        c = self.constraint(layer, target, full)
        if c is not True:
            raise self._err(KnobError, f"knobs {full} violate the template's constraint: {c or 'rejected'}",
                            line=self.knobs_line)
        return full

    # -- recording
    def record(self, layer, target, knobs: dict, algorithm: str | None = None):
        """Run schedule(s, layer, **knobs) on a fresh live schedule: -> (Schedule, LiveSchedule).

        algorithm: the declaration to schedule, if not the template's own ALGORITHM (a multi-part kernel
        schedules a sibling declaration with the same template, e.g. loss deltas per example)."""
        return record(layer, target, self.ns["schedule"], knobs, name=self.name, path=str(self.path),
                      algorithm=algorithm or self.algorithm)

    @property
    def algorithm(self) -> str:
        return self.ns.get("ALGORITHM", "direct")


def declare(layer, algorithm: str = "direct"):
    """The layer's TE declaration for `algorithm` ("direct" is every layer's own declare())."""
    if algorithm == "direct":
        return layer.declare()
    if algorithm not in getattr(layer, "ALGORITHMS", ("direct",)):
        raise ScheduleError(f"{type(layer).__name__} has no algorithm '{algorithm}' "
                            f"(it has: {', '.join(getattr(layer, 'ALGORITHMS', ('direct',)))})")
    return layer.declare(algorithm=algorithm)


def record(layer, target, fn, knobs: dict, name: str = "(inline)", path: str | None = None,
           algorithm: str = "direct"):
    """Run fn(s, layer, **knobs) on a fresh live schedule of the layer's `algorithm` declaration:
    -> (the recorded Schedule, the backend's LiveSchedule)."""
    decl = declare(layer, algorithm)
    live = backend.LiveSchedule(decl.inputs, decl.outputs)
    s = ScheduleBuilder(live, layer, target, name)
    try:
        fn(s, layer, **knobs)
    except ScheduleError as e:
        if e.template is None:
            e.template = name
            e.args = (e._format(),)
        raise
    except (Exception, SystemExit) as e:      # a template's sys.exit() must not end the process
        line = _template_frame_line(e.__traceback__, path) if path else None
        raise ScheduleError(f"{type(e).__name__} in schedule(): {e}", file=path, line=line,
                            template=name) from None
    return Schedule(tuple(s.steps), name, tuple(sorted(knobs.items())), algorithm), live


def replay(layer, schedule: Schedule):
    """Apply a recorded Schedule (e.g. from a tuning log) to a fresh live schedule."""
    decl = declare(layer, schedule.algorithm)
    live = backend.LiveSchedule(decl.inputs, decl.outputs)
    for step in schedule.steps:
        live.apply(step)
    return live
