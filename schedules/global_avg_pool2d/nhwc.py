"""Global average pooling, NHWC: channels vectorized and split across cores, the h*w sum streamed."""
from convsched.schedule import divisors

LAYER = "global_avg_pool2d"


def _c_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [d for d in divisors(layer.c) if d % lanes == 0]
    if not tiles and layer.c > lanes:      # whole vectors, the last one cut short (tail="cut")
        tiles = [k * lanes for k in (1, 2, 4) if k * lanes < layer.c]
    return tiles or [layer.c]


KNOBS = {"c_tile": _c_tiles}


def defaults(layer, target):
    tiles = KNOBS["c_tile"](layer, target)
    # one chunk of channels per core, but at most 4 vectors so the running sums stay in registers
    want = max(target.lanes("float32"), layer.c // max(1, target.cores))
    fit = [t for t in tiles if t <= min(want, 4 * target.lanes("float32"))]
    return {"c_tile": max(fit) if fit else tiles[0]}


def schedule(s, layer, c_tile):
    pool = s["pool"]
    c_o, c_i = pool.split("c", c_tile, tail="cut")
    pool.reorder("n", c_o, "i", "j", "rh", "rw", c_i)
    outer = pool.fuse("n", c_o)
    pool.parallel(outer)
    pool.vectorize(c_i)
    s["avg"].reverse_compute_at(pool, outer)
    pool.decompose_reduction("rh")
