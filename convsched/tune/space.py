"""The search space of one workload on one target: (template, knobs) points of every template that applies.

Knob spaces come from each template's KNOBS (evaluated for this layer and target); a template's constraint()
filters illegal points (e.g. register tiles that would spill) before anything is built.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvschedError, ScheduleError
from ..schedule import get_template, list_templates


@dataclass(frozen=True)
class Candidate:
    """One point: a template name and its knob values (sorted (name, value) pairs, hashable)."""
    template: str
    knobs: tuple

    @staticmethod
    def make(template: str, knobs: dict) -> "Candidate":
        return Candidate(template, tuple(sorted(knobs.items())))

    @property
    def knob_dict(self) -> dict:
        return dict(self.knobs)

    @property
    def key(self) -> str:
        return json.dumps([self.template, self.knob_dict], sort_keys=True)

    def __str__(self):
        return f"{self.template} " + " ".join(f"{k}={v}" for k, v in self.knobs)


def candidate_key(template: str, knobs: dict) -> str:
    return json.dumps([template, dict(knobs)], sort_keys=True)


class SearchSpace:
    """Every legal (template, knobs) point for `layer` on `target`.

    templates: restrict to these names (default: all templates of the layer's kind that apply).
    """

    ENUMERATE_LIMIT = 50_000        # raw points per template above which the space is only sampled

    def __init__(self, layer, target, templates=None):
        self.layer, self.target = layer, target
        names = list(templates) if templates else list_templates(layer.KIND)
        if not names:
            raise ConvschedError(f"no schedule templates for layer kind '{layer.KIND}'")
        self.templates, self.spaces, self.skipped = {}, {}, {}
        self._broken_warned: set = set()
        for name in names:
            # A broken template (fails to load; applies(), its knob spaces, defaults() or constraint() raise
            # or return garbage) is reported and skipped: it never stops the search over the others.
            try:
                t = get_template(name)       # unknown name: ScheduleError listing the known ones
                ok = t.applies(layer, target)
                space = t.knob_space(layer, target) if ok is True else None
                if space is not None and all(space.values()):
                    d = t.defaults(layer, target)
                    if set(d) == set(space):
                        t.constraint(layer, target, d)      # raises if broken; "no" is an answer
            except ConvschedError as e:
                if templates:
                    raise
                warnings.warn(f"skipping template {name}: {e}", stacklevel=2)
                self.skipped[name] = str(e)
                continue
            if ok is not True:
                if templates:
                    raise ScheduleError(f"template {name} does not apply to {layer}: {ok or 'applies() said no'}")
                self.skipped[name] = ok or "applies() said no"
                continue
            if any(len(v) == 0 for v in space.values()):
                self.skipped[name] = "a knob space is empty for this layer"
                continue
            self.templates[name], self.spaces[name] = t, space
        if not self.templates:
            why = "; ".join(f"{n}: {w}" for n, w in self.skipped.items())
            raise ConvschedError(f"no template applies to {layer} ({why})")
        self.names = sorted(self.templates)
        self._legal_cache: dict = {}
        self._all: list | None = None

    # -- size and legality
    def raw_size(self, name: str | None = None) -> int:
        names = [name] if name else self.names
        return sum(math.prod(len(v) for v in self.spaces[n].values()) for n in names)

    def is_legal(self, c: Candidate) -> bool:
        if c in self._legal_cache:
            return self._legal_cache[c]
        ok = False
        space = self.spaces.get(c.template)
        if space is not None and set(c.knob_dict) == set(space) and all(
                v in space[k] for k, v in c.knobs):
            try:
                ok = self.templates[c.template].constraint(self.layer, self.target, c.knob_dict) is True
            except ConvschedError as e:     # constraint() raised or answered garbage at this point
                self._warn_broken(c.template, e)
                ok = False
        self._legal_cache[c] = ok
        return ok

    def _warn_broken(self, name: str, e: Exception):
        """Once per template: its points where constraint() fails are skipped, and the user is told why."""
        if name not in self._broken_warned:
            self._broken_warned.add(name)
            warnings.warn(f"template {name}: skipping the points where its constraint fails: {e}", stacklevel=3)

    def all_legal(self) -> list[Candidate] | None:
        """Every legal point (None if a template's space is too big to enumerate)."""
        if self._all is None:
            if any(self.raw_size(n) > self.ENUMERATE_LIMIT for n in self.names):
                return None
            out = []
            for n in self.names:
                keys = sorted(self.spaces[n])
                for vals in itertools.product(*(self.spaces[n][k] for k in keys)):
                    c = Candidate(n, tuple(zip(keys, vals)))
                    if self.is_legal(c):
                        out.append(c)
            self._all = out
        return self._all

    def size(self) -> int:
        """Legal points (or the raw product when the space is too big to enumerate)."""
        a = self.all_legal()
        return len(a) if a is not None else self.raw_size()

    def defaults(self) -> list[Candidate]:
        out = []
        for n in self.names:
            try:
                d = self.templates[n].defaults(self.layer, self.target)
            except ConvschedError as e:     # checked when the space was built: a template that now fails
                self._warn_broken(n, e)
                continue
            c = Candidate.make(n, d)
            if self.is_legal(c):
                out.append(c)
        return out

    # -- sampling and variation
    def random(self, rng: random.Random, tries: int = 2000) -> Candidate | None:
        for _ in range(tries):
            n = rng.choice(self.names)
            c = Candidate(n, tuple((k, rng.choice(v)) for k, v in sorted(self.spaces[n].items())))
            if self.is_legal(c):
                return c
        return None

    def mutate(self, c: Candidate, rng: random.Random) -> Candidate:
        """Change one or two knobs: usually to a neighbouring value of its space, sometimes to any value."""
        space = self.spaces[c.template]
        knobs = c.knob_dict
        movable = [k for k, v in space.items() if len(v) > 1]
        if not movable:
            return c
        for k in rng.sample(movable, min(len(movable), rng.choice((1, 1, 2)))):
            vals = space[k]
            i = vals.index(knobs[k])
            if rng.random() < 0.7:
                j = min(len(vals) - 1, max(0, i + rng.choice((-1, 1))))
            else:
                j = rng.randrange(len(vals))
            knobs[k] = vals[j]
        return Candidate.make(c.template, knobs)

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        if a.template != b.template:
            return a
        kb = b.knob_dict
        return Candidate.make(a.template, {k: (v if rng.random() < 0.5 else kb[k]) for k, v in a.knobs})

    # -- features for the cost model
    def features(self, c: Candidate) -> np.ndarray:
        """A numeric vector: template one-hot, then per template knob: log2 of numbers, 0/1 of bools,
        one-hot of other values. Knobs of other templates are 0."""
        if not hasattr(self, "_layout"):
            layout, n = {}, len(self.names)
            for name in self.names:
                for k, vals in sorted(self.spaces[name].items()):
                    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                        layout[(name, k)] = ("num", n)
                        n += 1
                    elif all(isinstance(v, bool) for v in vals):
                        layout[(name, k)] = ("bool", n)
                        n += 1
                    else:
                        layout[(name, k)] = ("cat", n, [repr(v) for v in vals])
                        n += len(vals)
            self._layout, self._nfeat = layout, n
        x = np.zeros(self._nfeat)
        x[self.names.index(c.template)] = 1.0
        for k, v in c.knobs:
            spec = self._layout[(c.template, k)]
            if spec[0] == "num":
                x[spec[1]] = math.log2(1.0 + abs(float(v)))
            elif spec[0] == "bool":
                x[spec[1]] = float(v)
            else:
                x[spec[1] + spec[2].index(repr(v))] = 1.0
        return x
