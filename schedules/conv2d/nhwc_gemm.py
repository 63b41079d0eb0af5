"""NHWC conv as GEMM with output-channel blocks outermost: the schedule for deep layers and 1x1 convs.

A conv is C[pixels, cout] = sum over taps (kh, kw) of A_tap[pixels, cin] x W[kh, kw][cin, cout]; a 1x1 conv is
exactly one GEMM (stride 2 only picks every other pixel). Rows-outer schedules (nhwc_direct) stream all the
weights once per output row, which is what a deep layer with a small image (14x14x256, 7x7x512: weights of
1-9 MB, only 7-14 rows) cannot afford. Here each core takes whole blocks of co_tile output channels: the
weight panel of a block (kh*kw*cin x co_tile) is read once per call from L2 and the (small) input stays in L2,
while the register tile (m_tile pixels x co_tile channels) accumulates over all of K before it is stored.
The pixel tile is oh_tile x ow_tile (a rectangle: fusing oh and ow into one "m" axis and splitting it gave
tiles that straddle rows, and TVM's cache_write + reverse_compute_at then wrote back a bounding box with
stale values -- wrong results, found by the tests).
Loop nest: parallel co_o > oh_o > ow_o > kh, kw, ci > oh_i, ow_i (unrolled) > co_v (unrolled) > co_l (vector)
The padded input is built once (a parallel pass); the epilogue (bias, residual, ReLU) runs per channel block.

Measured (Zen 3 EPYC, AVX2, shared noisy 2-core host; benchmarks/resnet18_conv.py, GFLOP/s, 1 thread / 2 threads):
  14x14x256 3x3: 72 / 94 (torch 72 / 113 NCHW); 14->7 256->512 1x1 s2: 49 / 62 (torch 53 / 59);
  28x28x128 3x3: 75 / 128. Without the weight-panel copy (pack_w=False) 14x14x256 ran at 24, 7x7x512 at 9.
  Pre-packed weights (wpack=16, Conv2d.pack_weights once) skip the copy: +5..30% on 1x1 and 7x7 layers.
  With wpack=8 the tile may cover two panels (co_tile 16): restricted to co_tile 8 it took a 2 x 7 x 8 tile
  (14 accumulators, one broadcast per FMA) and ran 2x slower on 56x56 and 28x28 (6.1 vs 2.7 ms, 5.6 vs 2.6).
  1 thread, Zen 3, core pinned, with wpack8/16 (benchmarks/resnet18_conv.py, quietest run): 28x28x128 90,
  28->14 3x3 s2 91, 14x14x256 90, 28->14 1x1 s2 62 GFLOP/s.
"""
from convsched.schedule import (divisors, fits_registers, fma_efficiency, inline_epilogue, place_epilogue,
                                split_lanes, tile_registers, vectorize_innermost, vectorize_lanes, vectors)

LAYER = "conv2d"


def applies(layer, target):
    if layer.layout != "NHWC" or layer.groups != 1:
        return "needs layout NHWC and groups=1"
    return True


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    # with pre-packed panels (wpack=P) a tile lies inside one panel or covers whole panels (P=8: 8 or 16)
    P = layer.wpack
    tiles = [t for t in (lanes, 2 * lanes, 3 * lanes) if layer.cout % t == 0 and (not P or P % t == 0 or t % P == 0)]
    if not P and layer.cout % lanes:
        # no vector divides cout: whole vectors, the last channel block cut short (tail="cut")
        tiles = [t for t in (lanes, 2 * lanes) if t < layer.cout]
    return tiles or [t for t in divisors(layer.cout) if t <= lanes][-1:]


KNOBS = {
    "co_tile": _co_tiles,
    "oh_tile": lambda layer, target: divisors(layer.oh, 4),
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),
    "pad_at": ["root", "inline"],
    "acc": ["local", "output"],     # accumulate the register tile in a local buffer, or in the output itself
    # copy the block's weight panel (kh*kw*cin x co_tile) contiguous first; pre-packed weights (wpack) need not
    "pack_w": lambda layer, target: [False] if layer.wpack else [True, False],
}


def constraint(layer, target, co_tile, oh_tile, ow_tile, pad_at, acc, pack_w):
    # slack 1: one weight vector may come from memory as the FMA's operand
    return fits_registers(target, tile_registers(target, oh_tile * ow_tile, co_tile), slack=1)


def defaults(layer, target):
    best = None
    lanes = target.lanes("float32")
    for co in _co_tiles(layer, target):
        for oh in divisors(layer.oh, 4):
            for ow in divisors(layer.ow, 8):
                m = oh * ow
                if fits_registers(target, tile_registers(target, m, co)) is True:
                    vecs = vectors(co, lanes)
                    # the share of the FMA peak the tile allows (the target's pipes, loads, latency), then most
                    # FMAs per load (m*vecs FMAs for m broadcasts + vecs weight loads), then wide rows
                    score = (round(fma_efficiency(target, m * vecs, m + vecs, co / (vecs * lanes)), 3),
                             m * vecs / (m + vecs), ow)
                    if best is None or score > best[0]:
                        best = (score, co, oh, ow)
    _, co, oh, ow = best
    return {"co_tile": co, "oh_tile": oh, "ow_tile": ow, "pad_at": "root" if any(layer.pads) else "inline",
            "acc": "local", "pack_w": not layer.wpack}


def schedule(s, layer, co_tile, oh_tile, ow_tile, pad_at, acc, pack_w):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile, tail="cut")
    oh_o, oh_i = conv.split("oh", oh_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    inner = split_lanes(conv, co_i, lanes, names=("co_v", "co_l"))
    conv.reorder(co_o, "n", oh_o, ow_o, "kh", "kw", "ci", oh_i, ow_i, *inner)
    conv.parallel(co_o)
    vectorize_lanes(conv, inner)
    conv.unroll(oh_i)
    conv.unroll(ow_i)
    if pack_w:
        # B packing (seed 004): HWIO rows are cout floats apart (2 KB at cout=512), so reading a co_tile-wide
        # panel in place touches a new page every row or two (TLB misses, no prefetch). One strided pass per
        # block copies it to a contiguous kh*kw*cin x co_tile buffer, which all pixel tiles then stream.
        wp = conv.cache_read("w", "global", name="w_panel")
        wp.compute_at(conv, co_o)
        vectorize_innermost(wp, lanes)
    pad = s["pad"]
    if pad_at == "inline":
        pad.compute_inline()
    else:
        rows = pad.fuse("n", "h", name="pad_rows")
        pad.parallel(rows)
        vectorize_innermost(pad, lanes)
    if acc == "local":
        out = conv.cache_write("local", name="conv_store")   # conv now accumulates in a tile-sized buffer
        inline_epilogue(s)                     # the epilogue rides on the store of each output element
        out.reverse_compute_at(conv, ow_o)
        vectorize_innermost(out, lanes)
    else:
        place_epilogue(s, conv, co_o, lanes)
    conv.decompose_reduction("kh")
