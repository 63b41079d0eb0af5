"""Threshold + pack (int32 counts -> packed bits): pixel rows in parallel, the 64 bits of a word unrolled.

Memory-bound: 256 bytes of counts read per 8-byte word written.
"""
LAYER = "popcount_threshold"

KNOBS = {"unroll_bits": [True, False]}


def schedule(s, layer, unroll_bits):
    pack = s["pack"]
    row = pack.fuse("n", "h", name="row")
    pack.parallel(row)
    if unroll_bits:
        pack.unroll("b")
    pack.decompose_reduction("b")
