"""Bias gradient (sum of dy over n, h, w), NHWC: row sums in parallel, then one short sum of the rows.

  rows: parallel (n, h) > c_o > w (reduction) > c_v (unrolled) > c_l (vector)   sums stay in registers
  db:   c_o > rn, rh (reduction) > c_l (vector)                                  n*h rows of c floats
dy is read once, in order; each row's sum has its own slot (no atomics, the same result on every run).
"""
from convsched.schedule import divisors, lanes_dividing

LAYER = "bias_grad"


def _c_tiles(layer, target):
    v = lanes_dividing(layer.c, target)
    return [t for t in divisors(layer.c, 8 * v) if t % v == 0]


KNOBS = {"c_tile": _c_tiles}


def defaults(layer, target):
    return {"c_tile": max(t for t in _c_tiles(layer, target) if t <= 4 * lanes_dividing(layer.c, target))}


def schedule(s, layer, c_tile):
    v = lanes_dividing(layer.c, s.target)
    rows = s["rows"]
    c_o, c_i = rows.split("c", c_tile)
    c_v, c_l = rows.split(c_i, v, names=("c_v", "c_l"))
    rows.reorder("n", "h", c_o, "w", c_v, c_l)
    rows.parallel(rows.fuse("n", "h"))
    rows.unroll(c_v)
    rows.vectorize(c_l)
    rows.decompose_reduction("w")
    db = s["db"]
    d_o, d_i = db.split("c", v, names=("dc_o", "dc_i"))
    db.reorder(d_o, "rn", "rh", d_i)
    db.vectorize(d_i)
    db.decompose_reduction("rn")
