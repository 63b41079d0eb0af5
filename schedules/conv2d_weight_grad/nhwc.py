"""Conv weight gradient, NHWC: a (ci x co) register tile of dw, co vectorized, the pixel reduction inside it.

dw[kh, kw, ci, co] sums x[pixel shifted by the tap, ci] * dy[pixel, co] over all n*oh*ow pixels: a GEMM whose
reduction is the pixels. Register tile: ci_tile x co_tile/lanes accumulators [x kw when kw_in_tile: the taps
of a row share their dy loads, which depthwise layers need: one input channel per group]. Each pixel step
loads co_tile/lanes dy vectors and broadcasts ci_tile (x kw) input values.

Loop nest (order "blocks"): parallel (co_o, ci_o) > oh_o (pixel chunk, reduction) > kh > kw > n, oh_i, ow
(reduction) > tile. Each task owns a block of dw and streams the pixels; the accumulators are stored once per
chunk of rows (rows_per_pass: a block of dy small enough to stay in L2 while the kh sweeps re-read it).
Order "passes": co_o > oh_o > parallel ci_o > ...: every input-channel block of a pass reads the same dy chunk
(one parallel region per pass); within the noise of "blocks" on 56x56x64 (1.13-1.31 vs 1.15-1.31 ms, 1 thread,
Xeon rocketlake, shared machine), so a tuner's choice.
"""
from convsched.schedule import divisors, fits_registers, fma_efficiency, lanes_dividing

LAYER = "conv2d_weight_grad"

DY_CHUNK_BYTES = 128 * 1024


def _co_tiles(layer, target):
    v = lanes_dividing(layer.forward.cout, target)
    return [t for t in divisors(layer.forward.cout, 4 * v) if t % v == 0]


KNOBS = {
    "co_tile": _co_tiles,                                                       # output channels (vectors)
    "ci_tile": lambda layer, target: divisors(layer.forward.cin_per_group, 16),  # input channels (broadcasts)
    "kw_in_tile": [False, True],
    "rows_per_pass": lambda layer, target: divisors(layer.forward.oh),
    "pad_at": ["root", "inline"],
    "order": ["blocks", "passes"],
}


def _regs(layer, target, co_tile, ci_tile, kw_in_tile):
    vecs = co_tile // lanes_dividing(layer.forward.cout, target)
    taps = layer.forward.kw if kw_in_tile else 1
    return taps * ci_tile * vecs + vecs + 1


def constraint(layer, target, co_tile, ci_tile, kw_in_tile, rows_per_pass, pad_at, order):
    need = _regs(layer, target, co_tile, ci_tile, kw_in_tile)
    return fits_registers(target, need)


def defaults(layer, target):
    """The tile whose FMAs can run at peak by fma_efficiency() (the target's FMA pipes, latency and load ports),
    then with the most accumulators the registers allow (at most regs - 4), then the fewest loads per FMA
    (7x7x512: ci 2 x co 64 1.56 ms, ci 4 x co 32 1.81 ms); kw_in_tile when the taps of a row add accumulators
    that the channels cannot (depthwise, or
    56x56x64 on AVX-512: kw 3 x ci 2 x co 64 = 24 accumulators, 10 loads per 24 FMAs: 1.21 ms vs 1.66 ms
    for ci 4 x co 64, 1 thread, Xeon rocketlake, 2026-12-01)."""
    f = layer.forward
    v = lanes_dividing(f.cout, target)
    regs = target.num_vector_registers
    best = None
    for kw_in in (False, True):
        taps = f.kw if kw_in else 1
        for co in _co_tiles(layer, target):
            for ci in divisors(f.cin_per_group, 16):
                if _regs(layer, target, co, ci, kw_in) > regs:
                    continue
                vecs = co // v
                acc = taps * ci * vecs
                loads = vecs + taps * ci
                score = (round(fma_efficiency(target, acc, loads), 3), min(acc, regs - 4), -round(loads / acc, 3),
                         not kw_in)
                if best is None or score > best[0]:
                    best = (score, co, ci, kw_in)
    _, co, ci, kw_in = best
    # rows per pass: the most whose dy block (rows x ow x co_tile floats) fits DY_CHUNK_BYTES, so the kh sweeps
    # of a pass re-read it from L2 (56x56x64: 8 rows, 1.22-1.24 ms vs 1.38-1.43 ms for all 56 in one pass)
    rows = max(r for r in divisors(f.oh) if r == 1 or r * f.ow * co * 4 <= DY_CHUNK_BYTES)
    return {"co_tile": co, "ci_tile": ci, "kw_in_tile": kw_in, "rows_per_pass": rows,
            "pad_at": "root" if any(f.pads) else "inline", "order": "blocks"}


def schedule(s, layer, co_tile, ci_tile, kw_in_tile, rows_per_pass, pad_at, order):
    v = lanes_dividing(layer.forward.cout, s.target)
    dw = s["dw"]
    co_o, co_i = dw.split("co", co_tile)
    ci_o, ci_i = dw.split("ci", ci_tile)
    oh_o, oh_i = dw.split("oh", rows_per_pass)
    inner = [co_i] if co_tile == v else list(dw.split(co_i, v, names=("co_v", "co_l")))
    outer = [co_o, ci_o, oh_o] if order == "blocks" else [co_o, oh_o, ci_o]
    if kw_in_tile:
        dw.reorder(*outer, "kh", "n", oh_i, "ow", "kw", ci_i, *inner)
        unrolled = ["kw", ci_i, *inner[:-1]]
    else:
        dw.reorder(*outer, "kh", "kw", "n", oh_i, "ow", ci_i, *inner)
        unrolled = [ci_i, *inner[:-1]]
    if order == "blocks":
        dw.parallel(dw.fuse(co_o, ci_o))
    else:
        dw.parallel(ci_o)
    dw.vectorize(inner[-1])
    for axis in unrolled:
        dw.unroll(axis)
    pad = s["pad"]
    if pad_at == "inline":
        pad.compute_inline()
    else:
        pad.parallel(pad.fuse("n", "h"))
    dw.decompose_reduction(oh_o)
