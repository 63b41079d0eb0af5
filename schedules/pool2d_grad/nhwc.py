"""Pooling gradient (max: routed by the recorded argmax; avg: spread over the window), NHWC, as a gather.

Loop nest: parallel (n, h) > w_o > c_o > w_i (unrolled) > rh, rw (unrolled) > c_v (unrolled) > c_l (vector)
Every dx element sums its candidate windows (ceil(k/stride) per axis: 2 x 2 for 3x3/2) in registers and is
stored once: no zeroing pass, no scatter. The window tests depend on (h, w) only, not on c, so they are
scalar selects shared by the whole channel vector; dy (and argmax) rows are re-read by the ceil(k/s) input
rows that need them, from L1/L2.
"""
from convsched.schedule import divisors, fits_registers, lanes_dividing

LAYER = "pool2d_grad"


def _c_tiles(layer, target):
    v = lanes_dividing(layer.forward.c, target)
    return [t for t in divisors(layer.forward.c, 4 * v) if t % v == 0]


KNOBS = {"c_tile": _c_tiles, "w_tile": lambda layer, target: divisors(layer.forward.w, 8)}


def _regs(layer, target, c_tile, w_tile):
    return w_tile * (c_tile // lanes_dividing(layer.forward.c, target)) + 3   # sums + dy, argmax and a compare mask


def constraint(layer, target, c_tile, w_tile):
    need = _regs(layer, target, c_tile, w_tile)
    return fits_registers(target, need)


def defaults(layer, target):
    tiles = _c_tiles(layer, target)
    c = max(t for t in tiles if t <= 2 * lanes_dividing(layer.forward.c, target))
    w = max(o for o in divisors(layer.forward.w, 4) if fits_registers(target, _regs(layer, target, c, o)) is True)
    return {"c_tile": c, "w_tile": w}


def schedule(s, layer, c_tile, w_tile):
    v = lanes_dividing(layer.forward.c, s.target)
    dx = s["dx"]
    c_o, c_i = dx.split("c", c_tile)
    w_o, w_i = dx.split("w", w_tile)
    inner = [c_i] if c_tile == v else list(dx.split(c_i, v, names=("c_v", "c_l")))
    dx.reorder("n", "h", w_o, c_o, w_i, "rh", "rw", *inner)
    row = dx.fuse("n", "h")
    dx.parallel(row)
    for axis in ("rh", "rw", w_i, *inner[:-1]):
        dx.unroll(axis)
    dx.vectorize(inner[-1])
    dx.decompose_reduction(w_i)
