"""Gaussian pooling gradient, separable (ALGORITHM "separable"): a transposed column pass, then a transposed
row pass, each a gather over ceil(k/s) candidate windows.

Loop nest: parallel (n, h_o)                    row_tile input rows per task
             [cols for those rows: h > ow > co_o > rh (unrolled) > co_l (vector)]      (in L1/L2)
             h_i > w_o > ch_o > j > rw (unrolled) > w_i (unrolled) > ch_l (vector)
Per input element: m*ceil(k/s) MACs in the row pass plus (ow/w)*m*ceil(k/s) in the column pass, instead of
m*ceil(k/s)^2 for the direct gather (5x5 stride 2: 3 + 1.5 vs 9 per kernel).
"""
from convsched.schedule import divisors, fits_registers, lanes_dividing

LAYER = "gaussian_pool2d_grad"
ALGORITHM = "separable"


KNOBS = {
    "row_tile": lambda layer, target: divisors(layer.forward.h, 16),
    "w_tile": lambda layer, target: divisors(layer.forward.w, 8),
}


def constraint(layer, target, row_tile, w_tile):
    need = w_tile + 3
    return fits_registers(target, need)


def defaults(layer, target):
    rows = [t for t in divisors(layer.forward.h, 16) if t <= 8]
    return {"row_tile": max(rows), "w_tile": max(divisors(layer.forward.w, 4))}


def schedule(s, layer, row_tile, w_tile):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    h_o, h_i = dx.split("h", row_tile)
    ch_o, ch_l = dx.split("ch", v)
    w_o, w_i = dx.split("w", w_tile)
    dx.reorder("n", h_o, h_i, w_o, ch_o, "j", "rw", w_i, ch_l)
    tile = dx.fuse("n", h_o)
    dx.parallel(tile)
    dx.vectorize(ch_l)
    dx.unroll(w_i)
    dx.unroll("rw")
    cols = s["cols"]
    cols.compute_at(dx, tile)
    n_, h_, ow_, co, rh = cols.axes[-5:]
    co_o, co_l = cols.split(co, v, names=("cco_o", "cco_l"))
    cols.reorder(n_, h_, ow_, co_o, rh, co_l)
    cols.vectorize(co_l)
    cols.unroll(rh)
    cols.decompose_reduction(rh)
    s["pad"].compute_inline()                 # bounds tests on the loads of dy (one column pass per row)
    dx.decompose_reduction("j")
