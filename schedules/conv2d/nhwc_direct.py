"""Direct NHWC conv: an (oh x ow x co) register tile of accumulators, co vectorized, three loop orders.

Register tile (innermost, fully unrolled): oh_tile x ow_tile pixels x co_tile channels, i.e.
oh_tile * ow_tile * co_tile/lanes vector accumulators. With weights in HWIO the co axis is contiguous: each
reduction step (kh, kw, ci) loads co_tile/lanes weight vectors, broadcasts oh_tile*ow_tile input scalars and
issues one FMA per accumulator. The target's model says how many accumulators keep the FMA pipes busy
(pipes x latency: 8 on Zen 3, 2 x 4) and how many loads a cycle allows; accumulators + weight vectors + 1
broadcast must fit the vector registers (16 ymm on AVX2, 32 zmm on AVX-512), else LLVM spills. defaults()
scores every legal tile with that model (convsched.schedule.fma_efficiency).
px_tile > 0 (orders "co"/"ci"): the tile is px_tile pixels of the fused (oh, ow) axis instead, which need
not divide oh*ow (TVM predicates the last tile; LLVM runs the full tiles without the test). 7x7 outputs
have no good rectangle (7 is prime: 7 x 8 channels = 7 accumulators, one broadcast per FMA; 7 x 16 needs
17 registers and spilled: 27 GFLOP/s); 5 pixels x 16 channels = 10 accumulators + 2 weights + 1 broadcast
in 49 = 9 x 5 + 4 pixels. Each pixel keeps its own input pointer (p -> p // ow, p % ow): 6 ran out of
general registers.

Loop orders (outer to inner; the reduction kh, kw, ci_i is always right above the register tile):
  "row"  parallel (n, oh_o) > co_o > ci_o > ow_o > kh, kw, ci_i > tile
         rows in parallel; the padded rows of one output row are built in cache (pad_at="row"). Best when
         all weights fit L2 (56x56x64: 147 KB). Unpadded (1x1) layers read the input in place.
  "co"   parallel (n, co_o) > ci_o > oh_o > ow_o > kh, kw, ci_i > tile
         a block of co_tile output channels per task. Defaults use it (a) when the rows do not split evenly
         over the cores, and (b) for small images with pre-packed weights (wpack): each block streams its
         contiguous panel over all of K (ci_tile = cin) once per pixel tile from L2; one parallel region.
  "ci"   ci_o > parallel co_o > oh_o > ow_o > kh, kw, ci_i > tile   (n outermost)
         for many channels (weights >> L2): with pack="xw" each ci_o slab of the input and each
         (ci_o, co_o) weight slice is copied into a small contiguous buffer first; with pre-packed panels
         (wpack) pack="x" copies the input slab only and reads the weights in place. Without packing, the
         input pixels and weight rows of one ci slab lie cin*4 bytes apart (2 KB at cin=512): they fall into
         a few L1 sets and evict each other (7x7x512: 37 -> 56 GFLOP/s with packing, 1 thread).
ci_tile input channels per pass keep the weight slice (kh*kw*ci_tile*co_tile floats) within ~1.25 x L1D;
the accumulators are reloaded once per pass (LLVM keeps them in registers across kh, kw, ci_i).
Pre-packed weights (Conv2d(wpack=P), layer.pack_weights once): the tile lies inside one panel or covers
whole panels (co_tile 16 on P = 8 or 16), never a per-call weight copy.

Measured (AMD EPYC Zen 3, AVX2, 1 thread, core pinned; benchmarks/resnet18_conv.py: best of 5 interleaved
rounds, aligned inputs, fp32 peak measured in the same process, 102 GFLOP/s; machine shared with another
job, so runs vary by up to +-25%), defaults (+wpackP = weights pre-packed once in P-wide panels):
  56x56  64->64  3x3     row, co 16 x ow 4, ci 64 (+wpack8):         95 GFLOP/s (93%)
  28x28 128->128 3x3     ci+x, co 16 x ow 4, ci 32 (+wpack16):       92 GFLOP/s (89%)
  14x14 256->256 3x3     ci+x, co 16 x oh 2 x ow 2, ci 32 (+wpack16): 90 GFLOP/s (87%)
   7x7  512->512 3x3     co, px 5 x co 16, ci 512 (+wpack8/16):    81-90 GFLOP/s (79-88%)  [was ci+xw, 7 x co 8: 47-57]
  14->7 256->512 3x3 s2  co, px 5 x co 16, ci 256 (+wpack16):       94 GFLOP/s (92%)  [was 59-61]
  14->7 256->512 1x1 s2  co, px 5 x co 16 (+wpack8):                74 GFLOP/s (72%)  [was ci+xw: 44-50]
  56->28 64->128 1x1 s2  row, co 16 x ow 4, read in place (+wpack8): 73 GFLOP/s (71%)
  (the 1x1 layers take ~0.17 ms: the Python call and the output allocation are 10-20% of that).
  Without pre-packed weights 7x7 runs ci+xw with the 5-pixel tile: 57-62 GFLOP/s (the per-call copy of
  all 9.4 MB of weights).
  co_tile 32 x ow_tile 4 (16 accumulators + 4 weights) spilled: 34 GFLOP/s on 56x56.
"""
from convsched.schedule import (divisors, fits_registers, fma_efficiency, place_epilogue, split_lanes,
                                tile_registers, vectorize_innermost, vectorize_lanes, vectors)

LAYER = "conv2d"


def _l1_weight_bytes(target):
    # weight slice per ci pass: 1.25 x L1D (Zen 3, 32 KB L1D: 40 KB; 56x56: ci 64 beat ci 16 and 32)
    return target.l1d_bytes * 5 // 4


def _deep(layer, target):
    # "row" order while all weights fit half of one core's L2 (Zen 3: 256 KB of 512 KB)
    return layer.groups == 1 and layer.kh * layer.kw * layer.cin_per_group * layer.cout * 4 > target.l2_bytes // 2

# pixel tiles along the fused (oh, ow) axis that defaults() considers: each pixel of a tile keeps its own input
# pointer in a general-purpose register; 6 ran out of them (7x7x512, co 16: px 4/5/6 = 57/61/53 GFLOP/s)
PX_DEFAULT = (4, 5)


def applies(layer, target):
    return layer.layout == "NHWC" or "needs layout NHWC"


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    opg = layer.cout_per_group
    tiles = [t for t in divisors(layer.cout, 4 * lanes) if t % lanes == 0 or t == opg or t >= layer.cout
             or t in (1, 2, 4)][-6:]
    if layer.cout % lanes and layer.groups == 1:
        # channels that no vector divides: whole vectors, the last tile cut short (tail="cut")
        tiles = sorted(set(tiles) | {k * lanes for k in (1, 2) if k * lanes < layer.cout})
    return tiles


def _ci_tiles(layer, target):
    cpg = layer.cin_per_group
    return sorted({cpg} | {d for d in divisors(cpg) if d >= 16})


KNOBS = {
    "co_tile": _co_tiles,                                      # output channels per register tile
    "ow_tile": lambda layer, target: divisors(layer.ow, 14),   # output columns per register tile
    "oh_tile": lambda layer, target: divisors(layer.oh, 4),    # output rows per register tile
    "px_tile": [0, 4, 5, 6],                                   # >0: pixels per tile along fused (oh, ow)
    "ci_tile": _ci_tiles,                                      # input channels per pass over a weight slice
    "order": ["row", "co", "ci"],                              # see the docstring
    "pack": ["none", "xw", "x"],                               # copy input(/weight) slices contiguous (co, ci)
    "pad_at": ["row", "root", "inline"],                       # padded rows per output row / one pass / inline
    "unroll_kw": [False, True],
}


def _regs(target, co_tile, ow_tile, oh_tile):
    return tile_registers(target, oh_tile * ow_tile, co_tile)


def constraint(layer, target, co_tile, ow_tile, oh_tile, px_tile, ci_tile, order, pack, pad_at, unroll_kw):
    if px_tile:
        if order == "row":
            return "px_tile needs order 'co' or 'ci' (the 'row' order runs whole rows)"
        if oh_tile != 1 or ow_tile != 1:
            return "px_tile replaces oh_tile x ow_tile: set both to 1"
        if px_tile >= layer.oh * layer.ow:
            return "px_tile must be smaller than the image"
        ow_tile = px_tile
    if pad_at == "row" and order != "row":
        return "pad_at='row' needs order='row'"
    if pack != "none" and order == "row":
        return "pack needs order 'co' or 'ci' (in 'row' order it would repack every row)"
    return fits_registers(target, _regs(target, co_tile, ow_tile, oh_tile))


def _tile_score(target, co_tile, ow_tile, oh_tile):
    """Fraction of the target's FMA peak the register tile allows (pipes, loads, latency: fma_efficiency)."""
    lanes = target.lanes("float32")
    vecs, pix = vectors(co_tile, lanes), ow_tile * oh_tile
    used = co_tile / (vecs * lanes)               # lanes a partial vector leaves idle
    return fma_efficiency(target, pix * vecs, vecs + pix, used)


def defaults(layer, target):
    lanes = target.lanes("float32")
    space = {k: (v(layer, target) if callable(v) else v) for k, v in KNOBS.items()}
    P = layer.wpack
    # pre-packed weights (wpack=P): a register tile covers whole panels or lies inside one, so each weight
    # vector is one contiguous load from a panel
    cos = [c for c in space["co_tile"] if not P or P % c == 0 or c % P == 0] or space["co_tile"]
    deep = _deep(layer, target)
    pixels = layer.oh * layer.ow
    regs = target.num_vector_registers
    # (co, ow, oh, px): rectangular oh x ow tiles, or (deep layers, not the "row" order) px pixels of the
    # fused (oh, ow) axis, scored with the pixels wasted by a partial last tile
    tiles = [(co, ow, oh, 0) for co in cos for ow in space["ow_tile"] for oh in space["oh_tile"]
             if _regs(target, co, ow, oh) <= regs]
    if deep:
        tiles += [(co, 1, 1, px) for co in cos for px in PX_DEFAULT if px < pixels and _regs(target, co, px, 1) <= regs]

    def score(t):
        co, ow, oh, px = t
        fill = pixels / (-(-pixels // px) * px) if px else 1.0
        return round(_tile_score(target, co, px or ow, 1 if px else oh) * fill, 3)
    # best modelled tile; ties: rectangular (no per-pixel pointers), more accumulators, then two weight vectors
    # (4x16 and 2x2x16 measured best)
    co, ow, oh, px = max(tiles, key=lambda t: (score(t), -t[3], (t[3] or t[1] * t[2]) * vectors(t[0], lanes),
                                               -abs(vectors(t[0], lanes) - 2), -t[2]))
    rows = layer.n * (layer.oh // oh)
    if not deep:
        # no padding (1x1 convs): read the input in place rather than copy rows (the stride-2 1x1 convs
        # would copy twice the columns they read)
        order, pack, pad_at = "row", "none", ("row" if any(layer.pads) else "inline")
        if layer.groups == 1 and target.cores > 1 and rows % target.cores and (layer.cout // co) % target.cores == 0:
            # too few (or uneven) row blocks for the cores (28->14 1x1 s2, oh_tile 2: 7 rows on 2 cores run
            # 4 + 3): channel blocks in parallel instead, the padded input built once (or read in place)
            order, pad_at = "co", ("root" if any(layer.pads) else "inline")
    elif P and px:
        # pre-packed panels, small image (7x7 outputs: 10 pixel tiles): channel blocks in parallel, each
        # streaming its contiguous panel over all of K once per pixel tile (L2), nothing copied per call
        # but the padded input (one pass); one parallel region, 32 even chunks at co_tile 16
        order, pack, pad_at = "co", "none", ("root" if any(layer.pads) else "inline")
    else:                                        # many weights: stream them once, packed (see above)
        # pre-packed panels are read in place: only the input slab is copied per call
        order, pack, pad_at = "ci", ("x" if P else "xw"), "inline"

    def l1_bytes(ci):                            # weight slice (+ in "ci" order the input band it meets)
        band = (oh - 1) * layer.strides[0] + layer.kh if order == "ci" else 0
        return 4 * ci * (layer.kh * layer.kw * co + band * (layer.w + 2 * layer.pads[1]))
    # "ci" order, measured in interleaved runs (1 thread): 7x7x512 ci 16/32/64/512: 46/57/32/23 GFLOP/s;
    # 28x28 and 14x14: ci 32 = ci 64. So at most 32 there.
    fit = [c for c in space["ci_tile"] if l1_bytes(c) <= _l1_weight_bytes(target) and (order != "ci" or c <= 32)]
    ci = max(fit) if fit else min(space["ci_tile"])
    if order == "co" and deep:
        ci = layer.cin_per_group                 # the whole reduction per pixel tile: no accumulator reloads
    return {"co_tile": co, "ow_tile": ow, "oh_tile": oh, "px_tile": px, "ci_tile": ci, "order": order,
            "pack": pack, "pad_at": pad_at, "unroll_kw": False}


def schedule(s, layer, co_tile, ow_tile, oh_tile, px_tile, ci_tile, order, pack, pad_at, unroll_kw):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    co_o, co_i = conv.split("co", co_tile, tail="cut")
    if px_tile:              # (oh, ow) fused into one pixel axis, tiled by px_tile (the last tile predicated)
        px_o, px_i = conv.split(conv.fuse("oh", "ow", name="px"), px_tile, names=("px_o", "px_i"))
        pix_o, pix_i = [px_o], [px_i]
    else:
        oh_o, oh_i = conv.split("oh", oh_tile)
        ow_o, ow_i = conv.split("ow", ow_tile)
        pix_o, pix_i = [oh_o, ow_o], [oh_i, ow_i]
    ci_o, ci_i = conv.split("ci", ci_tile)
    inner = split_lanes(conv, co_i, lanes, names=("co_v", "co_l"))
    tile = [*pix_i, *inner]
    if order == "row":
        conv.reorder("n", oh_o, co_o, ci_o, ow_o, "kh", "kw", ci_i, *tile)
        outer = conv.fuse("n", oh_o)
    elif order == "co":
        conv.reorder("n", co_o, ci_o, *pix_o, "kh", "kw", ci_i, *tile)
        outer = conv.fuse("n", co_o)
    else:
        conv.reorder("n", ci_o, co_o, *pix_o, "kh", "kw", ci_i, *tile)
        outer = co_o
    conv.parallel(outer)
    vectorize_lanes(conv, tile)
    if unroll_kw:
        conv.unroll("kw")
    if pack in ("xw", "x"):
        conv.cache_read("pad").compute_at(conv, ci_o)            # (tile rows x ci_tile), contiguous
    if pack == "xw":
        conv.cache_read("w").compute_at(conv, co_o if order == "ci" else ci_o)
    if pad_at == "row":
        s["pad"].compute_at(conv, outer)
    elif pad_at == "inline":
        s["pad"].compute_inline()
    else:                                                         # one parallel pass before the conv
        pad = s["pad"]
        pad.parallel(pad.fuse("n", "h"))
    # fused epilogue (bias, residual, ReLU): folded into its first stage, which runs per finished conv block
    # ("row", "co"), or in one parallel pass after the conv ("ci": the reduction ends at the outermost loop)
    if order == "ci":
        first = place_epilogue(s, None, None)
        if first is not None:
            axes = first.axes
            first.parallel(first.fuse(axes[0], axes[1]))
            vectorize_innermost(first, lanes)
    else:
        place_epilogue(s, conv, co_o if order == "row" else outer, lanes)
    conv.decompose_reduction(ci_o)
