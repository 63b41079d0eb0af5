"""Winograd F(2x2, 3x3), NHWC: input transform, 16 batched GEMMs and output transform as scheduled stages.

2.25x fewer multiplications than direct 3x3 (16 per 2x2 output tile instead of 36), paid for with
transforms: the input transform "wino_v" is computed per row of tiles (compute_at, in L2), the GEMM "wino_m"
runs per row of tiles with a (tw x co) register tile, and the output transform "conv" plus the epilogue
(bias, residual, ReLU inlined into it) reads the GEMM result of the same row while it is in cache.
The weight transform "wino_u" runs every call (cost ~16/(oh*ow/4) of the GEMM; see pre-packing in README).
Loop nest: parallel (n, th) > [V row] > e, u > tw_o > co_o > ci > tw_i (unrolled) > co (vector) ; [Y rows]

Measured (Zen 3 EPYC, AVX2, shared noisy 2-core host; benchmarks/resnet18_conv.py, GFLOP/s, 1 thread / 2 threads):
  (direct-conv FLOPs / time) 56x56x64 3x3: 153 / 173 = 1.9x / 1.7x PyTorch; 28x28x128: 75 / 113;
  14x14x256: 24 / 38 and 7x7x512: 16 / 9 -- there the per-call weight transform (16/9 x the weights)
  dominates: use nhwc_gemm for deep layers.
  Register tile chosen by the accumulator model (defaults): 28x28 has 14 tiles a row, whose divisors gave
  2 x 16 channels (4 accumulators) -- 5 x 16 with a predicated last tile took it from 2.9 to 1.9 ms.
  1 thread, Zen 3, core pinned, aligned inputs (benchmarks/resnet18_conv.py): 56x56x64 178, 28x28x128 158,
  14x14x256 117 GFLOP/s direct-conv equivalent (1.8x, 1.6x, 1.3x the faster PyTorch layout).
"""
from convsched.schedule import (divisors, fits_registers, fma_efficiency, inline_epilogue, split_lanes,
                                tile_registers, vectorize_lanes, vectors)

LAYER = "conv2d"
ALGORITHM = "winograd2x2"


def applies(layer, target):
    return layer.algorithm_applies(ALGORITHM)


def _tiles_w(layer):
    return -(-layer.ow // 2)


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 3 * lanes) if layer.cout % t == 0]
    if layer.cout % lanes:                 # whole vectors, the last channel block cut short (tail="cut")
        tiles = [t for t in (lanes, 2 * lanes) if t < layer.cout]
    return tiles or [t for t in divisors(layer.cout) if t <= lanes][-1:]


KNOBS = {
    "co_tile": _co_tiles,
    # tiles of a row per register tile; 4 and 5 also when they do not divide the row (the last tile predicated)
    "tw_tile": lambda layer, target: sorted(set(divisors(_tiles_w(layer), 8)) | {t for t in (4, 5)
                                                                                  if t < _tiles_w(layer)}),
    "unroll_eu": [True, False],
}


def _fits(target, co_tile, tw_tile):
    return fits_registers(target, tile_registers(target, tw_tile, co_tile))


def constraint(layer, target, co_tile, tw_tile, unroll_eu):
    return _fits(target, co_tile, tw_tile)


def defaults(layer, target):
    lanes = target.lanes("float32")
    tiles_w = _tiles_w(layer)
    space = KNOBS["tw_tile"](layer, target)

    def score(co, tw):
        # as nhwc_direct's tile model (the target's FMA pipes x latency in accumulators, loads <= FMAs), and
        # the share of a partial last tile that is wasted. 28x28 (14 tiles a row, Zen 3): divisors only
        # allowed 2 x 16 (4 accumulators: 2.9 ms) or 7 x 8 (2.7 ms); 5 x 16 with a predicated last tile: 1.9 ms
        vecs = vectors(co, lanes)
        fill = tiles_w / (-(-tiles_w // tw) * tw)
        return round(fma_efficiency(target, tw * vecs, tw + vecs, co / (vecs * lanes)) * fill, 3)
    pairs = [(co, tw) for co in _co_tiles(layer, target) for tw in space
             if _fits(target, co, tw) is True] or [(_co_tiles(layer, target)[0], 1)]
    # ties: whole rows (no predicated tile), then 16 channels (2 weight vectors)
    co, tw = max(pairs, key=lambda p: (score(*p), tiles_w % p[1] == 0, -abs(p[0] - 2 * lanes)))
    return {"co_tile": co, "tw_tile": tw, "unroll_eu": True}


def schedule(s, layer, co_tile, tw_tile, unroll_eu):
    lanes = s.target.lanes("float32")
    # weight transform: all (e, u) for a vector of output channels
    u = s["wino_u"]
    u.reorder("ci", "co", "e", "u")
    u.parallel("ci")
    u.unroll("e")
    u.unroll("u")
    u_c = split_lanes(u, "co", lanes, names=("u_co", "u_cv"))
    u.reorder("ci", *u_c[:-1], "e", "u", u_c[-1])
    u.vectorize(u_c[-1])
    # the output transform (+ epilogue, inlined into it) is the root: one row of 2x2 tiles per iteration
    inline_epilogue(s)
    y = s["conv"]
    oh_o, oh_i = y.split("oh", 2)
    ow_o, ow_i = y.split("ow", 2)
    y_c = split_lanes(y, "co", lanes, names=("y_co_o", "y_co_i"))
    y.reorder("n", oh_o, ow_o, *y_c[:-1], oh_i, ow_i, y_c[-1])
    y.vectorize(y_c[-1])
    row = y.fuse("n", oh_o, name="tile_row")
    y.parallel(row)
    y.unroll(oh_i)
    y.unroll(ow_i)
    # batched GEMM for that row of tiles: (tw_tile x co_tile) register tile, ci innermost reduction
    m = s["wino_m"]
    m.compute_at(y, row)
    e_ax, u_ax, n_ax, i_ax, j_ax, co_ax, ci_ax = m.axes[-7:]
    co_o, co_i = m.split(co_ax, co_tile, names=("co_o", "co_i"), tail="cut")
    j_o, j_i = m.split(j_ax, tw_tile, names=("j_o", "j_i"))
    inner = split_lanes(m, co_i, lanes, names=("co_v", "co_l"))
    m.reorder(e_ax, u_ax, j_o, co_o, ci_ax, j_i, *inner)
    vectorize_lanes(m, inner)
    m.unroll(j_i)
    # input transform of that row of tiles: channels vectorized, the 16 (e, u) selects folded by unrolling
    v = s["wino_v"]
    v.compute_at(m, row)
    s["pad"].compute_inline()
    vax = v.axes[-6:]
    v.reorder(*vax[2:], vax[0], vax[1])
    if unroll_eu:
        v.unroll(vax[0])
        v.unroll(vax[1])
    v_c = split_lanes(v, vax[5], lanes, names=("v_ci_o", "v_ci"))
    v.reorder(vax[0], vax[1], v_c[-1])
    v.vectorize(v_c[-1])
    m.decompose_reduction(ci_ax)
