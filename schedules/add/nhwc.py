"""Elementwise add (+ ReLU): one flat loop, vectorized, split across cores.

Memory-bound: 3 floats moved per add. Inside a network the graph planner inlines Add into the conv that
produces one operand (fused/epilogue), so this template only runs for an Add that stands alone.
"""
LAYER = "add"


def _vec_tiles(layer, target):
    lanes = target.lanes("float32")
    tiles = [t for t in (lanes, 2 * lanes, 4 * lanes) if layer.c % t == 0]
    if not tiles and layer.c > lanes:      # whole vectors, the last one cut short (tail="cut")
        tiles = [lanes]
    return tiles or [layer.c]


KNOBS = {"c_tile": _vec_tiles}


def schedule(s, layer, c_tile):
    out = s["act"] if "act" in s else s["add"]
    if "act" in s:
        s["add"].compute_inline()
    c_o, c_i = out.split("c", c_tile, tail="cut")
    rows = out.fuse("n", "h")
    out.parallel(rows)
    out.vectorize(c_i)
