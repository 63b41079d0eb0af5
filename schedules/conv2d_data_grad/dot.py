"""Conv data gradient, "dot" algorithm: no transposed weights; co summed in 16-lane vectors, then across lanes.

dx[pixel, ci] = sum over taps and co of dy[pixel', co] * w[tap, ci, co]: both operands are contiguous along
co, the reduction. Instead of transposing w (the direct template's "wt": a pass over all weights, as slow as
the convolution itself for 512 channels), each (pixel, ci) of the register tile keeps a 16-lane partial sum
over co, and the 16 lanes are added once at the end of the reduction. Register tile: oh_tile x ow_tile pixels
x ci_tile input channels of 16-lane accumulators; each reduction step (kh, kw, cq) loads one dy vector per
pixel and one weight vector per input channel: pixels + ci_tile loads for pixels * ci_tile FMAs.

Loop orders (outer to inner):
  "ci"   parallel (n, ci_o) > h_o > w_o > [partial: kh, kw, cq > tile] > [lane sums]
         a task owns ci_tile input channels: its weight slice (kh*kw*ci_tile*cout floats) stays in L2 while
         it sweeps every pixel tile, so the weights are read from memory once per call (deep layers)
  "row"  parallel (n, h_o) > ci_o > w_o > [partial] > [lane sums]
The lane sums cost ~pixels*ci_tile*16 scalar adds per tile: small against kh*kw*cout/16 steps of the tile
when cout is large (the case this template is for), not when it is 64.
Stride > 1 is correct (the tap tests of the declaration) but not fast here: "partial" is computed for a
rectangle of pixels, and splitting it into pixel phases (as conv2d_data_grad/nhwc.py does) leaves TVM a
strided region it refuses to vectorize; use the nhwc template for strided layers.
"""
from convsched.schedule import divisors, fits_registers

LAYER = "conv2d_data_grad"
ALGORITHM = "dot"
LANES = 16                  # the declaration's DOT_LANES


def applies(layer, target):
    return layer.algorithm_applies(ALGORITHM)


KNOBS = {
    "ci_tile": lambda layer, target: divisors(layer.forward.cin, 8),
    # any tile size: TVM predicates a partial last tile (7 pixels have no good divisor)
    "ow_tile": lambda layer, target: list(range(1, min(layer.forward.w, 8) + 1)),
    "oh_tile": lambda layer, target: list(range(1, min(layer.forward.h, 4) + 1)),
    "order": ["ci", "row"],
}


def _regs(target, ci_tile, ow_tile, oh_tile):
    """Accumulators, plus the operands one side keeps while the other streams (the smaller side), plus one."""
    per = -(-LANES // target.lanes("float32"))           # registers per 16-lane accumulator (AVX2: 2)
    px = oh_tile * ow_tile
    return per * (px * ci_tile + min(px, ci_tile) + 1)


def constraint(layer, target, ci_tile, ow_tile, oh_tile, order):
    need = _regs(target, ci_tile, ow_tile, oh_tile)
    return fits_registers(target, need)


def defaults(layer, target):
    f = layer.forward
    best = None
    for ci in divisors(f.cin, 8):
        for ow in divisors(f.w, 8):
            for oh in divisors(f.h, 4):
                if fits_registers(target, _regs(target, ci, ow, oh)) is not True:
                    continue
                px = ow * oh
                score = (min(px * ci, 24), px * ci / (px + ci), ow)      # accumulators, FMAs per load, wide rows
                if best is None or score > best[0]:
                    best = (score, ci, ow, oh)
    _, ci, ow, oh = best
    return {"ci_tile": ci, "ow_tile": ow, "oh_tile": oh, "order": "ci"}


def schedule(s, layer, ci_tile, ow_tile, oh_tile, order):
    dx = s["dx"]
    ci_o, ci_i = dx.split("ci", ci_tile)
    h_o, h_i = dx.split("h", oh_tile)
    w_o, w_i = dx.split("w", ow_tile)
    if order == "ci":
        dx.reorder("n", ci_o, h_o, w_o, h_i, w_i, ci_i, "lane")
        outer = dx.fuse("n", ci_o)
    else:
        dx.reorder("n", h_o, ci_o, w_o, h_i, w_i, ci_i, "lane")
        outer = dx.fuse("n", h_o)
    dx.parallel(outer)
    part = s["partial"]
    part.compute_at(dx, w_o)
    ax = part.axes
    n_, h_, w_, c_, lane, kh, kw, cq = ax[ax.index(w_o) + 1:]
    part.reorder(kh, kw, cq, n_, h_, w_, c_, lane)
    part.vectorize(lane)
    for axis in (n_, h_, w_, c_, kh, kw):
        part.unroll(axis)
    s["pad"].parallel(s["pad"].fuse("n", "h"))
    part.decompose_reduction(kh)
