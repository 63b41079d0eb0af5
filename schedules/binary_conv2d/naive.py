"""Binary conv, scalar: one output channel at a time, scalar popcnt (any x86-64 with POPCNT, or none).

The portable path: no vector popcount is needed, so it runs correctly on every target ("generic" too,
where LLVM expands popcount into shifts and masks). Loop nest: parallel rows, then ow, co, and the
reduction kh, kw, cw innermost over contiguous input and (OHWI) weight words; "wt" is inlined so the
weights are read in their original layout.
"""
LAYER = "binary_conv2d"

KNOBS = {
    "unroll_cw": [False, True],          # unroll the input-word loop (short for small cin)
    "pad_at": ["row", "inline"],
}


def defaults(layer, target):
    return {"unroll_cw": layer.cin_words <= 8, "pad_at": "row" if layer.pad != 0 else "inline"}


def schedule(s, layer, unroll_cw, pad_at):
    count = s["count"]
    count.reorder("n", "oh", "ow", "co", "kh", "kw", "cw")
    row = count.fuse("n", "oh", name="row")
    count.parallel(row)
    if unroll_cw:
        count.unroll("cw")
    s["wt"].compute_inline()
    if pad_at == "row":
        s["pad"].compute_at(count, row)
    else:
        s["pad"].compute_inline()
    if "out" in s:
        s["out"].reverse_compute_at(count, "ow")
    else:
        s["pack"].reverse_compute_at(count, row)
    count.decompose_reduction("kh")
