"""L2 pooling: output rows in parallel, channels vectorized, the window's sum of squares in registers.

Loop nest: parallel (n, oh) > ow > c_o > kh, kw (unrolled) > c_l (vector), then sqrt of that row (same task).
"""
from convsched.schedule import lanes_dividing

LAYER = "l2_pool2d"


KNOBS = {"unroll_taps": [True, False]}


def schedule(s, layer, unroll_taps):
    v = lanes_dividing(layer.c, s.target)
    sq = s["sumsq"]
    c_o, c_l = sq.split("c", v)
    sq.reorder("n", "oh", "ow", c_o, "kh", "kw", c_l)
    row = sq.fuse("n", "oh")
    sq.parallel(row)
    sq.vectorize(c_l)
    if unroll_taps:
        sq.unroll("kh")
        sq.unroll("kw")
    y = s["y"]
    y.reverse_compute_at(sq, row)
    _, yv = y.split(y.axes[-1], v, names=("y_o", "y_v"))
    y.vectorize(yv)
    sq.decompose_reduction("kh")
