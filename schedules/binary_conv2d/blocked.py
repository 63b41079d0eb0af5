"""Binary conv, register-blocked: (ow_tile pixels x co_tile output channels) uint64 accumulators, the output
channel axis vectorized over uint64 lanes (weights re-laid as (kh, kw, cw, co) so it is contiguous), output
rows in parallel.

Loop nest of "count" (outer to inner):
    parallel row = (n, oh)
      co_o                                    co_tile output channels (weights of the block stay in L1)
        ow_o
          kh, kw, cw                          the reduction, one input word at a time
            ow_i (unrolled)                   ow_tile pixels: one broadcast input word each ...
              co_v (unrolled), co_l (vector)  ... x co_tile/lanes weight vectors = xor, popcount, add
      the int32 epilogue "out" runs per register tile; the threshold epilogue "pack" per row (a packed
      word needs 64 output channels).
    parallel="co_x_rows" puts co_o outside the rows instead and re-lays the weights ("wt") per co block in a
    parallel loop of the same partition: each core writes and reads only its own blocks' weights (the
    default on several cores once the weights outgrow L1).

Strategy by target (the machine model decides the width of the inner loop and the register budget):
  * AVX-512 VPOPCNTDQ (target.popcount == "vpopcntq"): 8 uint64 lanes, popcount is one vpopcntq, 32 registers:
    wide tiles (ow_tile up to 8, two weight vectors).
  * AVX2 (x86-64-v3, Zen 3): 4 lanes; LLVM emulates a vector popcount with vpshufb nibble lookups +
    vpsadbw (about 9 instructions per 256 bits and target.popcount_scratch_registers() = 5 registers), so the
    tile leaves room for them in the 16 ymm registers.
  * SSE / generic: 2 lanes (or scalar popcnt when co_vecs=0 ... the "naive" template is the scalar path).
The int32 epilogue "out" is vectorized over the tile's channels. Left to LLVM it was scalar code that LLVM's
SLP vectorizer turned into vpgatherqq/vpscatterqd on AVX-512 (fine on AVX2): 56x56x64 ran at 0.17 ms, 53% of
the host's bit ceiling, and 0.10 ms (88-91%) vectorized (1 thread pinned, Xeon "rocketlake" = Sapphire
Rapids class under KVM, 2026-12-02; with 9 reduction steps per tile the 64-channel layers feel the epilogue
most; another Zen 5 host measured those layers at 28% before).
Measured (Zen 3 EPYC 2.45 GHz, AVX2, no VPOPCNTDQ; benchmarks/binary_conv.py, 1 thread, best of runs on
a shared machine): 56x56x64, 28x28x128, 14x14x256 (3x3, pad 1): 296-311 G bit-MAC/s = 92-96% of this
host's xor+popcount+add ceiling (323 G, bit-GEMM microbenchmark) and 5-8x PyTorch fp32; 7x7x512 291 G.
The scalar "naive" template reaches 185-190 G on the same layers (Zen 3 has 4 scalar popcnt ports).
"""
from convsched.schedule import fits_registers, tile_on_stack, tile_registers, vectorize_innermost

LAYER = "binary_conv2d"


KNOBS = {
    "co_vecs": [1, 2, 3, 4],                                     # vectors of output channels per tile
    "ow_tile": lambda layer, target: [t for t in range(1, 9) if t <= layer.ow],  # pixels per tile
    "pad_at": ["root", "row", "inline"],                         # where padded input words are built
    # what the cores share: output rows; (row, co block) pairs (small images); or co blocks, each core
    # re-laying only the weights of its own blocks (deep layers: see defaults)
    "parallel": ["rows", "rows_x_co", "co_x_rows"],
}


def constraint(layer, target, co_vecs, ow_tile, pad_at, parallel):
    if parallel != "rows" and layer.threshold:
        return "the threshold epilogue packs 64 output channels per word: parallel over rows only"
    lanes = target.lanes("uint64")
    if layer.threshold and 64 % (co_vecs * lanes):
        # a co tile straddling a 64-channel word made TVM 0.27 compute wrong packed words (found by
        # tests/test_templates.py with co_vecs=3): the tile must divide the word
        return "with the threshold epilogue the co tile must divide 64"
    if co_vecs > 1 and co_vecs * lanes > max(layer.cout, lanes):
        return "co tile wider than cout"
    return fits_registers(target, tile_registers(target, ow_tile, co_vecs * lanes, "uint64",
                                                 scratch=target.popcount_scratch_registers(64)))


def defaults(layer, target):
    """The register tile with the most accumulators doing useful work (a partial last ow tile wastes some),
    then the one without a remainder, then wider in co; its accumulators must stay on the stack (below 1 KB:
    tile_on_stack). Zen 3 (1 thread, best of runs): 28x28x128 with (co_vecs=2, ow_tile=4) 311 G bit-MAC/s vs
    (1, 7) 301 and (3, 2) 291; 7x7x512 with (1, 7) 291 vs (2, 4) 283 and (1, 4) 232. Xeon "rocketlake"
    (Sapphire Rapids class, AVX-512, 1 thread pinned, 5 interleaved rounds, 2026-12-01; % of the bit ceiling):
    56x56x64 (2, 8) = 1024 B on the heap 83%, (2, 7) 90%, (3, 4) 90%, (1, 8) 93%; 28x28x128 (2, 7) 89%,
    (2, 6) 94%; 14x14x256 (2, 7) 90%; 7x7x512 (2, 7) 86%, the other tiles 83-85%."""
    space = KNOBS["ow_tile"](layer, target)
    lanes = target.lanes("uint64")

    def score(tile):
        co_vecs, ow = tile
        used = layer.ow / (-(-layer.ow // ow) * ow)
        return (ow * co_vecs * used, used, co_vecs)

    tiles = [(c, t) for c in (1, 2) for t in space
             if (c == 1 or c * lanes <= max(layer.cout, lanes)) and tile_on_stack(t * c * lanes, 8)
             and constraint(layer, target, c, t, "row", "rows") is True] or [(1, 1)]
    co_vecs, ow = max(tiles, key=score)
    # The weights are re-laid on every call (co innermost). Past L1 that copy decides the scaling: shared
    # by rows, each core reads the weights the other one wrote (7x7x512, 294 KB: 2 threads no faster than
    # 1); split by co blocks, each core re-lays and reads only its own (7x7x512 on 2 threads 0.11 -> 0.053
    # ms, 14x14x256 0.063 -> 0.050; Xeon "rocketlake", 2026-12-01). On one core, and for small weights,
    # rows keep the padded input rows built once (co_x_rows costs 1-10% there; 56x56x64 30% on 2 threads).
    weight_bytes = layer.kh * layer.kw * layer.cin_words * layer.cout * 8
    if layer.threshold:
        par = "rows"
    elif target.cores > 1 and weight_bytes > target.l1d_bytes:
        par = "co_x_rows"
    elif layer.n * layer.oh < 2 * target.cores:     # fewer rows than cores: (row, co block) pairs
        par = "rows_x_co"
    else:
        par = "rows"
    # padded rows built per (co block, row) task cost more than reading the input with the pad test inline
    pad_at = "row" if layer.pad != 0 and par != "co_x_rows" else "inline"
    return {"co_vecs": co_vecs, "ow_tile": ow, "pad_at": pad_at, "parallel": par}


def schedule(s, layer, co_vecs, ow_tile, pad_at, parallel):
    lanes = s.target.lanes("uint64")
    count = s["count"]
    co_o, co_i = count.split("co", lanes * co_vecs, tail="cut")
    co_v, co_l = count.split(co_i, lanes, names=("co_v", "co_l"))
    ow_o, ow_i = count.split("ow", ow_tile)
    if parallel == "co_x_rows":
        count.reorder(co_o, "n", "oh", ow_o, "kh", "kw", "cw", ow_i, co_v, co_l)
        par = count.fuse(co_o, count.fuse("n", "oh", name="row"), name="co_row")
    else:
        count.reorder("n", "oh", co_o, ow_o, "kh", "kw", "cw", ow_i, co_v, co_l)
        par = count.fuse("n", "oh", name="row")
        if parallel == "rows_x_co":
            par = count.fuse(par, co_o, name="row_co")
    count.parallel(par)
    count.vectorize(co_l)
    count.unroll(co_v)
    count.unroll(ow_i)
    if pad_at == "row":
        s["pad"].compute_at(count, par)
    elif pad_at == "inline":
        s["pad"].compute_inline()
    if "out" in s:
        out = s["out"]
        out.reverse_compute_at(count, ow_o)
        vectorize_innermost(out, s.target.lanes("int32"))
    else:
        s["pack"].reverse_compute_at(count, par)
    count.decompose_reduction("kh")
    if parallel == "co_x_rows":       # each core re-lays the weights of the co blocks it computes
        wt = s["wt"]
        w_o, w_i = wt.split("co", lanes * co_vecs, tail="cut")
        wt.reorder(w_o, "kh", "kw", "cw", w_i)
        wt.parallel(w_o)
