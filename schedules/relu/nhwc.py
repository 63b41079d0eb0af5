"""ReLU, NHWC: one stream over (w, c) per image row, rows in parallel, `unroll` vectors per iteration.

Memory-bound (one load, one max, one store per element): the flat (w, c) row is split into vectors of the
target's lanes (or a divisor of the row below them), `unroll` of them per loop iteration.
"""
from convsched.schedule import lanes_dividing

LAYER = "relu"


KNOBS = {"unroll": [1, 2, 4, 8]}


def constraint(layer, target, unroll):
    row = layer.w * layer.c
    return row % (lanes_dividing(row, target) * unroll) == 0 or f"{unroll} vectors do not divide a {row}-float row"


def defaults(layer, target):
    row = layer.w * layer.c
    return {"unroll": max(u for u in KNOBS["unroll"] if row % (lanes_dividing(row, target) * u) == 0)}


def schedule(s, layer, unroll):
    v = lanes_dividing(layer.w * layer.c, s.target)
    st = s[s.stages[-1]]
    flat = st.fuse("w", "c", name="wc")
    _, u, lanes = st.split(flat, factors=[None, unroll, v], names=("wc_o", "wc_u", "wc_v"))
    st.parallel(st.fuse("n", "h"))
    st.unroll(u)
    st.vectorize(lanes)
