"""Depthwise NCHW conv (groups == cin == cout): one channel plane at a time, ow vectorized.

Loop nest: parallel (n, co) > [padded plane of this channel, in L1] > oh > ow_o > kh, kw (unrolled)
           > ow_v (unrolled) > ow_l (vector)
The 9 weights of a channel are broadcast once per tap; each tap loads ow_tile/lanes input vectors (unaligned,
or strided gathers with stride 2 -- the reason NHWC depthwise is preferred for stride 2).
"""
from convsched.schedule import divisors, place_epilogue, split_lanes, vectorize_lanes

LAYER = "conv2d"


def applies(layer, target):
    return (layer.layout == "NCHW" and layer.depthwise) or "needs layout NCHW and groups == cin == cout"


def _ow_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 4 * lanes) if layer.ow % t == 0]
    if not tiles and layer.ow > lanes:     # whole vectors along the row, the last one cut short (tail="cut")
        return [t for t in (lanes, 2 * lanes) if t < layer.ow]
    return tiles or divisors(layer.ow, 2 * lanes)[-2:]


KNOBS = {
    "ow_tile": _ow_tiles,
    "pad_at": ["plane", "inline"],
}


def defaults(layer, target):
    lanes = target.lanes("float32")
    tiles = _ow_tiles(layer, target)
    return {"ow_tile": 2 * lanes if 2 * lanes in tiles else tiles[-1], "pad_at": "plane"}


def schedule(s, layer, ow_tile, pad_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    ow_o, ow_i = conv.split("ow", ow_tile, tail="cut")
    inner = split_lanes(conv, ow_i, lanes, names=("ow_v", "ow_l"))
    conv.reorder("n", "co", "oh", ow_o, "ci", "kh", "kw", *inner)
    plane = conv.fuse("n", "co", name="plane")
    conv.parallel(plane)
    conv.unroll("kh")
    conv.unroll("kw")
    vectorize_lanes(conv, inner)
    if pad_at == "plane":
        s["pad"].compute_at(conv, plane)
    else:
        s["pad"].compute_inline()
    place_epilogue(s, conv, plane, lanes)
    conv.decompose_reduction(ow_o)
