"""L2 pooling gradient: dy / y once (a pass over the small output), then a gather per input row.

Loop nest: parallel (n, oh) > ow > c_o > c_l (vector)                              ratio = dy / y
           parallel (n, h) > w_o > c_o > w_i (unrolled) > rh, rw (unrolled) > c_l (vector)  gather, then x * it
Each dx element sums its ceil(k/s)^2 candidate windows in a register and is stored once.
"""
from convsched.schedule import divisors, lanes_dividing

LAYER = "l2_pool2d_grad"


KNOBS = {"w_tile": lambda layer, target: divisors(layer.forward.w, 8)}


def defaults(layer, target):
    return {"w_tile": max(divisors(layer.forward.w, 4))}


def schedule(s, layer, w_tile):
    v = lanes_dividing(layer.forward.c, s.target)
    r = s["ratio"]
    r.parallel(r.fuse(*r.axes[:2]))
    _, rv = r.split(r.axes[-1], v, names=("r_o", "r_v"))
    r.vectorize(rv)
    g = s["gather"]
    c_o, c_l = g.split("c", v)
    w_o, w_i = g.split("w", w_tile)
    g.reorder("n", "h", w_o, c_o, w_i, "rh", "rw", c_l)
    row = g.fuse("n", "h")
    g.parallel(row)
    g.vectorize(c_l)
    for axis in (w_i, "rh", "rw"):
        g.unroll(axis)
    dx = s["dx"]
    dx.reverse_compute_at(g, row)
    _, dv = dx.split(dx.axes[-1], v, names=("dx_o", "dx_v"))
    dx.vectorize(dv)
    g.decompose_reduction(w_i)
