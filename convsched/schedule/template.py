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
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .. import backend
from ..errors import KnobError, ScheduleError
from ..layers import registry
from ..paths import shipped_templates
from .recorder import ScheduleBuilder
from .steps import Schedule

BUILTIN_DIR = shipped_templates()        # the repository's schedules/, or an installed package's copy
_user_dirs: list[Path] = []
_cache: dict = {}


def add_template_dir(path) -> None:
    """Search `path` (laid out as <layer>/<name>.py) before the shipped schedules/."""
    p = Path(path).resolve()
    if not p.is_dir():
        raise FileNotFoundError(f"template directory {p} does not exist")
    if p not in _user_dirs:
        _user_dirs.insert(0, p)


def user_template_dirs() -> list[Path]:
    """The directories given to add_template_dir() in this process (tuning workers are handed them)."""
    return list(_user_dirs)


def template_dirs() -> list[Path]:
    env = [Path(d) for d in os.environ.get("CONVSCHED_SCHEDULES", "").split(os.pathsep) if d]
    layer_dirs = [d for d in registry.template_dirs() if d not in _user_dirs]
    return _user_dirs + layer_dirs + env + [BUILTIN_DIR]


def _find(name: str) -> Path:
    if name.count("/") != 1:
        raise ScheduleError(f"template name '{name}' must be '<layer>/<name>', e.g. 'conv2d/nhwc_direct'")
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


def _knobs_line(source: str) -> int:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "KNOBS" for t in node.targets):
            return node.lineno
    return 1


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
        src = path.read_text()
        try:
            code = compile(src, str(path), "exec")
        except SyntaxError as e:
            raise ScheduleError(f"syntax error in template: {e.msg}", file=str(path), line=e.lineno,
                                template=name) from None
        ns = {"__file__": str(path), "__name__": f"convsched_template_{name.replace('/', '_')}"}
        try:
            exec(code, ns)
        except Exception as e:
            raise ScheduleError(f"template failed to load: {type(e).__name__}: {e}", file=str(path),
                                line=_template_frame_line(e.__traceback__, str(path)), template=name) from None
        for required in ("LAYER", "KNOBS", "schedule"):
            if required not in ns:
                raise ScheduleError(f"template defines no {required}", file=str(path), template=name)
        if ns["LAYER"] != name.split("/")[0]:
            raise ScheduleError(f"template says LAYER = {ns['LAYER']!r} but lives under {name.split('/')[0]}/",
                                file=str(path), template=name)
        return Template(name, path, hashlib.sha256(src.encode()).hexdigest()[:16], ns["LAYER"],
                        (ns.get("__doc__") or "").strip(), ns, _knobs_line(src))

    # -- knobs
    def _err(self, cls, cause, **kw):
        return cls(cause, file=str(self.path), template=self.name, **kw)

    def knob_space(self, layer, target) -> dict:
        """{knob: [values]} for this layer and target (callables in KNOBS evaluated)."""
        space = {}
        for k, v in self.ns["KNOBS"].items():
            try:
                vals = v(layer, target) if callable(v) else v
            except Exception as e:
                raise self._err(KnobError, f"knob space of '{k}' failed: {type(e).__name__}: {e}",
                                line=self.knobs_line) from None
            space[k] = list(vals)
        return space

    def applies(self, layer, target) -> "bool | str":
        if layer.KIND != self.layer_kind:
            return f"template is for {self.layer_kind}, layer is {layer.KIND}"
        fn = self.ns.get("applies")
        return True if fn is None else fn(layer, target)

    def defaults(self, layer, target) -> dict:
        fn = self.ns.get("defaults")
        if fn is not None:
            return dict(fn(layer, target))
        return {k: v[0] for k, v in self.knob_space(layer, target).items() if v}

    def constraint(self, layer, target, knobs) -> "bool | str":
        fn = self.ns.get("constraint")
        return True if fn is None else fn(layer, target, **knobs)

    def check_knobs(self, layer, target, knobs: dict | None) -> dict:
        """Fill missing knobs from defaults; reject unknown ones and values outside the space."""
        ok = self.applies(layer, target)
        if ok is not True:
            raise self._err(ScheduleError, f"template does not apply to {layer}: {ok or 'applies() said no'}")
        space = self.knob_space(layer, target)
        knobs = dict(knobs or {})
        unknown = sorted(set(knobs) - set(space))
        if unknown:
            raise self._err(KnobError, f"unknown knob(s) {', '.join(unknown)}; knobs are {', '.join(space)}",
                            line=self.knobs_line)
        full = {**self.defaults(layer, target), **knobs}
        for k, vals in space.items():
            if k not in full:
                raise self._err(KnobError, f"knob '{k}' has no value and its space is empty for this layer",
                                line=self.knobs_line)
            if full[k] not in vals:
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
    except Exception as e:
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
