"""Helpers for fused templates (schedules/fused/*.py): schedule a fused layer's members with their own templates.

A fused layer (convsched.graph.FusedLayer) names each member's stages "<member>_<stage>". Inside a fused
template, schedule_member(s, layer, "c2") runs c2's own template on its stages through a MemberView, which
shows the member's template its stages under their own names ("conv", not "c2_conv").
"""
from __future__ import annotations

from ..errors import GraphError
from .template import get_template

SEP = "_"              # "<member>_<stage>": TVM turns "." in block names into "_", so use "_"


def prefixed(member: str, name: str) -> str:
    return f"{member}{SEP}{name}"


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


def member_template(layer, member: str, target):
    """(Template, knobs) a member is scheduled with: its planned template and knobs, else its default."""
    m = layer.member(member)
    tmpl = get_template(m.template or m.layer.default_template())
    if tmpl.algorithm != "direct":
        raise GraphError(f"member '{member}': template {tmpl.name} uses algorithm '{tmpl.algorithm}'; fused "
                         f"kernels declare the direct algorithm of each member")
    return tmpl, tmpl.check_knobs(m.layer, target, dict(m.knobs))


def schedule_member(s, layer, member: str) -> None:
    """Run a member's own template on its stages (inside a fused template)."""
    tmpl, knobs = member_template(layer, member, s.target)
    tmpl.ns["schedule"](MemberView(s, member), layer.member(member).layer, **knobs)


def stages_of(layer, member: str) -> list:
    """The stage names of one member inside the fused declaration, producers first."""
    p = member + SEP
    return [st for st in layer.stage_axes() if st.startswith(p)]
