"""Direct NHWC conv: an (ow x co) register tile of accumulators, co vectorized, output rows in parallel.

Loop nest (outer to inner):
    parallel (n, oh)                      rows shared by the cores
      [pad rows for this output row]      pad_at="row": the padded input is built 3 rows at a time, in cache
      co_o                                one block of co_tile output channels
        ci_o                              ci_tile input channels, so the weight slice stays in L1
          ow_o
            kh, kw, ci_i                  the reduction
              ow_i (unrolled)             ow_tile pixels ...
                co_v (unrolled), co_l     ... x co_tile channels = ow_tile * co_tile/lanes vector accumulators
With weights in HWIO the co axis is contiguous: each reduction step loads co_tile/lanes weight vectors and
broadcasts ow_tile input scalars, then issues ow_tile * co_tile/lanes FMAs.

Measured (Zen 3 EPYC, AVX2, 1 thread, 3x3 stride 1): 56x56x64->64 with ow_tile=4, co_tile=16: 87 GFLOP/s;
co_tile=32 (16 accumulators, spills on AVX2's 16 registers): 34 GFLOP/s.
"""
from convsched.schedule import divisors

LAYER = "conv2d"


def applies(layer, target):
    return layer.layout == "NHWC" or "needs layout NHWC"


def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    opg = layer.cout_per_group
    return [t for t in divisors(layer.cout, 4 * lanes) if t % lanes == 0 or t == opg or t >= layer.cout
            or t in (1, 2, 4)][-6:]


def _ci_tiles(layer, target):
    cpg = layer.cin_per_group
    return sorted({cpg} | {d for d in divisors(cpg) if d >= 16})


KNOBS = {
    "co_tile": _co_tiles,                                 # output channels per register tile
    "ow_tile": lambda layer, target: divisors(layer.ow, 8),  # output pixels per register tile
    "ci_tile": _ci_tiles,                                  # input channels per pass over a weight slice
    "pad_at": ["row", "inline"],                           # build padded rows per output row, or inline
    "unroll_kw": [False, True],
}


def _regs(layer, target, co_tile, ow_tile):
    lanes = target.lanes("float32")
    return ow_tile * max(1, co_tile // lanes)


def constraint(layer, target, co_tile, ow_tile, ci_tile, pad_at, unroll_kw):
    # accumulators + weight vectors + one broadcast must fit the register file, or LLVM spills.
    vecs = max(1, co_tile // target.lanes("float32"))
    need = ow_tile * vecs + vecs + 1
    return need <= target.num_vector_registers or f"register tile needs {need} vector registers"


def defaults(layer, target):
    lanes = target.lanes("float32")
    regs = target.num_vector_registers
    cos = _co_tiles(layer, target)
    # Prefer two vectors of output channels (a 4x16 tile on AVX2 ran at 74% of peak), else one, else any.
    co = next((c for c in (2 * lanes, lanes) if c in cos), cos[-1])
    vecs = max(1, co // lanes)
    ows = [o for o in divisors(layer.ow, 8) if o * vecs + vecs + 1 <= regs]
    ow = max(ows)
    cis = _ci_tiles(layer, target)
    # keep the weight slice (kh*kw*ci_tile*co_tile floats) within ~24 KB of the 32 KB L1
    fit = [c for c in cis if layer.kh * layer.kw * c * co * 4 <= 24 * 1024]
    ci = max(fit) if fit else min(cis)
    return {"co_tile": co, "ow_tile": ow, "ci_tile": ci, "pad_at": "row", "unroll_kw": False}


def schedule(s, layer, co_tile, ow_tile, ci_tile, pad_at, unroll_kw):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    out = conv
    for name in ("act", "bias"):                # fused epilogue: computed per register tile, below
        if name in s:
            out = s[name]
    co_o, co_i = conv.split("co", co_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    ci_o, ci_i = conv.split("ci", ci_tile)
    inner = [co_i]
    if co_tile % lanes == 0 and co_tile > lanes:
        co_v, co_l = conv.split(co_i, lanes, names=("co_v", "co_l"))
        inner = [co_v, co_l]
    conv.reorder("n", "oh", co_o, ci_o, ow_o, "kh", "kw", ci_i, ow_i, *inner)
    row = conv.fuse("n", "oh")
    conv.parallel(row)
    conv.vectorize(inner[-1])
    if len(inner) == 2:
        conv.unroll(inner[0])
    conv.unroll(ow_i)
    if unroll_kw:
        conv.unroll("kw")
    if pad_at == "row":
        s["pad"].compute_at(conv, row)
    else:
        s["pad"].compute_inline()
    if "act" in s and "bias" in s:
        s["act"].reverse_compute_inline()
    if out is not conv:
        s[out.name if "bias" not in s else "bias"].reverse_compute_at(conv, co_o)
    conv.decompose_reduction(ci_o)
