"""Depthwise NHWC conv (groups == cin == cout): channels vectorized, an (ow x co) register tile, rows in parallel.

Loop nest (order="ow", the default): parallel (n, oh) > [pad rows] > ow_o > co_o > kh > kw (unrolled) >
ow_i (unrolled) > co_v, co_l (vector); order="co" swaps ow_o and co_o.
Each tap loads one input vector and one weight vector per accumulator: depthwise has no reuse of inputs
across output channels, so it runs near the load/store limit, not the FMA peak (MobileNet's 3x3 dw layers
are memory-bound: ~9 MACs per loaded input). Within a tile LLVM shares the input vectors of neighbouring taps
(kw and ow_i both unrolled: stride 1 loads ow_tile + 2 pixels per kh row, not 3 * ow_tile).
Why order="ow": co_o outermost sweeps one 64-byte column (co_tile 16) of three input rows across the whole row,
then the next column: 56x56x128 re-reads each row from L2 eight times. ow_o outermost touches 3 rows x
(ow_tile + 2) pixels x all channels (9 KB at 128 channels) and finishes them in L1.
Why pad_at="inline": "row" copies the three padded input rows of every output row (3x the input, 89 KB per
row at 56x56x128: it misses L1); "root" copies the whole input once (one extra pass). Inline reads the input
in place behind bounds tests, which LLVM turns into branches around the border loads; it won on every
MobileNet layer (stride 2 most: 112->56x64 126 us vs 215 us with "root" or "row").
unroll(kh) was tried (would keep the accumulators in registers across kh; now they go through memory once per
kh row): slower, 56x56x128 s1 181 -> 255-272 us, 112x112x32 167 -> 261-339 us (inline pad; not done).
Measured (AMD EPYC Zen 3, AVX2, 1 thread, core pinned, aligned inputs; the depthwise layer alone, best of 3
interleaved rounds, per call incl. the Python call and the output allocation, us; old = pad "row", order "co"):
  layer               old   new  (GB/s new)  nhwc_direct  torch NCHW  torch channels_last
  112x112x32  s1      262   167   (19)        252          337         238
  112->56x64  s2      217   126   (32)        229          314         165
  56x56x128   s1      288   181   (18)        290          331         247
  56->28x128  s2      158    85   (24)        159          203         114
  28x28x256   s1      182   115   (14)        176          212         153
  28->14x256  s2       96    64   (16)         94          143          85
  14x14x512   s1      113    86   (10)        115          156         113
  14->7x512   s2       70    56    (9)         77          122          75
  7x7x1024    s1       94    79    (6)         98          126          90
On 56x56x128 the compiled function alone takes ~142 us of the ~181 us call (time_evaluator vs the Kernel call:
the output allocation and the Python call are the rest): 3.2 MB in + out per 142 us = 23 GB/s, about what one
Zen 3 core streams from L3 (the layer does not fit the 512 KB L2), so the large layers are near their bound.
7x7x1024 (in L2) is not: ow_tile 1 (7 is prime) leaves 2 accumulators, FMA-latency bound (co 8 x ow 7: 72 us).
benchmarks/mobilenet.py --threads 1 (dw + best pw, x PyTorch's faster layout): geo-mean 1.02x -> 1.09x
(aligned inputs in both; 0.95x before the benchmark aligned its inputs). The pointwise is now 80-93% of every
pair's time (e.g. 56x56: dw 178 us, pw 1158 us packed): the rest of the gap to 1.0x+ on a pair is there.
"""
from convsched.schedule import (divisors, fits_registers, place_epilogue, split_lanes, tile_registers,
                                vectorize_innermost, vectorize_lanes)

LAYER = "conv2d"


def applies(layer, target):
    return (layer.layout == "NHWC" and layer.depthwise) or "needs layout NHWC and groups == cin == cout"


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 4 * lanes) if layer.cout % t == 0]
    if layer.cout % lanes:                 # whole vectors, the last channel block cut short (tail="cut")
        tiles = [t for t in (lanes, 2 * lanes) if t < layer.cout]
    return tiles or [layer.cout]


KNOBS = {
    "co_tile": _co_tiles,
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "pad_at": ["row", "inline", "root"],
    "order": ["co", "ow"],
}


def constraint(layer, target, co_tile, ow_tile, pad_at, order):
    # accumulators + weight vectors + one input (or FMA memory operands)
    return fits_registers(target, tile_registers(target, ow_tile, co_tile))


def defaults(layer, target):
    lanes = target.lanes("float32")
    cos = _co_tiles(layer, target)
    co = 2 * lanes if 2 * lanes in cos else cos[0]
    ows = [o for o in divisors(layer.ow, 8) if constraint(layer, target, co, o, "", "") is True] or [1]
    return {"co_tile": co, "ow_tile": max(ows), "pad_at": "inline", "order": "ow"}


def schedule(s, layer, co_tile, ow_tile, pad_at, order):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile, tail="cut")
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = split_lanes(conv, co_i, lanes, names=("co_v", "co_l"))
    outer = (co_o, ow_o) if order == "co" else (ow_o, co_o)
    conv.reorder("n", "oh", *outer, "kh", "kw", "ci", ow_i, *inner)
    row = conv.fuse("n", "oh")
    conv.parallel(row)
    vectorize_lanes(conv, inner)
    conv.unroll(ow_i)
    conv.unroll("kw")
    if pad_at == "row":
        s["pad"].compute_at(conv, row)
    elif pad_at == "inline":
        s["pad"].compute_inline()
    else:                                 # "root": the whole padded input once, rows in parallel
        pad = s["pad"]
        pad.parallel(pad.fuse(*pad.axes[:2]))
        vectorize_innermost(pad, lanes)
    place_epilogue(s, conv, outer[0], lanes)
    conv.decompose_reduction(outer[1])
