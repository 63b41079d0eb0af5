"""Members one after another in one function, each scheduled by its own template (no cross-layer locality).

It never pays by itself (each intermediate still makes a full trip through memory); it is the baseline the
other fused templates are measured against, and a way to ship a whole network as one function.
"""
from convsched.schedule import schedule_member

LAYER = "fused"
KNOBS = {}


def schedule(s, layer):
    for m in layer.members:
        schedule_member(s, layer, m.name)
