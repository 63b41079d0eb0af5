"""Conv weight gradient, NHWC: a (ci x co) register tile of dw, co vectorized, the pixel reduction inside it.

dw[kh, kw, ci, co] sums x[pixel shifted by the tap, ci] * dy[pixel, co] over all n*oh*ow pixels: a GEMM whose
reduction is the pixels. Register tile: ci_tile x co_tile/lanes accumulators [x kw when kw_in_tile: the taps
of a row share their dy loads, which depthwise layers need: one input channel per group]. Each pixel step
loads co_tile/lanes dy vectors and broadcasts ci_tile (x kw) input values.

Loop nest, order "rows" (the default): parallel (group, co_o) > n > oh_o (a pass of rows_per_pass rows) > kh >
block (the ci tiles of the group) > [kw] > oh_i, ow (reduction) > tile. A task owns ci_group input channels x
co_tile output channels of dw and sweeps the image a pass at a time: every block of the group reads the same
dy rows and padded x rows (built per pass and tap row, pad_at "row"), so the pixel loop streams from L1; the
accumulators are loaded and stored once per pass. Order "blocks": parallel (co_o, ci_o) > oh_o > kh > [kw] > n,
oh_i, ow > tile: each task owns one tile of dw and streams a chunk of rows per tile from L2 -- the pixel loop
then waits on L2 (56x56x64: 12 cycles of FMAs a pixel by llvm-mca, ~17 measured). Order "passes": co_o > oh_o
> parallel ci_o > ...: the blocks of a pass share its dy chunk (one parallel region per pass).

Measured (Xeon "rocketlake", AVX-512, pinned, interleaved rounds, 2026-12-01; ms, "blocks" -> "rows", the
defaults of each): 56x56x64 3x3 1 thread 1.38 -> 1.13, 2 threads 0.72 -> 0.59; 28x28x128 1.30 -> 1.21,
0.75 -> 0.63; 7x7x512 1.97 -> 1.69, 1.21 -> 0.89; depthwise 56x56x128 0.33 -> 0.25, 0.20 -> 0.14.
"""
from convsched.schedule import divisors, fits_registers, fma_efficiency, lanes_dividing

LAYER = "conv2d_weight_grad"

X_LINE_FLOATS = 16     # float32 channels of x in a 64-byte cache line


def _co_tiles(layer, target):
    v = lanes_dividing(layer.forward.cout, target)
    return [t for t in divisors(layer.forward.cout, 4 * v) if t % v == 0]


KNOBS = {
    "co_tile": _co_tiles,                                                       # output channels (vectors)
    "ci_tile": lambda layer, target: divisors(layer.forward.cin_per_group, 16),  # input channels (broadcasts)
    "kw_in_tile": [False, True],
    "rows_per_pass": lambda layer, target: divisors(layer.forward.oh),
    "pad_at": ["root", "inline", "row"],
    "order": ["blocks", "passes", "rows"],
    # order "rows": input channels swept together per task (a multiple of ci_tile)
    "ci_group": lambda layer, target: divisors(layer.forward.cin_per_group),
}


def _regs(layer, target, co_tile, ci_tile, kw_in_tile):
    vecs = co_tile // lanes_dividing(layer.forward.cout, target)
    taps = layer.forward.kw if kw_in_tile else 1
    return taps * ci_tile * vecs + vecs + 1


def constraint(layer, target, co_tile, ci_tile, kw_in_tile, rows_per_pass, pad_at, order, ci_group):
    if ci_group % ci_tile:
        return "ci_group must be a multiple of ci_tile"
    if pad_at == "row" and order != "rows":
        return 'pad_at="row" (padded rows built per pass of a task) needs order="rows"'
    need = _regs(layer, target, co_tile, ci_tile, kw_in_tile)
    return fits_registers(target, need)


def defaults(layer, target):
    """A tile leaving a task for every core (depthwise 112x112x32 on 2 threads: co 16 0.13 ms, co 32 0.20),
    then the one whose FMAs can run at peak by fma_efficiency() (the target's FMA pipes, latency and load ports),
    then with the most accumulators the registers allow (at most regs - 4), then the fewest loads per FMA
    (7x7x512: ci 2 x co 64 1.56 ms, ci 4 x co 32 1.81 ms); kw_in_tile when the taps of a row add accumulators
    that the channels cannot (depthwise, or
    56x56x64 on AVX-512: kw 3 x ci 2 x co 64 = 24 accumulators, 10 loads per 24 FMAs: 1.21 ms vs 1.66 ms
    for ci 4 x co 64, 1 thread, Xeon rocketlake, 2026-12-01)."""
    f = layer.forward
    v = lanes_dividing(f.cout, target)
    regs = target.num_vector_registers

    def tasks(ci_group, co):                # parallel tasks of order "rows": (ci groups) x (co tiles)
        return f.cin_per_group // ci_group * (f.cout // co)

    best = None
    for kw_in in (False, True):
        taps = f.kw if kw_in else 1
        for co in _co_tiles(layer, target):
            for ci in divisors(f.cin_per_group, 16):
                if fits_registers(target, _regs(layer, target, co, ci, kw_in)) is not True:
                    continue
                vecs = co // v
                acc = taps * ci * vecs
                loads = vecs + taps * ci
                score = (min(tasks(ci, co), target.cores), round(fma_efficiency(target, acc, loads), 3), min(acc, regs - 4),
                         -round(loads / acc, 3), not kw_in)
                if best is None or score > best[0]:
                    best = (score, co, ci, kw_in)
    _, co, ci, kw_in = best
    # order "rows": each task owns ci_group input channels x co_tile output channels of dw and sweeps the image
    # a few rows at a time; every block of its group reads the same dy rows and padded x rows from L1 (built
    # per pass: pad_at "row"). ci_group: the channels of one 64-byte line of x, fewer if the cores would
    # otherwise go without a task.
    groups = [g for g in divisors(f.cin_per_group, X_LINE_FLOATS) if g % ci == 0]
    group = max([g for g in groups if tasks(g, co) >= target.cores] or [ci])
    # rows per pass: at least two (one short row spends too much of the pass loading and storing the
    # accumulators: 7x7x512 one row 2.82 ms, all 7 1.69 ms, 1 thread), the fewest beyond that (more evict
    # the dy block: 56x56x64 2 rows 1.13-1.18 ms, 4 rows 1.29), the dy block within L1
    fit = [r for r in divisors(f.oh) if r * f.ow * co * 4 <= target.l1d_bytes]
    rows = min([r for r in fit if r >= 2] or [max(fit or [1])])
    # padded rows per pass unless every co tile of a group would build the same ones again: 7x7x512, 1 thread,
    # AVX-512 (8 co tiles) row 1.91 ms, root 1.96; x86-64-v3 (32 co tiles) row 3.38, root 3.17
    rebuilt = max(1, f.cout_per_group // co)
    pad_at = "inline" if not any(f.pads) else "row" if rebuilt <= 8 else "root"
    return {"co_tile": co, "ci_tile": ci, "kw_in_tile": kw_in, "rows_per_pass": rows,
            "pad_at": pad_at, "order": "rows", "ci_group": group}


def schedule(s, layer, co_tile, ci_tile, kw_in_tile, rows_per_pass, pad_at, order, ci_group):
    v = lanes_dividing(layer.forward.cout, s.target)
    dw = s["dw"]
    co_o, co_i = dw.split("co", co_tile)
    ci_o, ci_i = dw.split("ci", ci_tile)
    oh_o, oh_i = dw.split("oh", rows_per_pass)
    inner = [co_i] if co_tile == v else list(dw.split(co_i, v, names=("co_v", "co_l")))
    tile = ["kw", ci_i, *inner] if kw_in_tile else [ci_i, *inner]
    pixels = ["n", oh_i, "ow", *tile] if kw_in_tile else ["kw", "n", oh_i, "ow", *tile]
    if order == "rows":
        group, block = dw.split(ci_o, ci_group // ci_tile, names=("group", "block"))
        dw.reorder(group, co_o, "n", oh_o, "kh", block, *[a for a in pixels if a != "n"])
        task = dw.fuse(group, co_o, name="task")
        dw.parallel(task)
    elif order == "blocks":
        dw.reorder(co_o, ci_o, oh_o, "kh", *pixels)
        dw.parallel(dw.fuse(co_o, ci_o))
    else:
        dw.reorder(co_o, oh_o, ci_o, "kh", *pixels)
        dw.parallel(ci_o)
    dw.vectorize(inner[-1])
    for axis in tile[:-1]:
        dw.unroll(axis)
    pad = s["pad"]
    if pad_at == "inline":
        pad.compute_inline()
    elif pad_at == "row":
        pad.compute_at(dw, "kh")
    else:
        pad.parallel(pad.fuse("n", "h"))
    dw.decompose_reduction("n" if order == "rows" else oh_o)
