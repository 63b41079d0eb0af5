"""Fused binary conv + threshold + segmented pool: one kernel, the pooled bits are its only output.

"count" runs the register-blocked XOR-popcount nest of binary_conv2d/blocked ((ow_tile x co_tile) uint64
accumulators, co vectorized over uint64 lanes, rows in parallel); the threshold compare is inlined into
"segcount", which sums active patches per segment with the channel axis vectorized (int32 lanes); "pack"
turns the segment counts into packed words.

Measured (Zen 3, AVX2, 1 thread): 32x32x64->64 3x3 valid, 2x2 segments: 0.128 ms = 259 G bit-MAC/s
(80% of the host's 323 G xor+popcount+add ceiling) with the count buffer (30x30x64 uint64, 460 KB) at
root. Computing "count" per band of segment rows instead (compute_at under segcount, pad inlined) was
correct but slower: 0.181 ms.
"""
from convsched.schedule import fits_registers, split_lanes, tile_registers

LAYER = "binary_conv_pool"

KNOBS = {
    "co_vecs": [1, 2],
    "ow_tile": lambda layer, target: [t for t in (1, 2, 3, 4, 7, 8) if t <= layer.ow],
}


def constraint(layer, target, co_vecs, ow_tile):
    return fits_registers(target, tile_registers(target, ow_tile, co_vecs * target.lanes("uint64"), "uint64",
                                                 scratch=target.popcount_scratch_registers(64)))


def defaults(layer, target):
    co_vecs = max(1, min(2, -(-layer.cout // target.lanes("uint64"))))
    ows = [t for t in KNOBS["ow_tile"](layer, target) if constraint(layer, target, co_vecs, t) is True]
    return {"co_vecs": co_vecs, "ow_tile": max(ows or [1])}


def schedule(s, layer, co_vecs, ow_tile):
    lanes = s.target.lanes("uint64")
    count = s["count"]
    co_o, co_i = count.split("co", lanes * co_vecs, tail="cut")
    co_v, co_l = count.split(co_i, lanes, names=("co_v", "co_l"))
    ow_o, ow_i = count.split("ow", ow_tile)
    count.reorder("n", "oh", co_o, ow_o, "kh", "kw", "cw", ow_i, co_v, co_l)
    row = count.fuse("n", "oh", name="row")
    count.parallel(row)
    count.vectorize(co_l)
    count.unroll(co_v)
    count.unroll(ow_i)
    s["pad"].compute_at(count, row) if layer.pad != 0 else s["pad"].compute_inline()
    count.decompose_reduction("kh")
    seg = s["segcount"]
    c_in = split_lanes(seg, "co", s.target.lanes("int32"), names=("c_o", "c_i"))
    seg.reorder("n", "sx", "sy", *c_in[:-1], "i", "j", c_in[-1])
    seg.vectorize(c_in[-1])
    seg.decompose_reduction("i")
