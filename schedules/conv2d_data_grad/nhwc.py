"""Conv data gradient, NHWC: the forward nhwc_direct's register tile, on dy and the transposed weights.

dx is a convolution of the zero-padded dy with wt[kh, kw, co, ci] (input channels contiguous), so the tile is
nhwc_direct's with the roles of ci and co swapped: oh_tile x ow_tile pixels x ci_tile input channels of
accumulators (ci vectorized); each reduction step (kh, kw, co) loads ci_tile/lanes weight vectors and
broadcasts one dy value per pixel.

Loop orders (outer to inner; the reduction kh, kw, co_i is right above the tile):
  "row"  parallel (n, h_o) > ci_o > co_o > w_o > kh, kw, co_i > tile      weights (all of wt) in L2
  "ci"   parallel (n, ci_o) > co_o > h_o > w_o > kh, kw, co_i > tile      deep layers: each task owns a
         block of input channels and streams its weight slice once (wt_at="block" transposes just that slice
         into a small buffer, in cache, instead of all weights in a pass of its own)
Stride > 1: a tap reads dy only where (h + pad - kh*dilation) is a multiple of the stride: pixels of
different phases (h % stride, w % stride) use different taps (3x3 stride 2: 1, 2, 2 or 4 of the 9).
phases=True splits h and w by the stride and unrolls the phase loops outside the reduction: each copy of the
loop nest computes one phase, its register tile holds pixels of that phase only (stride apart in dx), and with
unroll_taps every (tap, phase) test is a constant that folds away, so each copy runs just its own taps with
the full tile. Without phases a tile mixes phases and every tap feeds a quarter of it (half the FMAs per
load); measured 1 thread on the 56->28 3x3 s2 layer: phases 0.6x the time of mixed tiles.
"""
from convsched.schedule import divisors, fits_registers, fma_efficiency, lanes_dividing

LAYER = "conv2d_data_grad"

# weights below this fit a core's L2 with room for dy rows: "row" order (56->28 s2, 295 KB: row 0.59 ms, ci
# 0.66 ms); at and above it "ci" with wt per block (14->7 1x1 s2, 512 KB: ci 0.11 ms, row 0.19 ms)
L2_WEIGHT_BYTES = 512 * 1024


def _ci_tiles(layer, target):
    v = lanes_dividing(layer.forward.cin, target)
    return [t for t in divisors(layer.forward.cin, 4 * v) if t % v == 0]


def _co_tiles(layer, target):
    opg = layer.forward.cout_per_group
    return sorted({opg} | {d for d in divisors(opg) if d >= 16})


KNOBS = {
    "ci_tile": _ci_tiles,                                              # input channels per register tile
    # pixels along w and rows per register tile: divisors of the image or of one pixel phase (stride > 1)
    "ow_tile": lambda layer, target: sorted({*divisors(layer.forward.w, 14), *divisors(_grid(layer, True)[1], 14)}),
    # rows need not divide (TVM predicates the last row tile) so that 7-row grids can have 14-pixel tiles; measured
    # no gain (7x7 512: 1.86 vs 1.76 ms; 14->7 3x3 s2 with phases 1.79 vs 0.90 ms), so defaults take divisors
    "oh_tile": lambda layer, target: list(range(1, min(4, layer.forward.h) + 1)),
    "co_tile": _co_tiles,                                              # output channels per pass (reduction)
    "order": ["row", "ci"],
    "wt_at": ["root", "block"],
    "unroll_taps": [False, True],
    "phases": lambda layer, target: [False, True] if max(layer.forward.strides) > 1 else [False],
}


def _regs(layer, target, ci_tile, ow_tile, oh_tile):
    vecs = ci_tile // lanes_dividing(layer.forward.cin, target)
    return oh_tile * ow_tile * vecs + vecs + 1


def constraint(layer, target, ci_tile, ow_tile, oh_tile, co_tile, order, wt_at, unroll_taps, phases):
    if phases and not unroll_taps:
        return "phases needs unroll_taps (the tap tests fold only when the taps are unrolled)"
    if wt_at == "block" and order != "ci":
        return "wt_at='block' needs order 'ci' (in 'row' order every row would transpose the weights again)"
    need = _regs(layer, target, ci_tile, ow_tile, oh_tile)
    return fits_registers(target, need)


def _grid(layer, phases):
    """Rows and columns of pixels a tile is cut from: the image, or with phases one phase's share of it."""
    f = layer.forward
    if not phases:
        return f.h, f.w
    return -(-f.h // f.strides[0]), -(-f.w // f.strides[1])


def defaults(layer, target):
    """The register tile whose FMAs can run at peak by fma_efficiency() (the target's FMA pipes, latency and load
    ports), then with the most accumulators (at most regs - 4: 28 of 32 zmm, 12 of 16 ymm), then wide rows;
    pixel tiles that divide the (phase) grid.
    Measured 1 thread (Xeon, rocketlake, AVX-512, 2026-12-01, shared machine): 56x56 64->64: ci 32 x 14 px
    (28 accumulators) 1.27 ms vs 8 px 1.65 ms; 56->28 s2 with phases: 0.59-0.61 ms for 14, 2x4 and 7x2 px
    tiles vs 1.04 ms without phases at 2x4; deep layers ("ci" order, wt per block): 14->7 s2 0.90 ms."""
    f = layer.forward
    v = lanes_dividing(f.cin, target)
    phases = max(f.strides) > 1
    rows, cols = _grid(layer, phases)
    regs = target.num_vector_registers
    best = None
    for ci in _ci_tiles(layer, target):
        vecs = ci // v
        for ow in divisors(cols, 14):
            for oh in divisors(rows, 4):
                if fits_registers(target, _regs(layer, target, ci, ow, oh)) is not True:
                    continue
                acc = ow * oh * vecs
                score = (round(fma_efficiency(target, acc, ow * oh + vecs), 3), min(acc, regs - 4), ow)
                if best is None or score > best[0]:
                    best = (score, ci, ow, oh)
    _, ci, ow, oh = best
    weight_bytes = f.kh * f.kw * f.cin_per_group * f.cout * 4
    deep = weight_bytes >= L2_WEIGHT_BYTES
    # output channels per pass: all of a group's in one (dx's accumulators stored once) while the weights a block
    # streams (kh x kw x co_tile x ci_tile floats) stay within half of L2. 28->14 128->256 s2, 1 / 2 threads:
    # co 256 0.68 / 0.40 ms vs co 64 0.70 / 0.45; 7x7x512: co 512 1.99 / 1.04 vs 2.10 / 1.14.
    co = max([c for c in _co_tiles(layer, target) if f.kh * f.kw * c * ci * 4 <= target.l2_bytes // 2]
             or [min(_co_tiles(layer, target))])
    return {"ci_tile": ci, "ow_tile": ow, "oh_tile": oh, "co_tile": co, "order": "ci" if deep else "row",
            "wt_at": "block" if deep else "root", "unroll_taps": phases, "phases": phases}


def schedule(s, layer, ci_tile, ow_tile, oh_tile, co_tile, order, wt_at, unroll_taps, phases):
    v = lanes_dividing(layer.forward.cin, s.target)
    sh, sw = layer.forward.strides
    dx = s["dx"]
    ci_o, ci_i = dx.split("ci", ci_tile)
    h, w, ph_h, ph_w = "h", "w", [], []
    if phases:                            # h = h_q * sh + h_ph: one copy of the nest per phase (see above)
        h, hp = dx.split("h", factors=[None, sh], names=("h_q", "h_ph"))
        w, wp = dx.split("w", factors=[None, sw], names=("w_q", "w_ph"))
        ph_h, ph_w = [hp], [wp]
    h_o, h_i = dx.split(h, oh_tile, names=("h_o", "h_i"))
    w_o, w_i = dx.split(w, ow_tile, names=("w_o", "w_i"))
    co_o, co_i = dx.split("co", co_tile)
    inner = [ci_i] if ci_tile == v else list(dx.split(ci_i, v, names=("ci_v", "ci_l")))
    tile = [h_i, w_i, *inner]
    if order == "row":
        dx.reorder("n", h_o, *ph_h, ci_o, co_o, *ph_w, w_o, "kh", "kw", co_i, *tile)
        outer = dx.fuse("n", h_o)
    else:
        dx.reorder("n", ci_o, co_o, h_o, *ph_h, *ph_w, w_o, "kh", "kw", co_i, *tile)
        outer = dx.fuse("n", ci_o)
    dx.parallel(outer)
    dx.vectorize(tile[-1])
    for axis in tile[:-1] + ph_h + ph_w:
        dx.unroll(axis)
    if unroll_taps:
        dx.unroll("kh")
        dx.unroll("kw")
    wt = s["wt"]
    if wt_at == "block":
        wt.compute_at(dx, co_o)
    else:
        wt.parallel(wt.fuse("kh", "kw"))
    # the transposition reads w with a stride of cout floats per input channel: gather a vector of input
    # channels per load (LLVM: one insert per lane) and store it whole; scalar copies cost ~1 ns an element,
    # as much as the convolution itself on 256-512 channels (14->7 s2: 1.2 of 1.8 ms)
    ci_ax = wt.axes[-1]
    _, wt_v = wt.split(ci_ax, min(v, ci_tile) if wt_at == "block" else v, names=("wt_o", "wt_v"))
    wt.vectorize(wt_v)
    # the zero-padded dy is a buffer of its own, built in one parallel pass: inlined, its bounds test and the
    # unrolled taps let TVM fold "0 * w" to 0, so an inf weight gave a number at the border where reference()
    # (and this schedule with the buffer) give NaN. (Padded rows per row block instead: no faster on 56x56x64.)
    pad = s["pad"]
    pad.parallel(pad.fuse("n", "h"))
    dx.decompose_reduction(co_o)
