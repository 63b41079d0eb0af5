"""Building the compiled functions of a kernel: one for most layers, several for a multi-part kernel."""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend
from ..schedule import Schedule, get_template, record, replay
from .kernel import RefusedBuild


@dataclass(frozen=True)
class Recipe:
    """How to schedule one compiled function: a recorded Schedule or an inline schedule function
    (`schedule`), else a template and knobs (missing knobs take the template's defaults)."""
    template: str | None = None
    knobs: dict | None = None
    schedule: object = None


@dataclass
class Part:
    """One compiled function: its recorded Schedule, the built code and the scheduled loop nest."""
    schedule: Schedule
    built: object
    loop_nest: str


def build_part(layer, target, recipe: Recipe, refusal: str | None = None, algorithm: str | None = None) -> Part:
    """Record (or replay) the recipe's schedule on the layer's declaration and compile it for `target`.

    algorithm: the declaration to schedule when not the template's own (see Template.record). refusal: the
    reason the host must not run it (kernel.refusal), if any."""
    if isinstance(recipe.schedule, Schedule):
        sched, live = recipe.schedule, replay(layer, recipe.schedule)
    elif callable(recipe.schedule):
        sched, live = record(layer, target, recipe.schedule, {}, name="(inline)")
    else:
        tmpl = get_template(recipe.template)
        sched, live = tmpl.record(layer, target, tmpl.check_knobs(layer, target, recipe.knobs), algorithm=algorithm)
    built = backend.build(live, target)
    return Part(sched, built if refusal is None else RefusedBuild(built, refusal), live.script())


@dataclass(frozen=True)
class MultiPart:
    """A layer kind whose kernel is several compiled functions plus glue (registered in kernel.compiler).

    parts: {part: its default template}, each part named after the declaration (algorithm) it compiles;
    primary: the part that `knobs` without a template, and a kernel's .schedule, refer to;
    part_of(template name): the part a template schedules (None: unknown);
    assemble(layer, target, {part: Part}, {part: Recipe}, refusal): the kernel object;
    algorithm(part, layer, target): the declaration a part compiles on this target (None: its template's
    ALGORITHM), e.g. a word type that follows the target's popcount;
    build(part, layer, target, recipe, refusal): a Part built another way than by recording a template on a
    TE declaration (a hand-written TIR stage whose template holds its knobs), or None for the usual way."""
    parts: dict
    primary: str
    part_of: object
    assemble: object
    algorithm: object = None
    build: object = None

    def build_part(self, part: str, layer, target, recipe: Recipe, refusal: str | None = None) -> Part:
        made = self.build(part, layer, target, recipe, refusal) if self.build is not None else None
        if made is not None:
            return made
        algorithm = self.algorithm(part, layer, target) if self.algorithm is not None else None
        return build_part(layer, target, recipe, refusal, algorithm=algorithm)
