"""Segmented majority pooling of bits: per segment, count ones per channel with the channel axis
vectorized (int32 lanes: extract bit c % 64 of word c // 64), then threshold + pack the counts.

Loop nest of "count": parallel (n, sx), sy, i, j (the segment's pixels), c_o, c_l (vector).
"""
LAYER = "segmented_bit_pool"


def _c_tiles(layer, target):
    lanes = target.lanes("int32")
    return sorted({lanes, 2 * lanes, 4 * lanes})


KNOBS = {"c_tile": _c_tiles}


def schedule(s, layer, c_tile):
    count = s["count"]
    c_o, c_i = count.split("c", c_tile, tail="cut")
    count.reorder("n", "sx", "sy", c_o, "i", "j", c_i)
    band = count.fuse("n", "sx", name="band")
    count.parallel(band)
    count.vectorize(c_i)
    count.decompose_reduction("i")
