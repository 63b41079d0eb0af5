"""Bit max pooling = OR of packed words over each window: rows in parallel, the window unrolled, the
padding test inlined into the loads (pad words are 0, which never wins an OR)."""
LAYER = "bit_max_pool2d"

KNOBS = {"unroll_window": [True, False], "pad_at": ["inline", "row"]}


def schedule(s, layer, unroll_window, pad_at):
    pool = s["pool"]
    pool.reorder("n", "oh", "ow", "kh", "kw", "c")
    row = pool.fuse("n", "oh", name="row")
    pool.parallel(row)
    if unroll_window:
        pool.unroll("kh")
        pool.unroll("kw")
    if pad_at == "inline":
        s["pad"].compute_inline()
    else:
        s["pad"].compute_at(pool, row)
    pool.decompose_reduction("kh")
