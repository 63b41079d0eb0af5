"""Binary FC scores: classes in the inner loop (unrolled), words streamed, batch rows in parallel.

A classifier head is tiny (10 classes x 2x2x64 bits = 2.5 k bit-MACs): this template is about not being
slow: one pass over x per class tile, popcount of xor'd words accumulated in int32.
"""
from convsched.schedule import divisors

LAYER = "bit_dense"
KNOBS = {"k_tile": lambda layer, target: divisors(layer.classes, 16)}


def defaults(layer, target):
    return {"k_tile": max(divisors(layer.classes, 16))}


def schedule(s, layer, k_tile):
    y = s["scores"]
    k_o, k_i = y.split("k", k_tile)
    y.reorder("n", k_o, "i", "j", "q", k_i)
    y.unroll(k_i)
    y.parallel("n")
    y.decompose_reduction("i")
