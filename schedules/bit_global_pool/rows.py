"""Global bit pooling. majority: count ones per channel over the image, the channel axis vectorized
(int32 lanes), then threshold + pack; or: OR the packed words of every pixel, words innermost."""
LAYER = "bit_global_pool"

KNOBS = {"c_tile": lambda layer, target: [target.lanes("int32"), 2 * target.lanes("int32")]}


def schedule(s, layer, c_tile):
    if "count" in s:
        count = s["count"]
        c_o, c_i = count.split("c", c_tile, tail="cut")
        count.reorder("n", "sx", "sy", c_o, "i", "j", c_i)
        count.vectorize(c_i)
        count.decompose_reduction("i")
    else:
        pool = s["pool"]
        pool.reorder("n", "i0", "i1", "i", "j", "c")
        pool.decompose_reduction("i")
