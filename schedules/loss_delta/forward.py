"""Forward part of the loss-delta layer: the XOR-popcount 3x3 conv on packed words ("popc", accumulated in the
word type, then the int32 epilogue "mismatch"; ternary: "cost" = 2 * popc + zeros) and its classification
("rowbits": the active / sensitive flags of a row's patches packed into words; "stats": per-segment counts).
The word (uint8 / uint16 / uint32 / uint64) follows the target: LossDelta.forward_word_bits.

Loop nest of "popc" (o_outer=True): parallel (n, o_o); i; s_y; jj_o; reduction di, dj, cw; jj_i (unrolled)
x o_i (vectorized) register tile; "mismatch" per tile while it is in registers; "rowbits" per conv row (the
row's counts, o_vec channels wide, are in L1 then: the counts never go to memory), its words accumulated in
a stack buffer (registers); "stats" at the end (popcounts of the row words). Weights are laid out (3, 3, cw, o)
so o is contiguous; each o block of weights stays in L1 over the whole image.

Register tiles stay below TVM's 1 KB stack limit (tile_on_stack): a larger tile went to a heap workspace and
was loaded and stored around every reduction (binary_conv2d/blocked measured that: 83% vs 90%). The init of
a tile sits under its tile loop (decompose at "di"): decomposed at the tile loop it zeroed a whole row buffer.
Measured (Xeon "rocketlake" = Sapphire Rapids class, AVX-512 VPOPCNTDQ, 1 thread pinned, best of interleaved
rounds, 2026-12-01; % of the bit-GEMM ceiling, conv + classification together): global 128->128 (uint64)
o_vec=16 j_tile=6 90%, (16, 7) 85-87%, (8, 15) 83-85% (8 int32 lanes: the classification runs on half
vectors); 32->32 (uint32) (16, 15) 79%, (32, 6) 75%; segmented 4x4 32->32 (32, 7) 75-77% (of the full conv's
work: 28 of the 30 rows and columns are computed).
"""
from convsched.schedule import divisors, split_lanes, tile_on_stack, vectorize_lanes, vectors

LAYER = "loss_delta"
ALGORITHM = "forward"


KNOBS = {
    "o_vec": lambda layer, target: [v for v in (1, 2, 4, 8, 16, 32, 64) if layer.cout % v == 0],
    "j_tile": lambda layer, target: divisors(layer.seg_shape[1], max(8, accumulators(layer, target))),
    # o blocks outermost: each block of weights (o_vec x 9C bits) is reused over the whole image from L1,
    # instead of streaming all weights (1.2 MB at 1024 -> 1024, more than L2) once per image row
    "o_outer": [True, False],
}


# accumulator vectors in the register tile by word type: the emulated popcount needs more scratch registers
# on wider lanes (uint16 / uint32 sum bytes in extra steps). Measured (1 thread, Zen 3, core pinned, 32x32
# images, forward alone): 8->32 (uint8) o_vec=32 j_tile=6: 7.7 us/example (269 G bit-MAC/s), j_tile=2 11.7;
# 16->32 (uint16) o_vec=32 j_tile=2: 18.2 us (228 G), j_tile=3 27; 32->32 (uint32) o_vec=16 j_tile=2 42 us
# (199 G), o_vec=32 j_tile=2 66; 1024->1024 (uint64) o_vec=16 j_tile=2: 29 ms (290 G), o_vec=8 j_tile=5 268 G.
_AVX2_ACCUMULATORS = {8: 6, 16: 4, 32: 4, 64: 8}


def accumulators(layer, target) -> int:
    """The register tile's accumulator budget: the budgets measured on AVX2 (16 ymm, emulated popcount),
    moved by the registers this target has beyond those 16 and the popcount scratch registers it saves."""
    wb = layer.forward_word_bits(target)
    avx2_free = 16 - 5 - (wb in (16, 32))           # the emulated popcount's scratch on AVX2 (as the target model)
    free = target.num_vector_registers - target.popcount_scratch_registers(wb)
    return max(1, _AVX2_ACCUMULATORS[wb] + free - avx2_free)


def _tile_accumulators(layer, target, o_vec, j_tile) -> int:
    return vectors(o_vec, target.lanes(f"uint{layer.forward_word_bits(target)}")) * j_tile


def constraint(layer, target, o_vec, j_tile, o_outer):
    if _tile_accumulators(layer, target, o_vec, j_tile) > accumulators(layer, target):
        return f"{o_vec} x {j_tile} accumulators pass the register budget"
    return True


def defaults(layer, target):
    """The tile with the most accumulators within the register budget whose buffer stays on the stack, at
    least one int32 vector of channels wide where the layer has them (the classification then runs on whole
    vectors), then the narrower one (its weights take less of L1)."""
    wb = layer.forward_word_bits(target)
    budget = accumulators(layer, target)
    full = min(layer.cout, target.lanes("int32"))
    tiles = [(o, j) for o in KNOBS["o_vec"](layer, target) for j in KNOBS["j_tile"](layer, target)
             if _tile_accumulators(layer, target, o, j) <= budget and tile_on_stack(o * j, wb // 8)] or [(1, 1)]
    o_vec, j_tile = max(tiles, key=lambda t: (t[0] >= full, _tile_accumulators(layer, target, *t), -t[0]))
    return {"o_vec": o_vec, "j_tile": j_tile, "o_outer": True}


def schedule(s, layer, o_vec, j_tile, o_outer):
    m = s["popc"]
    o_o, o_i = m.split("o", o_vec)
    j_o, j_i = m.split("jj", j_tile)
    if o_outer:
        m.reorder("n", o_o, "i", "s_y", j_o, "di", "dj", "cw", j_i, o_i)
        row = m.fuse("n", o_o)
    else:
        m.reorder("n", "i", "s_y", j_o, o_o, "di", "dj", "cw", j_i, o_i)
        row = m.fuse("n", "i")
    m.parallel(row)
    m.unroll("s_y")
    m.unroll(j_i)
    if o_vec > 1:
        m.vectorize(o_i)
    # the int32 epilogue (cast, ternary: 2 * count + zeros) per register tile, while it is in registers
    epi = s["cost"] if "cost" in s else s["mismatch"]
    epi.reverse_compute_at(m, j_o)
    # unrolled: a loop over the tile's columns indexes the accumulators with a variable, and LLVM then keeps
    # them in memory (a memset per tile and spills: segmented 2x2 32->32 64% vs 78% of the ceiling unrolled)
    epi.unroll(epi.axes[-2])
    if o_vec > 1:
        epi.vectorize(epi.axes[-1])
    # the row masks of a segment column right after its tiles: the column's counts (ws x o_vec) and words stay
    # on the stack, below TVM's 1 KB limit (per conv row, 4x4 segments with o_vec=32 made a 1 KB word buffer:
    # a heap workspace, 65% of the ceiling)
    if "rowbits" in s:              # (the conv alone, algorithm "conv<bits>", has no classification)
        _classify(s, layer, m, "s_y")
    m.decompose_reduction("di")


def _classify(s, layer, m, at):
    """rowbits per segment column of a conv row (under loop `at`), accumulated in a stack buffer, channels
    vectorized; stats at the root, channels vectorized, examples in parallel."""
    lanes = s.target.lanes("int32")
    rb = s["rowbits"]
    mb, words = layer.mask_layout
    if words > 1 and layer.seg_shape[1] % mb:
        # a row's last word is partial: its clamped column index keeps the stage from moving under the conv
        # (see LossDelta._declare_classify); it runs at the root on counts kept in memory
        n, f, i, sy, rw, o, jb = rb.axes
        rb.reorder(n, i, sy, rw, jb, f, o)
        rb.parallel(n)
    else:
        rbo = rb.cache_write("global")
        rb.reverse_compute_at(m, at)
        rbo.reverse_compute_at(m, at)
        *_, f, i, sy, rw, o, jb = rb.axes            # (i and sy are unit loops here)
        rb.reorder(sy, rw, jb, f, o)
        vectorize_lanes(rbo, split_lanes(rbo, rbo.axes[-1], lanes, names=("rbo_v", "rbo_l")))
    # every loop around the register words unrolled: TVM may give the tile's accumulators and these words one
    # stack buffer, which LLVM keeps in registers only while every index into it is a constant
    for ax in (sy, rw, f, jb):
        rb.unroll(ax)
    vectorize_lanes(rb, split_lanes(rb, o, lanes, names=("rb_v", "rb_l")))
    rb.decompose_reduction(jb)
    st = s["stats"]
    st.reorder("n", "s", "f", "ii", "rw", "o")
    st.parallel("n")
    vectorize_lanes(st, split_lanes(st, "o", lanes, names=("st_v", "st_l")))
    st.decompose_reduction("ii")
