"""Direct NCHW conv: a (co x ow) register tile, ow vectorized (contiguous in NCHW), channel blocks in parallel.

Loop nest: parallel (n, co_o) > oh > ow_o > ci, kh, kw > co_i (unrolled) > ow_i (vectorized).
Each reduction step loads one input vector along ow and broadcasts co_tile weights. With stride 2 the ow
loads become strided gathers, which is why NCHW loses to NHWC there (seed 004's layout argument).
Measured (Zen 3, AVX2, 1 thread): 56x56x64->64 3x3, co_tile=4, ow_tile=8: ~35 GFLOP/s; NHWC is 2x faster.
"""
from convsched.schedule import divisors, fits_registers, place_epilogue, split_lanes, tile_registers, vectorize_lanes

LAYER = "conv2d"


def applies(layer, target):
    return layer.layout == "NCHW" or "needs layout NCHW"


KNOBS = {
    "co_tile": lambda layer, target: divisors(layer.cout, 8),
    "ow_tile": lambda layer, target: [d for d in divisors(layer.ow, 2 * target.lanes("float32"))],
    "pad_at": ["row", "inline"],
}


def constraint(layer, target, co_tile, ow_tile, pad_at):
    # co_tile rows of ow_tile-wide vectors: accumulators + input vectors + a broadcast weight
    return fits_registers(target, tile_registers(target, co_tile, ow_tile))


def defaults(layer, target):
    lanes = target.lanes("float32")
    ows = divisors(layer.ow, 2 * lanes)
    ow = max(o for o in ows if o <= lanes) if any(o <= lanes for o in ows) else ows[0]
    cos = [c for c in divisors(layer.cout, 8) if fits_registers(target, tile_registers(target, c, ow)) is True]
    return {"co_tile": max(cos), "ow_tile": ow, "pad_at": "row"}


def schedule(s, layer, co_tile, ow_tile, pad_at):
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = split_lanes(conv, ow_i, s.target.lanes("float32"), names=("ow_v", "ow_l"))
    conv.reorder("n", co_o, "oh", ow_o, "ci", "kh", "kw", co_i, *inner)
    outer = conv.fuse("n", co_o)
    conv.parallel(outer)
    vectorize_lanes(conv, inner)
    conv.unroll(co_i)
    conv.unroll("kw")
    if pad_at == "row":
        s["pad"].compute_at(conv, "oh")
    else:
        s["pad"].compute_inline()
    place_epilogue(s, conv, ow_o, s.target.lanes("float32"))
    conv.decompose_reduction("ci")
