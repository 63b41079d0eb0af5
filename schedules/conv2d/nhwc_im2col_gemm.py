"""im2col + GEMM, NHWC (seed 004): patches packed into a contiguous matrix, then a register-tiled GEMM.

The "im2col" stage builds the patch rows (ow pixels x kh*kw*cin) of one output row at a time (pack_at="row",
in L2), or of one ow_tile block (pack_at="tile", in L1); stride, dilation and padding are resolved there, so
the GEMM's A operand is contiguous. B is the weight matrix itself: HWIO is already (kh*kw*cin) x cout with
cout contiguous, so the weights need no repacking.
Loop nest: parallel (n, oh) > [im2col row] > co_o > ow_o > [im2col tile] > kh, kw, ci > ow_i (unrolled) > co (vector)
Register tile: ow_tile x co_tile accumulators (co_tile/lanes vectors each), the micro-kernel of the GEMM.

Measured (Zen 3 EPYC, AVX2, shared noisy 2-core host; benchmarks/resnet18_conv.py, GFLOP/s, 1 thread / 2 threads):
  56x56x64 3x3: 77 / 103; 56->28 64->128 3x3 s2: 67 / 77 (torch 75 / 96); deep layers 5..30: the
  rows-outer order rereads strided weights per row (nhwc_gemm packs weight panels and wins there).
"""
from convsched.schedule import divisors

LAYER = "conv2d"
ALGORITHM = "im2col"


def applies(layer, target):
    return layer.algorithm_applies(ALGORITHM)


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 3 * lanes, 4 * lanes) if layer.cout % t == 0]
    return tiles or [t for t in divisors(layer.cout) if t <= lanes][-1:]


KNOBS = {
    "co_tile": _co_tiles,
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "pack_at": ["row", "tile"],
}


def _need(target, co_tile, ow_tile):
    vecs = -(-co_tile // target.lanes("float32"))
    return ow_tile * vecs + vecs + 1


def constraint(layer, target, co_tile, ow_tile, pack_at):
    need = _need(target, co_tile, ow_tile)
    return need <= target.num_vector_registers or f"register tile needs {need} vector registers"


def defaults(layer, target):
    lanes = target.lanes("float32")
    cos = _co_tiles(layer, target)
    co = 2 * lanes if 2 * lanes in cos else cos[0]
    ows = [o for o in divisors(layer.ow, 8) if _need(target, co, o) <= target.num_vector_registers] or [1]
    return {"co_tile": co, "ow_tile": max(ows), "pack_at": "row"}


def schedule(s, layer, co_tile, ow_tile, pack_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = [co_i]
    if co_tile % lanes == 0 and co_tile > lanes:
        inner = list(conv.split(co_i, lanes, names=("co_v", "co_l")))
    if pack_at == "row":
        conv.reorder("n", "oh", co_o, ow_o, "kh", "kw", "ci", ow_i, *inner)
    else:
        conv.reorder("n", "oh", ow_o, co_o, "kh", "kw", "ci", ow_i, *inner)
    row = conv.fuse("n", "oh")
    conv.parallel(row)
    if co_tile % lanes == 0:
        conv.vectorize(inner[-1])
    if len(inner) == 2:
        conv.unroll(inner[0])
    conv.unroll(ow_i)
    s["pad"].compute_inline()
    col = s["im2col"]
    col.compute_at(conv, row if pack_at == "row" else ow_o)
    epi = [e for e in ("bias", "residual", "act") if e in s]
    for e in reversed(epi[1:]):
        s[e].reverse_compute_inline()
    if epi:
        s[epi[0]].reverse_compute_at(conv, row if pack_at == "tile" else co_o)
    conv.decompose_reduction(ow_o if pack_at == "row" else co_o)
