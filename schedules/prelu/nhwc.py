"""PReLU, NHWC: rows in parallel, channels vectorized (the slopes of a channel block stay in registers).

Loop nest: parallel (n, h) > c_o > w > c_i (vector). With c_o outside w, each block of c_tile slopes is loaded
once per row and reused for every pixel; memory-bound otherwise (one load, compare, multiply, blend, store).
"""
from convsched.schedule import divisors, lanes_dividing

LAYER = "prelu"


KNOBS = {"c_tile": lambda layer, target: [t for t in divisors(layer.c, 4 * lanes_dividing(layer.c, target))
                                          if t % lanes_dividing(layer.c, target) == 0]}


def defaults(layer, target):
    return {"c_tile": max(KNOBS["c_tile"](layer, target))}


def schedule(s, layer, c_tile):
    v = lanes_dividing(layer.c, s.target)
    st = s["prelu"]
    c_o, c_i = st.split("c", c_tile)
    c_v, c_l = st.split(c_i, v, names=("c_v", "c_l"))
    st.reorder("n", "h", c_o, "w", c_v, c_l)
    st.parallel(st.fuse("n", "h"))
    st.unroll(c_v)
    st.vectorize(c_l)
