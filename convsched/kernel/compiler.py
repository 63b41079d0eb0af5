"""compile(): a layer (what) + a schedule (how) + a target -> a kernel. The one compile path.

Which schedule: an explicit one (schedule=, or template= and knobs=), else the best verified tuning record
for this workload and target key (convsched.records), else the layer's default template (with a warning,
once per workload). Most layers compile into one function (Kernel); a layer kind registered in MULTI_PART
compiles into several functions plus glue, each part chosen the same way from the same records.
"""
from __future__ import annotations

import warnings

from .. import records
from .. import target as targets
from ..errors import BuildError, ScheduleError
from ..layers import Layer, LossDelta
from ..schedule import Schedule, get_template
from .kernel import FiniteOnly, Kernel, refusal
from .loss_delta import LOSS_DELTA
from .parts import MultiPart, Recipe, build_part

# Layer kinds whose kernel is several compiled functions plus glue, by KIND.
MULTI_PART: dict[str, MultiPart] = {LossDelta.KIND: LOSS_DELTA}

_warned: set = set()


def register_multi_part(kind: str, spec: MultiPart) -> None:
    """Compile layers of `kind` as several parts (see kernel.parts.MultiPart)."""
    MULTI_PART[kind] = spec


def _warn_once(key, msg):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, stacklevel=3)


def compile(layer, template: str | None = None, knobs: dict | None = None, target="host", schedule=None,
            log=None):
    """Compile `layer` for `target` ("host", a named target, or a Target).

    template/knobs: a named template ("conv2d/nhwc_direct") and knob values (missing ones take the
    template's defaults). schedule: a recorded Schedule (e.g. from a tuning log) or a function
    schedule(s, layer) written inline. With none of these, the best verified tuning record for this
    workload and target is used, else the layer's default template (with a warning, once per workload).
    log: where the tuning records are (records.log_path). A kernel built for CPU features the host lacks
    compiles (cross-compilation, export) but refuses to run.
    """
    if not isinstance(layer, Layer):
        raise ValueError(f"compile: expected a layer (e.g. cs.layers.Conv2d(...)), got {layer!r}"[:300])
    _check_argument_sizes(layer)
    tgt = targets.get(target)
    if schedule is not None and (template or knobs):
        raise ScheduleError("give either schedule= or template=/knobs=, not both")
    if schedule is not None and not (isinstance(schedule, Schedule) or callable(schedule)):
        raise ScheduleError(f"schedule= is a recorded Schedule (Schedule.from_json) or a function schedule(s, "
                            f"layer), got {type(schedule).__name__}")
    why_not = refusal(tgt, targets.host())
    spec = MULTI_PART.get(layer.KIND)
    if spec is None:
        part = None
        if schedule is None and template is None and knobs is None:
            part = _build_best_record(layer, tgt, log, why_not)
        if part is None:
            part = build_part(layer, tgt, _recipe(layer, tgt, template, knobs, schedule), why_not)
        built = part.built
        if part.schedule.algorithm in layer.FINITE_ONLY_ALGORITHMS and why_not is None:
            built = FiniteOnly(built, _float_inputs(layer), lambda: _exact_fallback(layer, tgt).built)
        return Kernel(layer, tgt, part.schedule, built, part.loop_nest)
    recipes = _part_recipes(layer, tgt, spec, template, knobs, schedule, log)
    parts = {name: spec.build_part(name, layer, tgt, r, why_not) for name, r in recipes.items()}
    return spec.assemble(layer, tgt, parts, recipes, why_not)


def _float_inputs(layer) -> list:
    return [i for i, spec in enumerate(layer.input_specs()) if spec.dtype.startswith("float")]


def _exact_fallback(layer, tgt):
    """The layer's default template, which follows reference() on inf and NaN: what a finite-only algorithm's
    kernel runs on inputs it would get wrong (FiniteOnly)."""
    template = layer.default_template()
    if get_template(template).algorithm in layer.FINITE_ONLY_ALGORITHMS:
        raise BuildError(f"{type(layer).__name__}: the default template {template} is finite-only too: "
                         f"no exact fallback for inputs with inf or NaN")
    return build_part(layer, tgt, Recipe(template))


# TVM declares loops over a buffer with 32-bit indices: a bigger buffer fails deep inside TVM with "Literal value
# ... out of range" (measured with cs.layers.Add(h=2**16, w=2**16, c=1), TVM 0.27, 2026-12).
MAX_ELEMENTS = 2 ** 31 - 1


def _check_argument_sizes(layer) -> None:
    """ValueError naming the argument if one has an empty dimension or more elements than kernels can index."""
    for role, specs in (("input", layer.input_specs()), ("output", layer.output_specs())):
        for spec in specs:
            if any(int(d) <= 0 for d in spec.shape):
                raise ValueError(f"{type(layer).__name__}: {role} '{spec.name}' has shape {tuple(spec.shape)}: every "
                                 f"dimension must be positive")
            n = 1
            for d in spec.shape:
                n *= int(d)
            if n > MAX_ELEMENTS:
                raise ValueError(f"{type(layer).__name__}: {role} '{spec.name}' has {n} elements; a kernel's buffers "
                                 f"hold at most 2**31 - 1 (32-bit indices)")


def _build_best_record(layer, tgt, log, why_not):
    """The kernel of the fastest verified tuning record that still builds, or None. A record that passed the
    schema and knob checks but no longer schedules or compiles (a template edit that kept its knobs, a
    hand-edited log) is skipped with a warning naming its line, and the next-best record is tried."""
    for rec in records.ranked(layer, tgt, log):
        try:
            return build_part(layer, tgt, Recipe(rec["template"], rec["knobs"]), why_not)
        except (ScheduleError, BuildError) as e:
            _warn_once(("unbuildable", records.where(rec)),
                       f"{records.where(rec)}: tuning record skipped: it does not build: {e}")
    return None


def _recipe(layer, tgt, template, knobs, schedule) -> Recipe:
    """The schedule of a single-function kernel when no tuning record is used."""
    if schedule is not None:
        return Recipe(schedule=schedule)
    if template is None and knobs is None:
        template = layer.default_template()
        _warn_once((layer.workload_key, tgt.key),
                   f"no tuning record for {layer} on {tgt.key}; using the default template {template}")
    return Recipe(template or layer.default_template(), knobs)


def _part_recipes(layer, tgt, spec: MultiPart, template, knobs, schedule, log) -> dict:
    """{part: Recipe} of a multi-part kernel. An explicit template (or schedule) replaces its own part's
    default and leaves the others at theirs: what one tuning candidate of that part measures."""
    recipes = {part: Recipe(name) for part, name in spec.parts.items()}
    if schedule is not None:
        part = schedule.algorithm if isinstance(schedule, Schedule) else None
        if part not in recipes:
            raise ScheduleError(f"a {type(layer).__name__} kernel takes a recorded Schedule of one of its parts "
                                f"({', '.join(recipes)}), or template=/knobs=")
        recipes[part] = Recipe(schedule=schedule)
    elif template is not None or knobs is not None:
        tmpl = get_template(template or spec.parts[spec.primary])
        if tmpl.layer_kind != layer.KIND:
            raise ScheduleError(f"template {tmpl.name} is for {tmpl.layer_kind}, not {layer.KIND}")
        recipes[spec.part_of(tmpl.name)] = Recipe(tmpl.name, knobs)
    else:
        tuned = tuned_parts(layer, tgt, log)
        recipes.update({part: Recipe(t, kn) for part, (t, kn) in tuned.items()})
        if not tuned:
            _warn_once((layer.workload_key, tgt.key),
                       f"no tuning record for {layer} on {tgt.key}; using the default templates")
    return recipes


def tuned_parts(layer, target, log=None) -> dict:
    """{part: (template, knobs)} of the fastest verified tuning record of each part of a multi-part layer
    (records.best_per_part): the parts run one after the other on their own data, so the best of each is
    combined. Parts without a verified record are missing."""
    spec = MULTI_PART[layer.KIND]
    defaults = {part: (name, _defaults_or_none(name, layer, target)) for part, name in spec.parts.items()}
    return records.best_per_part(layer, target, log, spec.part_of, defaults)


def _defaults_or_none(template: str, layer, tgt):
    try:
        return get_template(template).defaults(layer, tgt)
    except Exception:   # a default template that fails here is reported when it is built, not while choosing
        return None


def layer_assembly(layer, target, template: str | None = None, knobs: dict | None = None) -> str:
    """Build `layer` with a template for `target` (any named target: nothing is run) and return the
    assembly: how a test checks that a znver4 build uses vpopcntq on a host without it."""
    return compile(layer, template=template or layer.default_template(), knobs=knobs, target=target).assembly()
