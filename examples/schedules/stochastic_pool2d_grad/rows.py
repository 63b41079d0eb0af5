"""Stochastic pooling gradient: dy routed to the sampled positions; rows in parallel, channels vectorized.

Loop nest: parallel (n, h) > w > c_o > c_l (vector): one compare of pos against the pixel's window index and
one blend per element; pos and dy rows are read by the k input rows of their window (from cache).
"""
from convsched.schedule import lanes_dividing

LAYER = "stochastic_pool2d_grad"


KNOBS = {"unroll_w": [False, True]}


def schedule(s, layer, unroll_w):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    c_o, c_l = dx.split("c", v)
    dx.parallel(dx.fuse("n", "h"))
    dx.vectorize(c_l)
    if unroll_w:
        dx.unroll(c_o)
