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
from convsched.schedule import (divisors, fits_registers, place_epilogue, split_lanes, tile_registers,
                                vectorize_lanes)

LAYER = "conv2d"
ALGORITHM = "im2col"


def applies(layer, target):
    return layer.algorithm_applies(ALGORITHM)


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 3 * lanes, 4 * lanes) if layer.cout % t == 0]
    if layer.cout % lanes:                 # whole vectors, the last channel block cut short (tail="cut")
        tiles = [t for t in (lanes, 2 * lanes) if t < layer.cout]
    return tiles or [t for t in divisors(layer.cout) if t <= lanes][-1:]


KNOBS = {
    "co_tile": _co_tiles,
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "pack_at": ["row", "tile"],
}


def constraint(layer, target, co_tile, ow_tile, pack_at):
    return fits_registers(target, tile_registers(target, ow_tile, co_tile))


def defaults(layer, target):
    lanes = target.lanes("float32")
    cos = _co_tiles(layer, target)
    co = 2 * lanes if 2 * lanes in cos else cos[0]
    ows = [o for o in divisors(layer.ow, 8) if fits_registers(target, tile_registers(target, o, co)) is True] or [1]
    return {"co_tile": co, "ow_tile": max(ows), "pack_at": "row"}


def schedule(s, layer, co_tile, ow_tile, pack_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile, tail="cut")
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = split_lanes(conv, co_i, lanes, names=("co_v", "co_l"))
    if pack_at == "row":
        conv.reorder("n", "oh", co_o, ow_o, "kh", "kw", "ci", ow_i, *inner)
    else:
        conv.reorder("n", "oh", ow_o, co_o, "kh", "kw", "ci", ow_i, *inner)
    row = conv.fuse("n", "oh")
    conv.parallel(row)
    vectorize_lanes(conv, inner)
    conv.unroll(ow_i)
    s["pad"].compute_inline()
    col = s["im2col"]
    col.compute_at(conv, row if pack_at == "row" else ow_o)
    place_epilogue(s, conv, row if pack_at == "tile" else co_o, lanes)
    conv.decompose_reduction(ow_o if pack_at == "row" else co_o)
