"""Fully-connected layer: output channels vectorized (w is (k, cout), cout contiguous), k streamed.

Each k step broadcasts one input and does co_tile/lanes FMAs; batch rows unrolled into the register tile.
A classifier head is tiny (512 -> 10 is 5 kMAC), so this is about not being slow, not about peak.
"""
from convsched.schedule import divisors

LAYER = "dense"

def _co_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = divisors(layer.cout, 4 * lanes)
    if layer.cout % lanes:                 # also whole vectors, the last one cut short (tail="cut")
        tiles = sorted(set(tiles) | {k * lanes for k in (1, 2) if k * lanes < layer.cout})
    return tiles


KNOBS = {"co_tile": _co_tiles}


def defaults(layer, target):
    tiles = _co_tiles(layer, target)
    lanes = target.lanes("float32")
    return {"co_tile": max(t for t in tiles if t <= 2 * lanes) if any(t <= 2 * lanes for t in tiles) else tiles[0]}


def schedule(s, layer, co_tile):
    d = s["dense"]
    co_o, co_i = d.split("co", co_tile, tail="cut")
    d.reorder("n", co_o, "k", co_i)
    d.vectorize(co_i)
    if "act" in s and "bias" in s:
        s["act"].reverse_compute_inline()
    if "bias" in s:
        s["bias"].reverse_compute_at(d, co_o)
    d.decompose_reduction("k")
