"""Fully-connected layer: output channels vectorized (w is (k, cout), cout contiguous), k streamed.

Each k step broadcasts one input and does co_tile/lanes FMAs; batch rows unrolled into the register tile.
A classifier head is tiny (512 -> 10 is 5 kMAC), so this is about not being slow, not about peak.
"""
from convsched.schedule import divisors

LAYER = "dense"

KNOBS = {"co_tile": lambda layer, target: divisors(layer.cout, 4 * target.lanes("float32"))}


def defaults(layer, target):
    tiles = KNOBS["co_tile"](layer, target)
    lanes = target.lanes("float32")
    return {"co_tile": max(t for t in tiles if t <= 2 * lanes) if any(t <= 2 * lanes for t in tiles) else tiles[0]}


def schedule(s, layer, co_tile):
    d = s["dense"]
    co_o, co_i = d.split("co", co_tile)
    d.reorder("n", co_o, "k", co_i)
    d.vectorize(co_i)
    if "act" in s and "bias" in s:
        s["act"].reverse_compute_inline()
    if "bias" in s:
        s["bias"].reverse_compute_at(d, co_o)
    d.decompose_reduction("k")
