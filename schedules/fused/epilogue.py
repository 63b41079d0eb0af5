"""An anchor layer (conv, dense, ...) followed by elementwise layers (Add, ...): the tail is inlined into the
anchor's own output stage, so a residual add + ReLU is computed on the conv's register tile as it is stored.

    c2: conv -> bias      (c2's own template: register tile, bias at the tile)
    join: add -> act      reverse_compute_inline'd into c2_bias: one store of act(conv + b + x)

Applies when the first member ends in a non-reduction stage (a conv with bias=True or act) and every later
member is ELEMENTWISE. Measured (Zen 3, 2 threads, 56x56x64 3x3 conv + bias + residual add + ReLU):
see benchmarks/networks.py; the add costs ~nothing once fused vs ~0.05 ms as its own kernel.
"""
from convsched.schedule import schedule_member, stages_of

LAYER = "fused"
KNOBS = {}


def applies(layer, target):
    anchor, tail = layer.members[0], layer.members[1:]
    if not tail:
        return "nothing to fuse"
    if getattr(anchor.layer, "ELEMENTWISE", False):
        return "the first member is elementwise itself (nothing to anchor on)"
    bad = [m.name for m in tail if not getattr(m.layer, "ELEMENTWISE", False)]
    if bad:
        return f"{', '.join(bad)} not elementwise"
    for m in tail:
        if not m.binds:
            return f"{m.name} reads nothing from the chain"
    axes = layer.stage_axes()
    last = stages_of(layer, anchor.name)[-1]
    if axes[last][1]:
        return f"the anchor's output stage {last} is a reduction (no bias/act stage to inline into)"
    return True


def schedule(s, layer):
    schedule_member(s, layer, layer.members[0].name)
    for m in layer.members[1:]:
        for st in stages_of(layer, m.name):
            s[st].reverse_compute_inline()
