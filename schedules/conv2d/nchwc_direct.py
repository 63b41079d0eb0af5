"""Direct conv in the blocked layout NCHWc (channel blocks of cb = layer.cblock), pre-packed weights.

x (n, cin/cb, h, w, cb), w (cout/cb, cin/cb, kh, kw, cb_in, cb_out), y (n, cout/cb, oh, ow, cb).
Each reduction step broadcasts one input scalar x[.., ci] and multiplies it into cob_tile weight vectors
(cb_out lanes each, contiguous in the packed weights) for ow_tile pixels: ow_tile * cob_tile accumulators.
Loop nest: parallel (n, co_b_o, oh) > ow_o > ci_b, kh, kw, ci > ow_i (unrolled) > co_b_i (unrolled) > co (vector)
The blocked layout makes every access unit-stride whatever the stride (the NCHW template's strided gathers
vanish), and keeps the NCHW family's planar blocks for layout-sensitive neighbours (seed 004).
The block cb is the data layout's (the shapes of x, w, y), fixed when the layer is declared, so it cannot be a
knob: give Conv2d(cblock=target.lanes("float32")) for whole vectors (16 on AVX-512, 8 on AVX2). Any block
runs on any target: cb < lanes is a partial vector (cb=8 on AVX-512: ymm FMAs, half the zmm peak), cb > lanes
several vectors per block (the register budget counts vectors(cb, lanes) per block).
"""
from convsched.schedule import (divisors, fits_registers, place_epilogue, tile_registers, vectorize_innermost,
                                vectors)

LAYER = "conv2d"


def applies(layer, target):
    if layer.layout != "NCHWc":
        return "needs layout NCHWc"
    return True


KNOBS = {
    "cob_tile": lambda layer, target: divisors(layer.cout // layer.cblock, 4),
    "ow_tile": lambda layer, target: divisors(layer.ow, 14),
    "pad_at": ["inline", "root"],
}


def _need(layer, target, cob_tile, ow_tile):
    # each of the cob_tile blocks of cb channels takes vectors(cb, lanes) registers (a partial one if cb < lanes)
    lanes = target.lanes("float32")
    return tile_registers(target, ow_tile, cob_tile * vectors(layer.cblock, lanes) * lanes)


def constraint(layer, target, cob_tile, ow_tile, pad_at):
    return fits_registers(target, _need(layer, target, cob_tile, ow_tile))


def defaults(layer, target):
    best = None
    for cob in divisors(layer.cout // layer.cblock, 4):
        for ow in divisors(layer.ow, 14):
            need = _need(layer, target, cob, ow)
            if need <= target.num_vector_registers:
                # most accumulators, then the fewest loads per FMA (square-ish tiles)
                score = (ow * cob, -abs(ow - cob * 4))
                if best is None or score > best[0]:
                    best = (score, cob, ow)
    _, cob, ow = best
    return {"cob_tile": cob, "ow_tile": ow, "pad_at": "root"}


def schedule(s, layer, cob_tile, ow_tile, pad_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    cb_o, cb_i = conv.split("co_b", cob_tile, names=("co_b_o", "co_b_i"))
    ow_o, ow_i = conv.split("ow", ow_tile)
    conv.reorder("n", cb_o, "oh", ow_o, "ci_b", "kh", "kw", "ci", ow_i, cb_i, "co")
    outer = conv.fuse("n", cb_o, "oh", name="outer")
    conv.parallel(outer)
    conv.vectorize("co")                  # the block: a vector, part of one (cb < lanes) or several (cb > lanes)
    conv.unroll(cb_i)
    conv.unroll(ow_i)
    pad = s["pad"]
    if pad_at == "inline":
        pad.compute_inline()
    else:
        outer_p = pad.fuse("n", "cb", "h", name="pad_rows")
        pad.parallel(outer_p)
        vectorize_innermost(pad, lanes)
    place_epilogue(s, conv, outer, lanes)
    conv.decompose_reduction("ci_b")
