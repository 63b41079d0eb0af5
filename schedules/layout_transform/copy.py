"""Layout transform: rows in parallel, the destination's innermost axis vectorized when it is a vector wide.

A copy is memory-bound; the one choice that matters is which side is read/written contiguously. NCHWc
blocks of 8 floats are exactly one AVX2 vector, so NHWC <-> NCHWc moves whole vectors both ways.
"""
LAYER = "layout_transform"

KNOBS = {"vectorize": [True, False]}


def schedule(s, layer, vectorize):
    out = s["out"]
    axes = out.axes
    outer = out.fuse(*axes[:3], name="rows")
    out.parallel(outer)
    lanes = s.target.lanes("float32")
    extent = {"NCHWc": layer.cblock, "NCHW": layer.w, "NHWC": layer.c}[layer.dst]
    if vectorize and extent % lanes == 0:
        if extent > lanes:
            _, v = out.split(axes[-1], lanes, names=("v_o", "v"))
            out.vectorize(v)
        else:
            out.vectorize(axes[-1])
