"""Fused layers: several layers computed by one kernel, their declarations chained by passing tensors.

A FusedLayer is itself a Layer: its declare() declares each member with the tensors of the members it reads
(layer.declare(inputs=..., prefix="<member>_")), so a consumer reads its producer's stage directly and every
stage and weight is named "<member>_<name>" (c2_conv, c2_w). Its templates (schedules/fused/*.py) schedule
the members together, reusing each member's own template through convsched.schedule.schedule_member.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import target as targets
from ..backend import compute_stages
from ..errors import GraphError
from ..layers import Declaration, Layer, TensorSpec
from ..schedule import get_template
from ..schedule.fusion import prefixed

# Fused templates the planner tries, best first. fused/sequential (members scheduled one after another in one
# function, no cross-layer locality) never pays by itself: it is there for overrides and for export.
PLANNER_TEMPLATES = ("fused/conv_pool", "fused/epilogue")


@dataclass(frozen=True)
class Member:
    """One layer inside a FusedLayer. binds: (argument name, producing member) for inputs read from an
    earlier member; every other argument is an argument of the fused kernel, named "<name>_<argument>"."""
    name: str
    layer: Layer
    binds: tuple = ()
    template: str | None = None      # the member's own template (used by fused templates that reuse it)
    knobs: tuple = ()

    @property
    def bind_dict(self) -> dict:
        return dict(self.binds)


@dataclass(frozen=True)
class FusedLayer(Layer):
    """Several layers computed by one kernel. members are in topological order; the last one's output is
    the kernel's output, every other member's output is consumed inside (and lives in a scratch buffer TVM
    allocates, or in registers when the template inlines it).

    Arguments: every member argument not bound to another member, in member order, named
    "<member>_<argument>" (e.g. c1_x, c1_w, c1_b, join_b). Stages: "<member>_<stage>" for each member's
    stages (see that layer's docstring), e.g. c2_conv, c2_bias, join_add, join_act.
    """

    members: tuple = ()
    name: str = "fused"

    KIND: ClassVar[str] = "fused"

    def __post_init__(self):
        if not self.members:
            raise GraphError("a fused layer needs at least one member")
        if not all(isinstance(m, Member) and isinstance(m.layer, Layer) for m in self.members):
            raise GraphError(f"fused layer {self.name}: members must be Member(name, layer, ...) of layers, got "
                             f"{self.members!r}"[:300])
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise GraphError(f"fused layer {self.name}: member names repeat: {names}")
        seen = {}
        for m in self.members:
            specs = {s.name: s for s in m.layer.input_specs()}
            for arg, src in m.binds:
                if arg not in specs:
                    raise GraphError(f"fused layer {self.name}: member '{m.name}' has no argument '{arg}' "
                                     f"(arguments: {', '.join(specs)})")
                if src not in seen:
                    raise GraphError(f"fused layer {self.name}: member '{m.name}' reads '{src}', which is not "
                                     f"an earlier member")
                check_edge(src, seen[src].output_specs()[0], m.name, type(m.layer).__name__, specs[arg])
            seen[m.name] = m.layer
        used = {src for m in self.members for _, src in m.binds}
        dangling = [m.name for m in self.members[:-1] if m.name not in used]
        if dangling:
            raise GraphError(f"fused layer {self.name}: the output of {', '.join(dangling)} is used by no later "
                             f"member; only the last member's output leaves a fused kernel")

    # -- members
    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"fused layer {self.name} has no member '{name}'")

    @property
    def kinds(self) -> tuple:
        return tuple(m.layer.KIND for m in self.members)

    @property
    def workload_key(self) -> str:
        return json.dumps({"layer": self.KIND, "members": [
            {"name": m.name, "layer": json.loads(m.layer.workload_key), "binds": list(map(list, m.binds)),
             "template": m.template, "knobs": dict(m.knobs)} for m in self.members]},
            sort_keys=True, separators=(",", ":"))

    def params(self) -> dict:
        """JSON-able description (manifests): each member's layer class and parameters, bindings, template."""
        return {"name": self.name, "members": [
            {"name": m.name, "class": type(m.layer).__name__, "params": m.layer.params(),
             "binds": [list(b) for b in m.binds], "template": m.template, "knobs": dict(m.knobs)}
            for m in self.members]}

    @classmethod
    def from_params(cls, params: dict, layer_class=None) -> "FusedLayer":
        """The inverse of params(): each member rebuilt through layer_class(its class name)."""
        if layer_class is None:
            raise GraphError("rebuilding a fused layer needs layer_class (member class name -> class)")
        members = tuple(Member(m["name"], layer_class(m["class"]).from_params(m["params"], layer_class),
                               tuple(tuple(b) for b in m["binds"]), m["template"], tuple(m["knobs"].items()))
                        for m in params["members"])
        return cls(members, params["name"])

    def __str__(self):
        return f"FusedLayer({' -> '.join(f'{m.name}:{type(m.layer).__name__}' for m in self.members)})"

    def _arguments(self):
        """[(member, argument spec)] of the fused kernel's arguments, in order (worked out once per layer)."""
        def arguments():
            out = []
            for m in self.members:
                bound = m.bind_dict
                out += [(m, s) for s in m.layer.input_specs() if s.name not in bound]
            return tuple(out)
        return self.cached("arguments", arguments)

    def input_specs(self):
        return [TensorSpec(prefixed(m.name, s.name), s.shape, s.dtype) for m, s in self._arguments()]

    def output_specs(self):
        return list(self.members[-1].layer.output_specs())

    def ops(self):
        unit = self.op_unit
        return sum(m.layer.ops() * m.layer.flops_per_op for m in self.members if m.layer.op_unit == unit)

    @property
    def anchor(self) -> Member:
        """The member doing the most work (the conv): its op unit is the fused kernel's."""
        return max(self.members, key=lambda m: m.layer.ops() * m.layer.flops_per_op
                   * (1000 if m.layer.op_unit in ("FLOP", "bit-MAC") else 1))

    @property
    def op_unit(self):  # type: ignore[override]
        return self.anchor.layer.op_unit

    @property
    def flops_per_op(self):  # type: ignore[override]
        return 1

    @property
    def exact(self):  # type: ignore[override]
        return self.members[-1].layer.exact

    def tolerance(self):
        tols = [m.layer.tolerance() for m in self.members]
        return max(t[0] for t in tols), max(t[1] for t in tols)

    def default_template(self) -> str:
        for name in PLANNER_TEMPLATES:
            if get_template(name).applies(self, targets.host()) is True:
                return name
        return "fused/sequential"

    # -- what is computed
    def declare(self, algorithm: str = "direct", *, inputs=None, prefix: str = "") -> Declaration:
        """Each member's declaration, reading the tensors of the members it is bound to: one TE graph."""
        if inputs or prefix:
            raise GraphError(f"fused layer {self.name}: a fused layer is not itself a member of another")
        outs, placeholders = {}, []
        for m in self.members:
            decl = m.layer.declare(inputs={arg: outs[src] for arg, src in m.binds}, prefix=prefixed(m.name, ""))
            placeholders += decl.inputs
            if len(decl.outputs) != 1:
                raise GraphError(f"member '{m.name}' has {len(decl.outputs)} outputs; fused members need one")
            outs[m.name] = decl.outputs[0]
        return Declaration(placeholders, [outs[self.members[-1].name]])

    def stage_axes(self) -> dict:
        """{stage: (spatial axis names, reduction axis names)} of the fused declaration."""
        return {n: (sp, rd) for n, sp, rd in compute_stages(self.declare().outputs)}

    def _split_args(self, arrays):
        args, i = {}, 0
        for m, s in self._arguments():
            args[(m.name, s.name)] = arrays[i]
            i += 1
        return args

    def prepare_inputs(self, arrays):
        arrays = list(arrays)
        if not self.cached("converts", lambda: any(type(m.layer).prepare_inputs is not Layer.prepare_inputs
                                                   for m in self.members)):
            return arrays             # no member converts its arguments (packs bits): nothing to do per call
        if len(arrays) != len(self._arguments()):
            return arrays  # the kernel reports the count mismatch
        args, out = self._split_args(arrays), []
        for m in self.members:
            bound = m.bind_dict
            full = prepare_params(m.layer, bound, lambda s: args[(m.name, s.name)])
            out += [a for a, s in zip(full, m.layer.input_specs()) if s.name not in bound]
        return out

    def reference(self, *arrays):
        args, vals = self._split_args(arrays), {}
        for m in self.members:
            bound = m.bind_dict
            full = [vals[bound[s.name]] if s.name in bound else args[(m.name, s.name)]
                    for s in m.layer.input_specs()]
            vals[m.name] = m.layer.reference(*full)
        return vals[self.members[-1].name]

    def random_inputs(self, seed: int = 0):
        out = []
        for i, m in enumerate(self.members):
            bound = m.bind_dict
            xs = m.layer.random_inputs(seed + i)
            out += [a for a, s in zip(xs, m.layer.input_specs()) if s.name not in bound]
        return out


def prepare_params(layer, bound, given) -> list:
    """layer.prepare_inputs() on its arguments when some come from other layers (already in kernel format):
    those positions get a kernel-format stand-in, so the hook converts (e.g. packs bits) only the others."""
    full = [np.zeros(s.shape, s.dtype) if s.name in bound else given(s) for s in layer.input_specs()]
    return list(layer.prepare_inputs(full))


def check_edge(src: str, have: TensorSpec, dst: str, kind: str, want: TensorSpec) -> None:
    """GraphError naming the edge and what differs, unless `src`'s output fits argument `want` of `dst`."""
    diffs = []
    if tuple(have.shape) != tuple(want.shape):
        diffs.append(f"shape {tuple(have.shape)} != {tuple(want.shape)}")
    if str(have.dtype) != str(want.dtype):
        diffs.append(f"dtype {have.dtype} != {want.dtype}")
    if diffs:
        raise GraphError(f"edge {src} -> {dst}: argument '{want.name}' of {kind} '{dst}' expects "
                         f"{tuple(want.shape)} {want.dtype}, but '{src}' gives {tuple(have.shape)} {have.dtype} "
                         f"({'; '.join(diffs)})")
