"""Forward stage of the loss-delta layer: XOR-popcount 3x3 conv on packed uint64 words ("mismatch"; ternary:
"cost" = 2 * mismatch + zeros, inlined).

Loop nest of "mismatch": parallel (n, i) rows; j_o; o_o; reduction di, dj, cw; j_i (unrolled) x o_i
(vectorized, uint64 lanes) register tile. Weights are laid out (3, 3, cw, o) so o is contiguous. Words are uint32 when C <= 32, else uint64.
Measured (Zen 3, AVX2 popcount emulation, 1 thread, 2 cores shared with ~6 other jobs), 32x32 images,
256 -> 256: o_vec=8 j_tile=2..5: 2.2 ms (~240 G bit-MAC/s); o_vec=4: 2.6-3.3 ms; o_vec=1 (scalar popcnt):
3.2 ms at best, 16 ms with j_tile 2-3.
1024 -> 1024 (o_outer=True unless said): o_vec=16 j_tile=2: 41 ms (206 G bit-MAC/s); o_vec=8 j_tile=2: 44 ms;
o_vec=8 j_tile=5: 56 ms (o_outer=False: 59 ms); o_vec=4 j_tile=5: 63 ms.
"""
from convsched.schedule import divisors

LAYER = "loss_delta"
ALGORITHM = "forward"

KNOBS = {
    "o_vec": lambda layer, target: [v for v in (1, 2, 4, 8, 16) if layer.cout % v == 0],
    "j_tile": lambda layer, target: divisors(layer.pw, 8),
    # o blocks outermost: each block of weights (o_vec x 9C bits) is reused over the whole image from L1,
    # instead of streaming all weights (1.2 MB at 1024 -> 1024, more than L2) once per image row
    "o_outer": [True, False],
}


def defaults(layer, target):
    # up to 4 vectors of o per pixel and up to 8 accumulator vectors in the register tile (16 ymm on AVX2,
    # the popcount emulation needs a few more for its table and masks)
    lanes = target.lanes(layer.word_dtype)          # 4 uint64 or 8 uint32 lanes on AVX2
    o_vec = max(v for v in (1, 2, 4, 8, 16) if layer.cout % v == 0 and v <= 4 * lanes)
    vecs = max(1, o_vec // lanes)
    return {"o_vec": o_vec, "j_tile": max(d for d in divisors(layer.pw) if d * vecs <= 8), "o_outer": True}


def schedule(s, layer, o_vec, j_tile, o_outer):
    m = s["mismatch"]
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
    if "cost" in s:
        s["cost"].reverse_compute_at(m, row)
    m.decompose_reduction(j_o)
