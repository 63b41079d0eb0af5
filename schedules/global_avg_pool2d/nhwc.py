"""Global average pooling, NHWC: channels vectorized and split across cores, the h*w sum streamed."""
from convsched.schedule import divisors

LAYER = "global_avg_pool2d"

KNOBS = {
    "c_tile": lambda layer, target: [d for d in divisors(layer.c) if d % target.lanes("float32") == 0]
    or [layer.c],
}


def defaults(layer, target):
    tiles = KNOBS["c_tile"](layer, target)
    # one chunk of channels per core, but at most 4 vectors so the running sums stay in registers
    want = max(target.lanes("float32"), layer.c // max(1, target.cores))
    fit = [t for t in tiles if t <= min(want, 4 * target.lanes("float32"))]
    return {"c_tile": max(fit) if fit else tiles[0]}


def schedule(s, layer, c_tile):
    pool = s["pool"]
    c_o, c_i = pool.split("c", c_tile)
    pool.reorder("n", c_o, "i", "j", "rh", "rw", c_i)
    outer = pool.fuse("n", c_o)
    pool.parallel(outer)
    pool.vectorize(c_i)
    s["avg"].reverse_compute_at(pool, outer)
    pool.decompose_reduction("rh")
