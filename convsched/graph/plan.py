"""The fusion planner: which nodes of a graph become one kernel, with which template, and why.

Walking the nodes in topological order, each edge u -> v is fused when u's output is read by v alone and
either a rewrite rule (rewrites.py) turns the pair into one layer, or a fused template applies to the pair
(PLANNER_TEMPLATES, best first). Every decision is noted, so a printed plan says why each edge was or was
not fused. fuse= / unfuse= / templates= override the planner (and are checked).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import target as targets
from ..errors import GraphError
from ..schedule import get_template
from .fused import PLANNER_TEMPLATES
from .rewrites import REWRITES

FORCED = "forced by fuse="

# why a fused template pays, for the plan's text
PAYS = {"fused/epilogue": "elementwise tail computed in the anchor's register tile: saves a pass over memory",
        "fused/conv_pool": "pool rows computed right after the conv rows they read (no recompute, in cache)"}


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


class _Planner:
    def __init__(self, graph):
        graph.validate()
        self.g, self.tgt = graph, targets.host()
        self.order = graph.nodes()
        self.group_of = {n: [n] for n in self.order}
        self.chosen: dict = {}          # group (tuple of nodes) -> (template or None, why)
        self.rewritten: dict = {}       # group -> (layer, argument map)
        self.notes: list = []

    def force(self, fuse) -> None:
        forced = []
        for f in fuse or ():
            nodes, tmpl = (f.get("nodes"), f.get("template")) if isinstance(f, dict) else (tuple(f), None)
            fl = self.g.fused_layer(nodes)            # checks legality
            forced.append((fl, tmpl))
        for fl, tmpl in forced:
            grp = [m.name for m in fl.members]
            for n in grp:
                if self.group_of[n] is not None and len(self.group_of[n]) > 1:
                    raise GraphError(f"node '{n}' is in two fuse groups")
            for n in grp:
                self.group_of[n] = grp
            name = tmpl or fl.default_template()
            ok = get_template(name).applies(fl, self.tgt)
            if ok is not True:
                raise GraphError(f"fused template {name} does not apply to {'+'.join(grp)}: {ok}")
            self.chosen[tuple(grp)] = (name, FORCED)

    def fuse_edges(self, keep_alone: set) -> None:
        for v in self.order:
            if v in keep_alone or len(self.group_of[v]) > 1 and tuple(self.group_of[v]) in self.chosen:
                continue
            for u in [s for s in self.g.binds(v).values() if s in self.group_of]:
                if self._edge(u, v, keep_alone):
                    break

    def _edge(self, u: str, v: str, keep_alone: set) -> bool:
        """Decide edge u -> v. True: v's fusion is decided (by a fused template, or none applies); False: look
        at v's next producer (this one cannot be fused with v, or was fused by a rewrite rule)."""
        edge, grp_u = f"{u} -> {v}", self.group_of[u]
        if tuple(grp_u) in self.chosen and self.chosen[tuple(grp_u)][1] == FORCED:
            self.notes.append((edge, "not fused: producer is in a forced group"))
            return False
        if u in keep_alone:
            self.notes.append((edge, "not fused: unfuse= keeps the producer alone"))
            return False
        if grp_u[-1] != u or len(self.g.consumers(u)) != 1 or u in self.g.outputs:
            self.notes.append((edge, f"not fused: the output of {u} is also read elsewhere"))
            return False
        cand = grp_u + [v]
        if self._rewrite(u, v, grp_u, cand, edge):
            return False
        try:
            fl = self.g.fused_layer(cand)
        except GraphError as e:
            self.notes.append((edge, f"not fused: {e}"))
            return False
        why = []
        for name in PLANNER_TEMPLATES:
            ok = get_template(name).applies(fl, self.tgt)
            if ok is True:
                self._join(cand)
                self.chosen.pop(tuple(grp_u), None)
                self.chosen[tuple(cand)] = (name, PAYS.get(name, ""))
                self.notes.append((edge, f"fused ({name})"))
                return True
            why.append(f"{name}: {ok}")
        self.notes.append((edge, "not fused: " + "; ".join(why)))
        return True

    def _rewrite(self, u, v, grp_u, cand, edge) -> bool:
        """Fuse u's group and v by a rewrite rule if one applies (to the group's layer so far)."""
        layer_u = self.g.layer(u)
        eff, emap = self.rewritten.get(tuple(grp_u)) or (layer_u, {a.name: (u, a.name) for a in layer_u.input_specs()})
        rule = next(((f, r) for f in REWRITES if (r := f(eff, self.g.layer(v))) is not None), None)
        if rule is None:
            return False
        fn, (new_layer, amap) = rule
        vmap = {a.name: (v, a.name) for a in self.g.layer(v).input_specs()}
        full = {arg: (emap if side == 0 else vmap)[a] for arg, (side, a) in amap.items()}
        self._join(cand)
        self.rewritten.pop(tuple(grp_u), None)
        self.chosen.pop(tuple(grp_u), None)
        self.rewritten[tuple(cand)] = (new_layer, full)
        self.chosen[tuple(cand)] = (None, f"rewritten as {type(new_layer).__name__} "
                                          f"({fn.__doc__.split(':')[0].strip()})")
        self.notes.append((edge, f"fused (rewrite {fn.__name__[4:]})"))
        return True

    def _join(self, cand) -> None:
        for n in cand:
            self.group_of[n] = cand

    def plan(self, templates) -> Plan:
        groups, seen = [], set()
        for n in self.order:
            g = self.group_of[n]
            if n in seen:
                continue
            seen.update(g)
            if len(g) == 1:
                groups.append(Group((n,), None, ""))
            else:
                name, why = self.chosen[tuple(g)]
                groups.append(Group(tuple(g), name, why, self.rewritten.get(tuple(g))))
        for key, t in (templates or {}).items():
            grp = next((g for g in groups if g.name == key or key in g.nodes), None)
            if grp is None:
                raise GraphError(f"templates= names '{key}', which is no group or node")
            grp.template = t
        return Plan(groups, self.notes)


def plan_graph(graph, fuse=None, unfuse=None, fusion: bool = True, templates: dict | None = None) -> Plan:
    """See Graph.plan."""
    p = _Planner(graph)
    p.force(fuse)
    keep_alone = set(unfuse or ())
    for n in keep_alone:
        if n not in p.group_of:
            raise GraphError(f"unfuse names '{n}', which is not a layer node of {graph.name}")
    if fusion:
        p.fuse_edges(keep_alone)
    return p.plan(templates)
