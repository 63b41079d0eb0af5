"""Gaussian pooling, separable (ALGORITHM "separable"): a k-tap row pass, then a k-tap column pass.

Loop nest: parallel (n, oh_o)                       row_tile output rows per task
             [pad rows], rows for (row_tile-1)*stride + k padded rows, all ow, all co   (in L1/L2)
             oh_i > ow_o > j > ch_o > kh > ow_i (unrolled) > ch_l (vector)
The rows of one tile overlap the next tile's by k - stride rows, recomputed: (row_tile*s + k - s)/(row_tile*s)
times the row work (19/16 at row_tile 8, s 2, k 5). Cost per output ~ k + k*(that)/s MACs instead of k*k.
Measured (Zen 3, AVX2, 2 threads, shared machine at load ~9; 56x56x64 -> 28x28x128, k=5, s=2, 2 variances):
defaults 0.99 ms; tuned (row_tile=14, ow_tile=1, c_tile=16; best of 40 points, worst 3.95 ms) 0.77 ms;
direct template 1.05 ms; PyTorch 2.13 depthwise conv with the same kernels 0.94 ms; numpy 9.6 ms;
a plain 5x5/2 avg pool (one kernel per map) 0.18 ms.
"""
from convsched.schedule import divisors, split_lanes, vectorize_lanes

LAYER = "gaussian_pool2d"
ALGORITHM = "separable"


def _c_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in divisors(layer.c, 2 * lanes) if t % lanes == 0]
    if not tiles:      # c not a multiple of the vector: whole vectors, the last one cut short (tail="cut")
        tiles = [lanes] if lanes < layer.c else [layer.c]
    return tiles


KNOBS = {
    "row_tile": lambda layer, target: divisors(layer.oh, 16),
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "c_tile": _c_tiles,
}


def defaults(layer, target):
    rt = divisors(layer.oh, 16)
    return {"row_tile": max(t for t in rt if t <= 8), "ow_tile": max(divisors(layer.ow, 4)),
            "c_tile": _c_tiles(layer, target)[0]}


def schedule(s, layer, row_tile, ow_tile, c_tile):
    lanes = s.target.lanes("float32")
    pool = s["pool"]
    oh_o, oh_i = pool.split("oh", row_tile)
    j, ch = pool.split("co", factors=[None, layer.c], names=("j", "ch"))
    ch_o, ch_i = pool.split(ch, c_tile, tail="cut")
    ow_o, ow_i = pool.split("ow", ow_tile)
    inner = split_lanes(pool, ch_i, lanes, names=("ch_v", "ch_l"))
    pool.reorder("n", oh_o, oh_i, ow_o, j, ch_o, "kh", ow_i, *inner)
    tile = pool.fuse("n", oh_o)
    pool.parallel(tile)
    vectorize_lanes(pool, inner)
    pool.unroll(ow_i)
    rows = s["rows"]
    rows.compute_at(pool, tile)
    # the row pass as TVM regenerated it under the tile: n, hp, ow, co, then the kw reduction
    n_, hp, ow_, co = rows.axes[1:5]
    kw = rows.axes[-1]
    rco = split_lanes(rows, co, lanes, names=("rco_o", "rco_i"))
    rows.reorder(n_, hp, ow_, *rco[:-1], kw, rco[-1])
    rows.vectorize(rco[-1])
    s["pad"].compute_inline()
    rows.decompose_reduction(rows.axes[-2])
    pool.decompose_reduction("kh")
