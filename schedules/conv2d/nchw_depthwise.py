"""Depthwise NCHW conv (groups == cin == cout): one channel plane at a time, ow vectorized.

Loop nest: parallel (n, co) > [padded plane of this channel, in L1] > oh > ow_o > kh, kw (unrolled)
           > ow_v (unrolled) > ow_l (vector)
The 9 weights of a channel are broadcast once per tap; each tap loads ow_tile/lanes input vectors (unaligned,
or strided gathers with stride 2 -- the reason NHWC depthwise is preferred for stride 2).
"""
from convsched.schedule import divisors

LAYER = "conv2d"


def applies(layer, target):
    return (layer.layout == "NCHW" and layer.depthwise) or "needs layout NCHW and groups == cin == cout"


def _ow_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 4 * lanes) if layer.ow % t == 0]
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
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = [ow_i]
    if ow_tile % lanes == 0 and ow_tile > lanes:
        inner = list(conv.split(ow_i, lanes, names=("ow_v", "ow_l")))
    conv.reorder("n", "co", "oh", ow_o, "ci", "kh", "kw", *inner)
    plane = conv.fuse("n", "co", name="plane")
    conv.parallel(plane)
    conv.unroll("kh")
    conv.unroll("kw")
    if ow_tile % lanes == 0:
        conv.vectorize(inner[-1])
        if len(inner) == 2:
            conv.unroll(inner[0])
    else:
        conv.unroll(inner[-1])
    if pad_at == "plane":
        s["pad"].compute_at(conv, plane)
    else:
        s["pad"].compute_inline()
    epi = [e for e in ("bias", "residual", "act") if e in s]
    for e in reversed(epi[1:]):
        s[e].reverse_compute_inline()
    if epi:
        s[epi[0]].reverse_compute_at(conv, plane)
    conv.decompose_reduction(ow_o)
