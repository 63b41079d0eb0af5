"""Sign packing (float -> packed bits): pixel rows in parallel, the 64 bits of a word unrolled.

Each word is an OR of 64 compare-and-shift results, a scalar dependency chain; unrolling the bit loop lets
LLVM turn it into vector compares. Memory-bound (reads 256 bytes of floats per word written).
"""
LAYER = "bitpack"

KNOBS = {"unroll_bits": [True, False]}


def schedule(s, layer, unroll_bits):
    pack = s["pack"]
    row = pack.fuse("n", "h", name="row")
    pack.parallel(row)
    if unroll_bits:
        pack.unroll("b")
    pack.decompose_reduction("b")
