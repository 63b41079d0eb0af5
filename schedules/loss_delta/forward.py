"""Forward stage of the loss-delta layer: XOR-popcount 3x3 conv on packed words ("popc", accumulated in
the word type like the binary conv's blocked template, then the int32 epilogue "mismatch"; ternary: "cost" =
2 * popc + zeros). Words are uint8 (C <= 8), uint16 (C <= 32) or uint64 (LossDelta.word_bits).

Loop nest of "popc": parallel (n, o_o) [or (n, i)]; i; j_o; reduction di, dj, cw; j_i (unrolled) x o_i
(vectorized) register tile; the epilogue per tile. Weights are laid out (3, 3, cw, o) so o is contiguous.
Measured (1 thread, Zen 3, AVX2 popcount emulation, core pinned), 32x32 images, forward alone: 1024 -> 1024
29-31 ms = 275-290 G bit-MAC/s (85-90% of the 322 G xor+popcount+add ceiling; was 40 ms / 214 G with an
int32 accumulator: a vpmovqd-style narrowing per term); 256 -> 256 2.0-2.1 ms = 255-267 G (was 2.7 ms).
"""
from convsched.schedule import divisors

LAYER = "loss_delta"
ALGORITHM = "forward"

KNOBS = {
    "o_vec": lambda layer, target: [v for v in (1, 2, 4, 8, 16, 32) if layer.cout % v == 0],
    "j_tile": lambda layer, target: divisors(layer.pw, max(8, accumulators(layer, target))),
    # o blocks outermost: each block of weights (o_vec x 9C bits) is reused over the whole image from L1,
    # instead of streaming all weights (1.2 MB at 1024 -> 1024, more than L2) once per image row
    "o_outer": [True, False],
}


# accumulator vectors in the register tile by word type: the emulated popcount needs more scratch registers
# on wider lanes (uint16 / uint32 sum bytes in extra steps). Measured (1 thread, Zen 3, core pinned, 32x32
# images, forward alone): 8->32 (uint8) o_vec=32 j_tile=6: 7.7 us/example (269 G bit-MAC/s), j_tile=2 11.7;
# 16->32 (uint16) o_vec=32 j_tile=2: 18.2 us (228 G), j_tile=3 27; 32->32 (uint32) o_vec=16 j_tile=2 42 us
# (199 G), o_vec=32 j_tile=2 66; 1024->1024 (uint64) o_vec=16 j_tile=2: 29 ms (290 G), o_vec=8 j_tile=5 268 G.
_AVX2_ACCUMULATORS = {8: 6, 16: 4, 32: 4, 64: 8}   # (the layer no longer picks uint32 words: 32->32 as 2
                                                    # uint16 words, o_vec=32 j_tile=2: 35 us, 236 G)


def accumulators(layer, target) -> int:
    """The register tile's accumulator budget: the budgets measured on AVX2 (16 ymm, emulated popcount),
    moved by the registers this target has beyond those 16 and the popcount scratch registers it saves (32
    zmm with vpopcntq on uint64 words: 8 + 16 + 4 = 28)."""
    wb = layer.word_bits
    avx2_free = 16 - 5 - (wb in (16, 32))           # the emulated popcount's scratch on AVX2 (as the target model)
    free = target.num_vector_registers - target.popcount_scratch_registers(wb)
    return max(1, _AVX2_ACCUMULATORS[wb] + free - avx2_free)


def defaults(layer, target):
    lanes = target.lanes(layer.word_dtype)          # 32 uint8 ... 4 uint64 lanes on AVX2
    widest = (4 if layer.word_bits == 64 else 2) * lanes
    o_vec = max(v for v in KNOBS["o_vec"](layer, target) if v <= widest)
    vecs = max(1, o_vec // lanes)
    budget = accumulators(layer, target)
    return {"o_vec": o_vec, "j_tile": max([d for d in KNOBS["j_tile"](layer, target) if d * vecs <= budget] or [1]),
            "o_outer": True}


def schedule(s, layer, o_vec, j_tile, o_outer):
    m = s["popc"]
    o_o, o_i = m.split("o", o_vec)
    j_o, j_i = m.split("j", j_tile)
    if o_outer:
        m.reorder("n", o_o, "i", j_o, "di", "dj", "cw", j_i, o_i)
        row = m.fuse("n", o_o)
    else:
        m.reorder("n", "i", j_o, o_o, "di", "dj", "cw", j_i, o_i)
        row = m.fuse("n", "i")
    m.parallel(row)
    m.unroll(j_i)
    if o_vec > 1:
        m.vectorize(o_i)
    # the int32 epilogue (cast, ternary: 2 * count + zeros) per register tile, while it is in registers
    epi = s["cost"] if "cost" in s else s["mismatch"]
    epi.reverse_compute_at(m, j_o)
    if o_vec > 1:
        epi.vectorize(epi.axes[-1])
    m.decompose_reduction(j_o)
