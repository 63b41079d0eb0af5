"""PReLU gradients (dx and dslope): two streaming passes, rows in parallel, channels vectorized.

  dx:      parallel (n, h) > w > c_o > c_v (unrolled) > c_l (vector)
  rows:    parallel (n, h) > c_o > w > c_v (unrolled) > c_l (vector)   each row's sum in registers, stored once
  dslope:  c_o > rn, rh > c_l (vector)                                  n*h rows of c floats: small
Both passes read x and dy (TVM gives no way to put two independent stages in one loop nest); each row's share
of dslope goes to its own slot of "rows", so the sum needs no atomics and is the same on every run.
"""
from convsched.schedule import divisors, lanes_dividing

LAYER = "prelu_grad"


def _c_tiles(layer, target):
    v = lanes_dividing(layer.forward.c, target)
    return [t for t in divisors(layer.forward.c, 4 * v) if t % v == 0]


KNOBS = {"c_tile": _c_tiles}


def defaults(layer, target):
    return {"c_tile": max(_c_tiles(layer, target))}


def _channels(stage, axis, c_tile, v, tag):
    c_o, c_i = stage.split(axis, c_tile, names=(f"{tag}_o", f"{tag}_i"))
    c_v, c_l = stage.split(c_i, v, names=(f"{tag}_v", f"{tag}_l"))
    stage.unroll(c_v)
    stage.vectorize(c_l)
    return c_o, c_v, c_l


def schedule(s, layer, c_tile):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    _channels(dx, "c", c_tile, v, "c")
    dx.parallel(dx.fuse("n", "h"))
    rows = s["rows"]
    c_o, c_v, c_l = _channels(rows, "c", c_tile, v, "rc")
    rows.reorder("n", "h", c_o, "w", c_v, c_l)
    rows.parallel(rows.fuse("n", "h"))
    rows.decompose_reduction("w")
    ds = s["dslope"]
    c_o, c_v, c_l = _channels(ds, "c", v, v, "dc")
    ds.reorder(c_o, "rn", "rh", c_v, c_l)
    ds.decompose_reduction("rn")
