"""Direct conv in the blocked layout NCHWc (channel blocks of cb = the vector width), pre-packed weights.

x (n, cin/cb, h, w, cb), w (cout/cb, cin/cb, kh, kw, cb_in, cb_out), y (n, cout/cb, oh, ow, cb).
Each reduction step broadcasts one input scalar x[.., ci] and multiplies it into cob_tile weight vectors
(cb_out lanes each, contiguous in the packed weights) for ow_tile pixels: ow_tile * cob_tile accumulators.
Loop nest: parallel (n, co_b_o, oh) > ow_o > ci_b, kh, kw, ci > ow_i (unrolled) > co_b_i (unrolled) > co (vector)
The blocked layout makes every access unit-stride whatever the stride (the NCHW template's strided gathers
vanish), and keeps the NCHW family's planar blocks for layout-sensitive neighbours (seed 004).
"""
from convsched.schedule import divisors

LAYER = "conv2d"


def applies(layer, target):
    if layer.layout != "NCHWc":
        return "needs layout NCHWc"
    return True


KNOBS = {
    "cob_tile": lambda layer, target: divisors(layer.cout // layer.cblock, 4),
    "ow_tile": lambda layer, target: divisors(layer.ow, 14),
    "pad_at": ["inline", "root"],
}


def _need(layer, target, cob_tile, ow_tile):
    vecs = cob_tile * -(-layer.cblock // target.lanes("float32"))
    return ow_tile * vecs + vecs + 1


def constraint(layer, target, cob_tile, ow_tile, pad_at):
    need = _need(layer, target, cob_tile, ow_tile)
    return need <= target.num_vector_registers or f"register tile needs {need} vector registers"


def defaults(layer, target):
    best = None
    for cob in divisors(layer.cout // layer.cblock, 4):
        for ow in divisors(layer.ow, 14):
            need = _need(layer, target, cob, ow)
            if need <= target.num_vector_registers:
                # most accumulators, then the fewest loads per FMA (square-ish tiles)
                score = (ow * cob, -abs(ow - cob * 4))
                if best is None or score > best[0]:
                    best = (score, cob, ow)
    _, cob, ow = best
    return {"cob_tile": cob, "ow_tile": ow, "pad_at": "root"}


def schedule(s, layer, cob_tile, ow_tile, pad_at):
    lanes = s.target.lanes("float32")
    conv = s["conv"]
    cb_o, cb_i = conv.split("co_b", cob_tile, names=("co_b_o", "co_b_i"))
    ow_o, ow_i = conv.split("ow", ow_tile)
    conv.reorder("n", cb_o, "oh", ow_o, "ci_b", "kh", "kw", "ci", ow_i, cb_i, "co")
    outer = conv.fuse("n", cb_o, "oh", name="outer")
    conv.parallel(outer)
    if layer.cblock % lanes == 0:
        conv.vectorize("co")
    conv.unroll(cb_i)
    conv.unroll(ow_i)
    pad = s["pad"]
    if pad_at == "inline":
        pad.compute_inline()
    else:
        outer_p = pad.fuse("n", "cb", "h", name="pad_rows")
        pad.parallel(outer_p)
        if layer.cblock % lanes == 0:
            pad.vectorize("c")
    epi = [e for e in ("bias", "residual", "act") if e in s]
    for e in reversed(epi[1:]):
        s[e].reverse_compute_inline()
    if epi:
        s[epi[0]].reverse_compute_at(conv, outer)
        if layer.cblock % lanes == 0:
            s[epi[0]].vectorize(s[epi[0]].axes[-1])
    conv.decompose_reduction("ci_b")
