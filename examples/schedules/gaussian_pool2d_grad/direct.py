"""Gaussian pooling gradient, direct gather: every input pixel sums m kernels x ceil(k/s)^2 candidate windows.

Loop nest: parallel (n, h) > w_o > ch_o > j, rh, rw (unrolled) > w_i (unrolled) > ch_l (vector)
The (w_tile x c_tile) sums stay in registers; the window tests depend on (h, w, rh, rw) only (scalar selects
shared by the channel vector). The 2-D weights (m*k*k floats) are built once per call.
"""
from convsched.schedule import divisors, fits_registers, lanes_dividing

LAYER = "gaussian_pool2d_grad"


KNOBS = {"w_tile": lambda layer, target: divisors(layer.forward.w, 8), "unroll_windows": [True, False]}


def constraint(layer, target, w_tile, unroll_windows):
    need = w_tile + 3
    return fits_registers(target, need)


def defaults(layer, target):
    return {"w_tile": max(divisors(layer.forward.w, 4)), "unroll_windows": True}


def schedule(s, layer, w_tile, unroll_windows):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    ch_o, ch_l = dx.split("ch", v)
    w_o, w_i = dx.split("w", w_tile)
    dx.reorder("n", "h", w_o, ch_o, "j", "rh", "rw", w_i, ch_l)
    dx.parallel(dx.fuse("n", "h"))
    dx.vectorize(ch_l)
    dx.unroll(w_i)
    if unroll_windows:
        dx.unroll("rh")
        dx.unroll("rw")
    dx.decompose_reduction("j")
