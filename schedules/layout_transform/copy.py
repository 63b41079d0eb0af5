"""Layout transform: rows in parallel, the destination's innermost axis vectorized when it is a vector wide.

A copy is memory-bound; the one choice that matters is which side is read/written contiguously. NCHWc
blocks of cblock = target.lanes("float32") floats are exactly one vector, so NHWC <-> NCHWc moves whole vectors
both ways; other blocks and extents take whole vectors and a partial last one (tail="cut").
"""
from convsched.schedule import vectorize_innermost

LAYER = "layout_transform"

KNOBS = {"vectorize": [True, False]}


def schedule(s, layer, vectorize):
    out = s["out"]
    axes = out.axes
    outer = out.fuse(*axes[:3], name="rows")
    out.parallel(outer)
    if vectorize:
        vectorize_innermost(out, s.target.lanes("float32"))
