"""Networks of layers: a networkx DAG, checked along its edges, fused where it pays, compiled and run.

    import convsched as cs
    L = cs.layers
    g = cs.graph.Graph("resnet_block")
    x = g.input("x", (1, 56, 56, 64))
    c1 = g.add("c1", L.Conv2d(h=56, w=56, cin=64, cout=64, bias=True, act="relu"), x)
    c2 = g.add("c2", L.Conv2d(h=56, w=56, cin=64, cout=64, bias=True), c1)
    y = g.add("join", L.Add(h=56, w=56, c=64, act="relu"), c2, x)   # residual add + ReLU
    g.output(y)

    plan = g.plan()                 # fusion plan: which nodes become one kernel, with which template, and why
    print(plan)                     # c1 alone; [c2 + join] fused/epilogue; ...
    plan = g.plan(fuse=[("c1", "c2")], unfuse=["join"])    # override the planner (checked)
    net = g.compile(plan)           # one kernel per group, compiled in topological order
    params = g.random_params()      # {"c1.w": ..., "c1.b": ..., ...} (kernel argument names are node.spec)
    y = net(x_array, params=params) # or net.set_params(params); net(x_array)
    g.reference({"x": x_array}, params)    # numpy, node by node: the test oracle

Nodes are layers; a node's data inputs are the first arguments of its layer (in input_specs() order), the
rest are parameters (weights, biases, thresholds) given at run time as "<node>.<spec>". add() checks every
edge: the producer's output shape and dtype must equal the consumer's argument spec, or GraphError says which
edge, which argument, and what differs.

Fusion: a group of nodes becomes one FusedLayer, itself a Layer whose declare() chains the members' TE
declarations (a consumer reads its producer's stage directly; stages and weights are renamed
"<member>_<name>", e.g. "c2_conv", "c2_w") and whose template (schedules/fused/*.py) schedules the members
together: conv + bias + ReLU + Add as one register-tiled loop nest (fused/epilogue), conv rows computed
just before the pool row that reads them (fused/conv_pool), ... The planner fuses a producer into its only
consumer when a fused template applies to the pair and says why not otherwise; plan text shows every choice.

Intermediate buffers between kernels are planned once at compile time: a buffer is reused as soon as the
last kernel reading the value it holds has run (net.memory_plan() prints the slots).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import networkx as nx
import numpy as np

from .errors import ConvschedError
from .kernel import aligned_empty, as_kernel_arg
from .layers.base import Declaration, Layer, TensorSpec

SEP = "_"  # stage and argument names inside a fused layer: "<member>_<name>" (TVM turns "." into "_")

# Fused templates the planner tries, best first. fused/sequential (members scheduled one after another in one
# function, no cross-layer locality) never pays by itself: it is there for overrides and for export.
PLANNER_TEMPLATES = ("fused/conv_pool", "fused/epilogue")


class GraphError(ConvschedError, ValueError):
    """A malformed graph: unknown node, shape or dtype mismatch along an edge, bad fusion override."""


# ------------------------------------------------------------------------------------------ fused layers
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


def prefixed(member: str, name: str) -> str:
    return f"{member}{SEP}{name}"


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
                _check_edge(src, seen[src].output_specs()[0], m.name, type(m.layer).__name__, specs[arg])
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

    def __str__(self):
        return f"FusedLayer({' -> '.join(f'{m.name}:{type(m.layer).__name__}' for m in self.members)})"

    def _arguments(self):
        """[(member, argument spec)] of the fused kernel's arguments, in order."""
        out = []
        for m in self.members:
            bound = m.bind_dict
            out += [(m, s) for s in m.layer.input_specs() if s.name not in bound]
        return out

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
        from .schedule import get_template
        from .target import host
        for name in PLANNER_TEMPLATES:
            if get_template(name).applies(self, host()) is True:
                return name
        return "fused/sequential"

    # -- what is computed
    def declare(self, algorithm: str = "direct") -> Declaration:
        from .backend.graph import declare_member
        outs, inputs = {}, []
        for m in self.members:
            decl = declare_member(m.name, m.layer, {arg: outs[src] for arg, src in m.binds})
            inputs += decl.inputs
            if len(decl.outputs) != 1:
                raise GraphError(f"member '{m.name}' has {len(decl.outputs)} outputs; fused members need one")
            outs[m.name] = decl.outputs[0]
        return Declaration(inputs, [outs[self.members[-1].name]])

    def stage_axes(self) -> dict:
        """{stage: (spatial axis names, reduction axis names)} of the fused declaration."""
        from .backend import compute_stages
        return {n: (sp, rd) for n, sp, rd in compute_stages(self.declare().outputs)}

    def _split_args(self, arrays):
        args, i = {}, 0
        for m, s in self._arguments():
            args[(m.name, s.name)] = arrays[i]
            i += 1
        return args

    def prepare_inputs(self, arrays):
        arrays = list(arrays)
        if len(arrays) != len(self._arguments()):
            return arrays  # the kernel reports the count mismatch
        args, out = self._split_args(arrays), []
        for m in self.members:
            bound = m.bind_dict
            full = _prepare_params(m.layer, bound, lambda s: args[(m.name, s.name)])
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


def _prepare_params(layer, bound, given) -> list:
    """layer.prepare_inputs() on its arguments when some come from other layers (already in kernel format):
    those positions get a kernel-format stand-in, so the hook converts (e.g. packs bits) only the others."""
    full = [np.zeros(s.shape, s.dtype) if s.name in bound else given(s) for s in layer.input_specs()]
    return list(layer.prepare_inputs(full))


class MemberView:
    """What a member's own template sees as `s` inside a fused schedule: s["conv"] is the member's stage
    "<member>_conv", `"bias" in s` asks about the member's stages only, s.target is the target."""

    def __init__(self, s, member: str):
        self._s, self.member = s, member
        self.target = s.target

    def _full(self, stage: str) -> str:
        return stage if stage.startswith(self.member + SEP) else prefixed(self.member, stage)

    def __getitem__(self, stage: str):
        return self._s[self._full(stage)]

    def __contains__(self, stage: str) -> bool:
        return self._full(stage) in self._s

    @property
    def stages(self) -> list:
        p = self.member + SEP
        return [st[len(p):] for st in self._s.stages if st.startswith(p)]


def member_template(layer: FusedLayer, member: str, target):
    """(Template, knobs) a member is scheduled with: its planned template and knobs, else its default."""
    from .schedule import get_template
    m = layer.member(member)
    tmpl = get_template(m.template or m.layer.default_template())
    if tmpl.algorithm != "direct":
        raise GraphError(f"member '{member}': template {tmpl.name} uses algorithm '{tmpl.algorithm}'; fused "
                         f"kernels declare the direct algorithm of each member")
    return tmpl, tmpl.check_knobs(m.layer, target, dict(m.knobs))


def schedule_member(s, layer: FusedLayer, member: str) -> None:
    """Run a member's own template on its stages (inside a fused template)."""
    tmpl, knobs = member_template(layer, member, s.target)
    tmpl.ns["schedule"](MemberView(s, member), layer.member(member).layer, **knobs)


def stages_of(layer: FusedLayer, member: str) -> list:
    """The stage names of one member inside the fused declaration, producers first."""
    p = member + SEP
    return [st for st in layer.stage_axes() if st.startswith(p)]


# ---------------------------------------------------------------------------------------------- graphs
def _check_edge(src: str, have: TensorSpec, dst: str, kind: str, want: TensorSpec) -> None:
    diffs = []
    if tuple(have.shape) != tuple(want.shape):
        diffs.append(f"shape {tuple(have.shape)} != {tuple(want.shape)}")
    if str(have.dtype) != str(want.dtype):
        diffs.append(f"dtype {have.dtype} != {want.dtype}")
    if diffs:
        raise GraphError(f"edge {src} -> {dst}: argument '{want.name}' of {kind} '{dst}' expects "
                         f"{tuple(want.shape)} {want.dtype}, but '{src}' gives {tuple(have.shape)} {have.dtype} "
                         f"({'; '.join(diffs)})")


@dataclass
class Group:
    """Nodes compiled into one kernel; template None = the node's own layer and template.
    rewrite: (layer, {argument: (node, node argument)}) when a rewrite rule replaced the nodes by one layer
    that computes them together (e.g. BinaryConv2d + PopcountThreshold -> BinaryConv2d(threshold=True))."""
    nodes: tuple
    template: str | None = None
    why: str = ""
    rewrite: tuple | None = None

    @property
    def name(self) -> str:
        return "+".join(self.nodes)


@dataclass
class Plan:
    """The fusion plan: groups in execution (topological) order, and why each edge was or was not fused."""
    groups: list
    notes: list = field(default_factory=list)      # (edge, decision) lines

    def group_of(self, node: str) -> Group:
        for g in self.groups:
            if node in g.nodes:
                return g
        raise KeyError(node)

    def __str__(self):
        lines = ["fusion plan:"]
        for i, g in enumerate(self.groups):
            what = g.template or (type(g.rewrite[0]).__name__ if g.rewrite else "(own template)")
            lines.append(f"  kernel {i}: {' + '.join(g.nodes):40s} {what}" + (f"   # {g.why}" if g.why else ""))
        if self.notes:
            lines.append("edges:")
            lines += [f"  {e}: {d}" for e, d in self.notes]
        return "\n".join(lines)


class Graph:
    """A DAG of layers (networkx DiGraph underneath: self.nx). Values are named after the node (or graph
    input) that produces them; every node has one output."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nx = nx.DiGraph()
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: list[str] = []

    # -- building
    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self._new_name(name)
        self.inputs[name] = TensorSpec(name, tuple(int(s) for s in shape), str(np.dtype(dtype)))
        self.nx.add_node(name, kind="input", spec=self.inputs[name])
        return name

    def add(self, name: str, layer: Layer, *inputs, **named_inputs) -> str:
        """Add node `name` computing `layer`; its first arguments read the given values (node or input
        names), positionally or by argument name. Checked here: names, arity, shapes, dtypes."""
        self._new_name(name)
        if not isinstance(layer, Layer):
            raise GraphError(f"node '{name}': expected a convsched layer, got {type(layer).__name__}")
        if "." in name or SEP in name:
            raise GraphError(f"node name '{name}' may not contain '.' or '{SEP}' (they separate node and argument "
                             f"names)")
        specs = layer.input_specs()
        outs = layer.output_specs()
        if len(outs) != 1:
            raise GraphError(f"node '{name}': {type(layer).__name__} has {len(outs)} outputs; graph nodes need one")
        binds = {}
        if len(inputs) > len(specs):
            raise GraphError(f"node '{name}': {type(layer).__name__} takes {len(specs)} arguments "
                             f"({', '.join(s.name for s in specs)}), got {len(inputs)} inputs")
        for spec, src in zip(specs, inputs):
            binds[spec.name] = src
        names = {s.name for s in specs}
        for arg, src in named_inputs.items():
            if arg not in names:
                raise GraphError(f"node '{name}': {type(layer).__name__} has no argument '{arg}' "
                                 f"(arguments: {', '.join(s.name for s in specs)})")
            if arg in binds:
                raise GraphError(f"node '{name}': argument '{arg}' given twice")
            binds[arg] = src
        if not binds:
            raise GraphError(f"node '{name}': no inputs; give the value(s) it reads")
        for arg, src in binds.items():
            if src not in self.nx:
                raise GraphError(f"node '{name}': input '{src}' is not a node or graph input of {self.name} "
                                 f"(known: {', '.join(self.nx.nodes) or 'none'})")
            spec = next(s for s in specs if s.name == arg)
            _check_edge(src, self.value_spec(src), name, type(layer).__name__, spec)
        self.nx.add_node(name, kind="layer", layer=layer, binds=binds)
        for arg, src in binds.items():
            self.nx.add_edge(src, name, arg=arg)
        return name

    def output(self, *names: str) -> None:
        for n in names:
            if n not in self.nx:
                raise GraphError(f"output '{n}' is not a node of {self.name}")
            if n not in self.outputs:
                self.outputs.append(n)

    def _new_name(self, name):
        if not isinstance(name, str) or not name:
            raise GraphError(f"node names are non-empty strings, got {name!r}")
        if name in self.nx:
            raise GraphError(f"'{name}' is already a node or input of {self.name}")

    # -- reading
    def layer(self, node: str) -> Layer:
        return self.nx.nodes[node]["layer"]

    def nodes(self) -> list[str]:
        """Layer nodes in topological order (ties broken by insertion order)."""
        order = {n: i for i, n in enumerate(self.nx.nodes)}
        return [n for n in nx.lexicographical_topological_sort(self.nx, key=lambda n: order[n])
                if self.nx.nodes[n]["kind"] == "layer"]

    def value_spec(self, value: str) -> TensorSpec:
        d = self.nx.nodes[value]
        return d["spec"] if d["kind"] == "input" else d["layer"].output_specs()[0]

    def binds(self, node: str) -> dict:
        return self.nx.nodes[node]["binds"]

    def params(self, node: str) -> list[TensorSpec]:
        """The node's parameter arguments (those not read from another value)."""
        b = self.binds(node)
        return [s for s in self.layer(node).input_specs() if s.name not in b]

    def consumers(self, value: str) -> list[str]:
        return list(self.nx.successors(value))

    def validate(self) -> None:
        if not self.outputs:
            raise GraphError(f"{self.name} has no outputs; call output(name)")
        if not nx.is_directed_acyclic_graph(self.nx):
            raise GraphError(f"{self.name} has a cycle: {nx.find_cycle(self.nx)}")
        needed = set(self.outputs)
        for o in self.outputs:
            needed |= nx.ancestors(self.nx, o)
        dead = [n for n in self.nodes() if n not in needed]
        if dead:
            raise GraphError(f"{self.name}: node(s) {', '.join(dead)} feed no output")

    def random_params(self, seed: int = 0) -> dict:
        """{"node.arg": array} for every parameter, from each layer's random_inputs()."""
        out = {}
        for i, n in enumerate(self.nodes()):
            layer = self.layer(n)
            xs = layer.prepare_inputs(list(layer.random_inputs(seed + i)))    # kernel format (e.g. packed bits)
            b = self.binds(n)
            for s, a in zip(layer.input_specs(), xs):
                if s.name not in b:
                    out[f"{n}.{s.name}"] = a
        return out

    def random_inputs(self, seed: int = 0) -> dict:
        rng = np.random.default_rng(seed)
        out = {}
        for name, s in self.inputs.items():
            dt = np.dtype(s.dtype)
            if dt.kind == "f":
                out[name] = rng.uniform(-1, 1, s.shape).astype(dt)
            else:
                info = np.iinfo(dt)
                out[name] = rng.integers(info.min, info.max, s.shape, dtype=dt, endpoint=True)
        return out

    def reference(self, inputs: dict, params: dict):
        """numpy, node by node through each layer's reference(): the test oracle."""
        vals = dict(self._check_inputs(inputs))
        for n in self.nodes():
            vals[n] = self.layer(n).reference(*self._node_args(n, vals, params))
        outs = [vals[o] for o in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _check_inputs(self, inputs: dict) -> dict:
        unknown = set(inputs) - set(self.inputs)
        missing = set(self.inputs) - set(inputs)
        if unknown or missing:
            raise GraphError(f"{self.name} inputs: " + "; ".join(
                ([f"unknown {', '.join(sorted(unknown))}"] if unknown else [])
                + ([f"missing {', '.join(sorted(missing))}"] if missing else [])))
        return {k: as_kernel_arg(v, self.inputs[k], f"graph input") for k, v in inputs.items()}

    def _node_args(self, n, vals, params):
        b, args = self.binds(n), []
        for s in self.layer(n).input_specs():
            if s.name in b:
                args.append(vals[b[s.name]])
            else:
                key = f"{n}.{s.name}"
                if key not in params:
                    raise GraphError(f"parameter '{key}' ({tuple(s.shape)} {s.dtype}) was not given")
                args.append(params[key])
        return args

    # -- fusion planning
    def fused_layer(self, nodes, template_hint: str | None = None) -> FusedLayer:
        """The FusedLayer computing `nodes` (a connected set whose only external consumer is the last)."""
        nodes = [n for n in self.nodes() if n in set(nodes)]
        if len(nodes) != len(set(nodes)):
            raise GraphError(f"fusion group {nodes} names a node twice")
        members, inside = [], set(nodes)
        last = nodes[-1]
        for n in nodes:
            if n not in self.nx or self.nx.nodes[n]["kind"] != "layer":
                raise GraphError(f"fusion group names '{n}', which is not a layer node of {self.name}")
            if n != last:
                outside = [c for c in self.consumers(n) if c not in inside]
                if outside or n in self.outputs:
                    who = ", ".join(outside) if outside else "the graph output"
                    raise GraphError(f"cannot fuse {'+'.join(nodes)}: the output of '{n}' is also read by {who}, "
                                     f"outside the group; only the last node's output can leave a fused kernel")
            rec = _best_record(self.layer(n))
            members.append(Member(n, self.layer(n), tuple((a, s) for a, s in self.binds(n).items() if s in inside),
                                  rec[0] if rec else None, tuple(sorted((rec[1] or {}).items())) if rec else ()))
        return FusedLayer(tuple(members), name="+".join(nodes))

    def plan(self, fuse=None, unfuse=None, fusion: bool = True, templates: dict | None = None) -> Plan:
        """Plan kernels. fusion=False: one kernel per node. fuse: groups of nodes to force together (a
        (nodes..., ) tuple, or {"nodes": [...], "template": "fused/..."}); unfuse: nodes to keep alone.
        templates: {group name or node: template} to override the template of a planned group."""
        from .schedule import get_template
        from .target import host
        self.validate()
        tgt = host()
        order = self.nodes()
        group_of = {n: [n] for n in order}
        notes = []
        forced = []
        for f in fuse or ():
            nodes, tmpl = (f.get("nodes"), f.get("template")) if isinstance(f, dict) else (tuple(f), None)
            fl = self.fused_layer(nodes)            # checks legality
            forced.append(([m.name for m in fl.members], tmpl))
        keep_alone = set(unfuse or ())
        for n in keep_alone:
            if n not in group_of:
                raise GraphError(f"unfuse names '{n}', which is not a layer node of {self.name}")
        chosen, rewritten = {}, {}
        for nodes, tmpl in forced:
            grp = list(nodes)
            for n in nodes:
                if group_of[n] is not None and len(group_of[n]) > 1:
                    raise GraphError(f"node '{n}' is in two fuse groups")
            for n in nodes:
                group_of[n] = grp
            fl = self.fused_layer(grp)
            name = tmpl or fl.default_template()
            ok = get_template(name).applies(fl, tgt)
            if ok is not True:
                raise GraphError(f"fused template {name} does not apply to {'+'.join(grp)}: {ok}")
            chosen[tuple(grp)] = (name, "forced by fuse=")
        if fusion:
            for v in order:
                if v in keep_alone or len(group_of[v]) > 1 and tuple(group_of[v]) in chosen:
                    continue
                for u in [s for s in self.binds(v).values() if s in group_of]:
                    edge = f"{u} -> {v}"
                    grp_u = group_of[u]
                    if tuple(grp_u) in chosen and chosen[tuple(grp_u)][1] == "forced by fuse=":
                        notes.append((edge, "not fused: producer is in a forced group"))
                        continue
                    if u in keep_alone:
                        notes.append((edge, "not fused: unfuse= keeps the producer alone"))
                        continue
                    if grp_u[-1] != u or len(self.consumers(u)) != 1 or u in self.outputs:
                        notes.append((edge, f"not fused: the output of {u} is also read elsewhere"))
                        continue
                    cand = grp_u + [v]
                    eff, emap = rewritten.get(tuple(grp_u)) or (self.layer(u), {a.name: (u, a.name)
                                                                                  for a in self.layer(u).input_specs()})
                    rw = next(((f, r) for f in REWRITES if (r := f(eff, self.layer(v))) is not None), None)
                    if rw is not None:
                        new_layer, amap = rw[1]
                        vmap = {a.name: (v, a.name) for a in self.layer(v).input_specs()}
                        full = {arg: (emap if side == 0 else vmap)[a] for arg, (side, a) in amap.items()}
                        for n in cand:
                            group_of[n] = cand
                        rewritten.pop(tuple(grp_u), None)
                        chosen.pop(tuple(grp_u), None)
                        rewritten[tuple(cand)] = (new_layer, full)
                        chosen[tuple(cand)] = (None, f"rewritten as {type(new_layer).__name__} ({rw[0].__doc__.split(':')[0].strip()})")
                        notes.append((edge, f"fused (rewrite {rw[0].__name__[4:]})"))
                        continue
                    try:
                        fl = self.fused_layer(cand)
                    except GraphError as e:
                        notes.append((edge, f"not fused: {e}"))
                        continue
                    why = []
                    for name in PLANNER_TEMPLATES:
                        ok = get_template(name).applies(fl, tgt)
                        if ok is True:
                            for n in cand:
                                group_of[n] = cand
                            chosen.pop(tuple(grp_u), None)
                            chosen[tuple(cand)] = (name, _pays(name))
                            notes.append((edge, f"fused ({name})"))
                            break
                        why.append(f"{name}: {ok}")
                    else:
                        notes.append((edge, "not fused: " + "; ".join(why)))
                    break
        groups, seen = [], set()
        for n in order:
            g = group_of[n]
            if n in seen:
                continue
            seen.update(g)
            if len(g) == 1:
                groups.append(Group((n,), None, ""))
            else:
                name, why = chosen[tuple(g)]
                groups.append(Group(tuple(g), name, why, rewritten.get(tuple(g))))
        for key, t in (templates or {}).items():
            grp = next((g for g in groups if g.name == key or key in g.nodes), None)
            if grp is None:
                raise GraphError(f"templates= names '{key}', which is no group or node")
            grp.template = t
        return Plan(groups, notes)

    # -- compiling
    def compile(self, plan: Plan | None = None, target="host", knobs: dict | None = None) -> "CompiledGraph":
        """One kernel per plan group, compiled in topological order. knobs: {group name: knob dict}."""
        from .kernel import compile as compile_layer
        plan = plan or self.plan()
        kernels = []
        for g in plan.groups:
            if g.rewrite is not None:
                layer, tmpl = g.rewrite[0], g.template
            elif len(g.nodes) == 1 and (g.template is None or g.template.split("/")[0] != "fused"):
                layer = self.layer(g.nodes[0])
                tmpl = g.template
            else:
                layer = self.fused_layer(g.nodes)
                tmpl = g.template or layer.default_template()
            kn = (knobs or {}).get(g.name)
            kernels.append(compile_layer(layer, template=tmpl, knobs=kn, target=target)
                           if (tmpl or kn) else compile_layer(layer, target=target))
        return CompiledGraph(self, plan, kernels)


# ------------------------------------------------------------------------------------------ rewrites
def _rw_bconv_threshold(p, c):
    """BinaryConv2d(int32 out) -> PopcountThreshold  =>  BinaryConv2d(threshold=True): the count never leaves
    registers; bits are packed as they are produced."""
    if type(p).__name__ == "BinaryConv2d" and not p.threshold and c.KIND == "popcount_threshold":
        from dataclasses import replace
        return replace(p, threshold=True, compare=c.compare), {"x": (0, "x"), "w": (0, "w"),
                                                                "thresholds": (1, "thresholds")}
    return None


def _rw_bconv_segpool(p, c):
    """BinaryConv2d(threshold=True) -> SegmentedBitPool  =>  BinaryConvPool: activations counted per
    segment, never stored."""
    if type(p).__name__ == "BinaryConv2d" and p.threshold and c.KIND == "segmented_bit_pool":
        from .layers import BinaryConvPool
        return BinaryConvPool(**p.params(), segments=c.segments), {"x": (0, "x"), "w": (0, "w"),
                                                                    "thresholds": (0, "thresholds")}
    return None


# (producer layer, consumer layer) -> (fused layer, {fused argument: (0 = producer | 1 = consumer, argument)})
REWRITES = [_rw_bconv_threshold, _rw_bconv_segpool]


def _pays(template: str) -> str:
    return {"fused/epilogue": "elementwise tail computed in the anchor's register tile: saves a pass over memory",
            "fused/conv_pool": "pool rows computed right after the conv rows they read (no recompute, in cache)",
            }.get(template, "")


def _best_record(layer):
    from .kernel import _best_record as best
    from .target import host
    try:
        return best(layer, host(), None)
    except Exception:  # a damaged tuning log must not stop planning; compile() reports it
        return None


# --------------------------------------------------------------------------------------------- running
class CompiledGraph:
    """A compiled network: call it on its inputs; intermediate buffers are planned and reused."""

    def __init__(self, graph: Graph, plan: Plan, kernels: list):
        self.graph, self.plan, self.kernels = graph, plan, kernels
        self.params: dict = {}
        self._prepared: list | None = None
        self._plan_memory()

    def __repr__(self):
        return f"CompiledGraph({self.graph.name}, {len(self.kernels)} kernels)"

    # each group reads values (graph inputs or other groups' outputs) and parameters
    def _group_args(self, gi):
        """[(kind, key)] of kernel gi's arguments: ("value", name) or ("param", "node.arg")."""
        g = self.plan.groups[gi]
        inside = set(g.nodes)
        out = []
        if g.rewrite is not None:
            layer, amap = g.rewrite
            for s in layer.input_specs():
                node, arg = amap[s.name]
                src = self.graph.binds(node).get(arg)
                out.append(("param", f"{node}.{arg}") if src is None else ("value", src))
            return out
        for n in g.nodes:
            for s in self.graph.layer(n).input_specs():
                src = self.graph.binds(n).get(s.name)
                if src is None:
                    out.append(("param", f"{n}.{s.name}"))
                elif src not in inside:
                    out.append(("value", src))
        return out

    def _plan_memory(self):
        """Give each intermediate value a slot; a slot is free again once the value's last reader ran."""
        groups = self.plan.groups
        produced = {g.nodes[-1]: i for i, g in enumerate(groups)}
        last_use = {}
        for i in range(len(groups)):
            for kind, key in self._group_args(i):
                if kind == "value":
                    last_use[key] = i
        self.slot_of, sizes, free = {}, [], []
        for i, g in enumerate(groups):
            v = g.nodes[-1]
            if v not in self.graph.outputs:
                spec = self.graph.value_spec(v)
                nbytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
                fit = sorted((sizes[s], s) for s in free if sizes[s] >= nbytes)
                if fit:
                    slot = fit[0][1]
                    free.remove(slot)
                else:
                    slot = len(sizes)
                    sizes.append(nbytes)
                self.slot_of[v] = slot
            # values whose last reader is this group: their slots are free for the next groups
            for kind, key in self._group_args(i):
                if kind == "value" and last_use.get(key) == i and key in self.slot_of and key in produced:
                    if self.slot_of[key] not in free:
                        free.append(self.slot_of[key])
        self.slot_sizes = sizes
        self._slots = [aligned_empty((s,), np.uint8) for s in sizes]

    def memory_plan(self) -> str:
        unshared = sum(int(np.prod(self.graph.value_spec(v).shape)) * np.dtype(self.graph.value_spec(v).dtype).itemsize
                       for v in self.slot_of)
        lines = [f"intermediate buffers: {len(self.slot_sizes)} slots, {sum(self.slot_sizes)} bytes "
                 f"(one buffer per value would take {unshared} bytes)"]
        for v, s in self.slot_of.items():
            lines.append(f"  {v:20s} -> slot {s} ({self.slot_sizes[s]} bytes)")
        return "\n".join(lines)

    def set_params(self, params: dict) -> None:
        """Give the parameters ("node.arg" -> array; kernel format, or whatever the layer's prepare_inputs
        takes). Checked and aligned once here, not per call."""
        need = {f"{n}.{s.name}": (n, s) for n in self.graph.nodes() for s in self.graph.params(n)}
        missing, unknown = set(need) - set(params), set(params) - set(need)
        if missing or unknown:
            raise GraphError("parameters: " + "; ".join(
                ([f"missing {', '.join(sorted(missing))}"] if missing else [])
                + ([f"unknown {', '.join(sorted(unknown))}"] if unknown else [])))
        prepared = {}
        for n in self.graph.nodes():
            layer = self.graph.layer(n)
            b = self.graph.binds(n)
            full = _prepare_params(layer, b, lambda s: params[f"{n}.{s.name}"])
            for s, a in zip(layer.input_specs(), full):
                if s.name not in b:
                    prepared[f"{n}.{s.name}"] = as_kernel_arg(a, s, f"parameter {n}")
        self.params = prepared

    def __call__(self, *args, params: dict | None = None, **inputs):
        if params is not None:
            self.set_params(params)
        if not self.params and any(self.graph.params(n) for n in self.graph.nodes()):
            raise GraphError("no parameters: call set_params(params) or pass params=")
        names = list(self.graph.inputs)
        if len(args) > len(names):
            raise GraphError(f"{self.graph.name} takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        inputs.update(zip(names, args))
        vals = self.graph._check_inputs(inputs)
        for i, (g, k) in enumerate(zip(self.plan.groups, self.kernels)):
            kargs = [vals[key] if kind == "value" else self.params[key] for kind, key in self._group_args(i)]
            spec = k.layer.output_specs()[0]
            v = g.nodes[-1]
            if v in self.slot_of:
                nbytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
                out = self._slots[self.slot_of[v]][:nbytes].view(spec.dtype).reshape(spec.shape)
            else:
                out = aligned_empty(spec.shape, spec.dtype)
            kspecs = k.layer.input_specs()
            if len(kargs) != len(kspecs):
                raise GraphError(f"kernel {g.name}: {len(kargs)} arguments for {len(kspecs)} specs (internal error)")
            k._built(*[as_kernel_arg(a, s, "input") for a, s in zip(kargs, kspecs)], out)
            vals[v] = out
        outs = [vals[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def benchmark(self, inputs: dict | None = None, repeat: int = 20, number: int = 5) -> dict:
        """Wall time of whole forward passes (Python dispatch included): best and median ms."""
        import time
        inputs = inputs or self.graph.random_inputs()
        self(**inputs)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                self(**inputs)
            times.append((time.perf_counter() - t0) / number * 1e3)
        return {"best_ms": float(np.min(times)), "median_ms": float(np.median(times))}

    def describe(self) -> str:
        return "\n\n".join([str(self.plan), self.memory_plan()] + [k.schedule.text() for k in self.kernels])

    def export(self, path, name: str | None = None):
        """Write every kernel of the network into one library (convsched.export: libNAME.so, NAME.h,
        manifest.json) plus graph.json: the kernels in execution order, which value or parameter each
        argument is, and the intermediate buffer slots, so a C program can run the network."""
        from . import export as _export
        names = [g.name.replace("+", "__") for g in self.plan.groups]
        out = _export.export(dict(zip(names, self.kernels)), path, name=name)
        wiring = {"graph": self.graph.name, "inputs": {k: [list(v.shape), v.dtype] for k, v in self.graph.inputs.items()},
                  "outputs": list(self.graph.outputs),
                  "kernels": [{"entry": n, "nodes": list(g.nodes), "template": g.template,
                               "arguments": [f"{kind}:{key}" for kind, key in self._group_args(i)],
                               "output": g.nodes[-1]} for i, (n, g) in enumerate(zip(names, self.plan.groups))],
                  "slots": {"bytes": self.slot_sizes, "values": self.slot_of}}
        (out / "graph.json").write_text(json.dumps(wiring, indent=1) + "\n")
        return out


# ------------------------------------------------------------------------------------ example networks
def resnet_basic_block(h: int = 56, c: int = 64, n: int = 1) -> Graph:
    """ResNet-18 basic block (stride 1, inference): conv3x3-BN-ReLU, conv3x3-BN, + x, ReLU, BN folded into
    each conv's bias. Planned: [c1] [c2 + join] (the residual add and ReLU inlined into c2's epilogue)."""
    g = Graph(f"resnet_block_{h}x{h}x{c}")
    x = g.input("x", (n, h, h, c))
    from .layers import Add, Conv2d
    g.add("c1", Conv2d(n=n, h=h, w=h, cin=c, cout=c, bias=True, act="relu"), x)
    g.add("c2", Conv2d(n=n, h=h, w=h, cin=c, cout=c, bias=True), "c1")
    g.add("join", Add(n=n, h=h, w=h, c=c, act="relu"), "c2", x)
    g.output("join")
    return g


def mobilenet_block(h: int = 56, cin: int = 64, cout: int = 128, stride: int = 1, n: int = 1) -> Graph:
    """MobileNet(v1) block: depthwise 3x3 (groups = cin) + BN + ReLU, pointwise 1x1 + BN + ReLU."""
    from .layers import Conv2d
    g = Graph(f"mobilenet_block_{h}x{h}x{cin}_{cout}")
    x = g.input("x", (n, h, h, cin))
    dw = Conv2d(n=n, h=h, w=h, cin=cin, cout=cin, groups=cin, stride=stride, bias=True, act="relu")
    g.add("dw", dw, x)
    g.add("pw", Conv2d(n=n, h=dw.oh, w=dw.ow, cin=cin, cout=cout, kh=1, kw=1, pad=0, bias=True, act="relu"), "dw")
    g.output("pw")
    return g


def binary_net(h: int = 32, c: int = 64, c2: int = 128, classes: int = 10, segments: int = 2, n: int = 1) -> Graph:
    """A small binary net: bitpack -> binary conv 3x3 -> threshold -> bit max pool 2x2 -> binary conv 3x3
    (valid) + threshold -> segmented bit pool -> FC scores (popcount mismatches per class).
    Planned: [pack] [bconv1 + thr1 -> BinaryConv2d(threshold=True)] [mpool] [bconv2 + seg -> BinaryConvPool] [fc]."""
    from .layers import BinaryConv2d, BitDense, BitMaxPool2d, BitPack, PopcountThreshold, SegmentedBitPool
    g = Graph(f"binary_net_{h}x{h}x{c}")
    x = g.input("x", (n, h, h, c))
    g.add("pack", BitPack(n=n, h=h, w=h, c=c), x)
    g.add("bconv1", BinaryConv2d(n=n, h=h, w=h, cin=c, cout=c, kh=3, kw=3, pad=1), "pack")
    g.add("thr1", PopcountThreshold(n=n, h=h, w=h, c=c), "bconv1")
    g.add("mpool", BitMaxPool2d(n=n, h=h, w=h, c=c, k=2, stride=2), "thr1")
    b2 = BinaryConv2d(n=n, h=h // 2, w=h // 2, cin=c, cout=c2, kh=3, kw=3, pad=0, threshold=True)
    g.add("bconv2", b2, "mpool")
    g.add("seg", SegmentedBitPool(n=n, h=b2.oh, w=b2.ow, c=c2, segments=segments), "bconv2")
    g.add("fc", BitDense(n=n, h=segments, w=segments, c=c2, classes=classes), "seg")
    g.output("fc")
    return g
