"""Graph: a DAG of layers (networkx underneath), checked along its edges; planned, compiled and run whole."""
from __future__ import annotations

import networkx as nx
import numpy as np

from .. import records
from .. import target as targets
from ..errors import GraphError
from ..kernel import as_kernel_arg, compile as compile_layer
from ..layers import Layer, TensorSpec
from ..schedule.fusion import SEP
from .fused import FusedLayer, Member, check_edge
from .plan import Plan, plan_graph
from .runtime import CompiledGraph


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
            check_edge(src, self.value_spec(src), name, type(layer).__name__, spec)
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
    def fused_layer(self, nodes) -> FusedLayer:
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
            rec = _best_record(self.layer(n))            # the member keeps its tuned schedule
            members.append(Member(n, self.layer(n), tuple((a, s) for a, s in self.binds(n).items() if s in inside),
                                  rec[0] if rec else None, tuple(sorted((rec[1] or {}).items())) if rec else ()))
        return FusedLayer(tuple(members), name="+".join(nodes))

    def plan(self, fuse=None, unfuse=None, fusion: bool = True, templates: dict | None = None) -> Plan:
        """Plan kernels. fusion=False: one kernel per node. fuse: groups of nodes to force together (a
        (nodes..., ) tuple, or {"nodes": [...], "template": "fused/..."}); unfuse: nodes to keep alone.
        templates: {group name or node: template} to override the template of a planned group."""
        return plan_graph(self, fuse=fuse, unfuse=unfuse, fusion=fusion, templates=templates)

    # -- compiling
    def compile(self, plan: Plan | None = None, target="host", knobs: dict | None = None) -> "CompiledGraph":
        """One kernel per plan group, compiled in topological order. knobs: {group name: knob dict}."""
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


def _best_record(layer):
    try:
        return records.best_record(layer, targets.host(), None)
    except Exception:  # a damaged tuning log must not stop planning; compile() reports it
        return None
