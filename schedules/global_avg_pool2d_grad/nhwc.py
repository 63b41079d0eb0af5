"""Global average pooling gradient, NHWC: a broadcast of dy / (h*w); rows in parallel, channels vectorized.

Pure store bandwidth (dx is written once, dy is one row that stays in L1)."""
from convsched.schedule import lanes_dividing

LAYER = "global_avg_pool2d_grad"


KNOBS = {"unroll_c": [True, False]}


def schedule(s, layer, unroll_c):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    c_o, c_i = dx.split("c", v)
    dx.parallel(dx.fuse("n", "h"))
    dx.vectorize(c_i)
    if unroll_c:
        dx.unroll(c_o)
