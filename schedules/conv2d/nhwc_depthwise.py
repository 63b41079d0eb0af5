"""Depthwise NHWC conv (groups == cin == cout): channels vectorized, an (ow x co) register tile, rows in parallel.

Loop nest: parallel (n, oh) > [pad rows] > co_o > ow_o > kh, kw (unrolled) > ow_i (unrolled) > co_v, co_l (vector)
Each tap loads one input vector and one weight vector per accumulator: depthwise has no reuse of inputs
across output channels, so it runs near the load/store limit, not the FMA peak (MobileNet's 3x3 dw layers
are memory-bound: ~9 MACs per loaded input).
Measured (Zen 3, AVX2, noisy shared host, 1 thread, benchmarks/mobilenet.py --quick): 28x28x256 dw s1 in the
dw+pw pair at 51.5 GFLOP/s for the pair, 1.13x PyTorch's faster layout; 112x112x32 dw: 11.4 GFLOP/s.
"""
from convsched.schedule import divisors

LAYER = "conv2d"


def applies(layer, target):
    return (layer.layout == "NHWC" and layer.depthwise) or "needs layout NHWC and groups == cin == cout"


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 4 * lanes) if layer.cout % t == 0]
    return tiles or [layer.cout]


KNOBS = {
    "co_tile": _co_tiles,
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "pad_at": ["row", "inline"],
}


def constraint(layer, target, co_tile, ow_tile, pad_at):
    vecs = -(-co_tile // target.lanes("float32"))
    need = ow_tile * vecs + vecs + 1      # accumulators + weight vectors + one input (or FMA memory operands)
    return need <= target.num_vector_registers or f"register tile needs {need} vector registers"


def defaults(layer, target):
    lanes = target.lanes("float32")
    cos = _co_tiles(layer, target)
    co = 2 * lanes if 2 * lanes in cos else cos[0]
    vecs = -(-co // lanes)
    ows = [o for o in divisors(layer.ow, 8) if o * vecs + vecs + 1 <= target.num_vector_registers] or [1]
    return {"co_tile": co, "ow_tile": max(ows), "pad_at": "row"}


def schedule(s, layer, co_tile, ow_tile, pad_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = [co_i]
    if co_tile % lanes == 0 and co_tile > lanes:
        inner = list(conv.split(co_i, lanes, names=("co_v", "co_l")))
    conv.reorder("n", "oh", co_o, ow_o, "kh", "kw", "ci", ow_i, *inner)
    row = conv.fuse("n", "oh")
    conv.parallel(row)
    if co_tile % lanes == 0:
        conv.vectorize(inner[-1])
    if len(inner) == 2:
        conv.unroll(inner[0])
    conv.unroll(ow_i)
    conv.unroll("kw")
    if pad_at == "row":
        s["pad"].compute_at(conv, row)
    else:
        s["pad"].compute_inline()
    epi = [e for e in ("bias", "residual", "act") if e in s]
    for e in reversed(epi[1:]):
        s[e].reverse_compute_inline()
    if epi:
        s[epi[0]].reverse_compute_at(conv, co_o)
        if co_tile % lanes == 0:
            last = s[epi[0]].axes[-1]
            _, vi = s[epi[0]].split(last, lanes, names=("epi_o", "epi_v"))
            s[epi[0]].vectorize(vi)
    conv.decompose_reduction(ow_o)
