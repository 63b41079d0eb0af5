"""Max pooling that records its argmax, NHWC: channels vectorized, output rows in parallel, taps unrolled.

Loop nest: parallel (n, oh) > ow_o > c_o > ow_i (unrolled) > kh, kw (unrolled) > c_v (unrolled) > c_l (vector)
Each tap compares a vector of values and keeps (value, index) pairs: two accumulators per vector, so the
register budget counts both. Out-of-image taps are masked in the declaration (clamped loads + select), so
there is no padded copy of the input to place.
"""
from convsched.schedule import divisors, fits_registers, lanes_dividing

LAYER = "pool2d_argmax"


def _c_tiles(layer, target):
    v = lanes_dividing(layer.pool.c, target)
    return [t for t in divisors(layer.pool.c, 4 * v) if t % v == 0]


KNOBS = {"c_tile": _c_tiles, "ow_tile": lambda layer, target: divisors(layer.pool.ow, 8)}


def _regs(layer, target, c_tile, ow_tile):
    # (value, index) pairs per vector, + a load + a mask
    return 2 * ow_tile * (c_tile // lanes_dividing(layer.pool.c, target)) + 2


def constraint(layer, target, c_tile, ow_tile):
    need = _regs(layer, target, c_tile, ow_tile)
    return fits_registers(target, need)


def defaults(layer, target):
    tiles = _c_tiles(layer, target)
    c = max(t for t in tiles if t <= 2 * lanes_dividing(layer.pool.c, target))
    ow = max(o for o in divisors(layer.pool.ow, 4) if fits_registers(target, _regs(layer, target, c, o)) is True)
    return {"c_tile": c, "ow_tile": ow}


def schedule(s, layer, c_tile, ow_tile):
    v = lanes_dividing(layer.pool.c, s.target)
    pool = s["pool"]
    c_o, c_i = pool.split("c", c_tile)
    ow_o, ow_i = pool.split("ow", ow_tile)
    inner = [c_i] if c_tile == v else list(pool.split(c_i, v, names=("c_v", "c_l")))
    pool.reorder("n", "oh", ow_o, c_o, ow_i, "kh", "kw", *inner)
    row = pool.fuse("n", "oh")
    pool.parallel(row)
    for axis in ("kh", "kw", ow_i, *inner[:-1]):
        pool.unroll(axis)
    pool.vectorize(inner[-1])
    pool.decompose_reduction(ow_i)
