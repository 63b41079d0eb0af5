"""Stochastic pooling: everything per output row, channels vectorized, rows in parallel.

The window is tiny (k*k = 4 at k=2), so cum (the k*k prefix sums) and the selection are computed for one
output row right before it is stored: act is inlined, cum lives in a W*C*k*k scratch row.
Train mode: the selection ("pool") is the root loop nest. Test mode: the division ("out") is, and the
squared sum and cum are computed under its rows. Measured (Zen 3 AVX2, 2 threads, machine shared, load ~9; 56x56x64, k=2): train 1.96 ms, test 2.31 ms, vs
0.16-0.21 ms for a 2x2 max pool of the same shape (~12x: the k*k prefix sums and the selection are computed
with if_then_else masks over q; a sequential scan would be cheaper) and vs numpy 10.3 / 6.6 ms. With cum laid
out (.., c, q) instead of (.., q, c) train took 4.8 ms (stride-4 scatters on the vectorized c loop).
"""
from convsched.schedule import split_lanes

LAYER = "stochastic_pool2d"

KNOBS = {"unroll_q": [True, False]}


def _vectorize_under(stage, row, lanes, tag):
    """A stage moved under `row` by compute_at has TVM-made loops n, oh, ow, c, then its reduction: make c
    the innermost loop, vectorized (whole vectors, the last one cut short when c is not a multiple)."""
    ax = stage.axes
    n_, oh_, ow_, c_, red = ax[ax.index(row) + 1:]
    cs = split_lanes(stage, c_, lanes, names=(f"{tag}_o", f"{tag}_i"))
    stage.reorder(n_, oh_, ow_, *cs[:-1], red, cs[-1])
    stage.vectorize(cs[-1])
    return red


def schedule(s, layer, unroll_q):
    lanes = s.target.lanes("float32")
    s["act"].compute_inline()
    root = s["out"] if "out" in s else s["pool"]
    c_in = split_lanes(root, "c", lanes, names=("c_o", "c_i"))
    if root.name == "pool":
        root.reorder("n", "oh", "ow", *c_in[:-1], "q", c_in[-1])
        if unroll_q:
            root.unroll("q")
    row = root.fuse("n", "oh")
    root.parallel(row)
    root.vectorize(c_in[-1])
    if root.name == "out":
        pool = s["pool"]
        pool.compute_at(root, row)
        pool.decompose_reduction(_vectorize_under(pool, row, lanes, "pc"))
    cum = s["cum"]
    cum.compute_at(root, row)
    ax = cum.axes
    n_, oh_, ow_, q_, c_, r_ = ax[ax.index(row) + 1:]
    cc = split_lanes(cum, c_, lanes, names=("cc_o", "cc_i"))
    cum.reorder(n_, oh_, ow_, q_, *cc[:-1], r_, cc[-1])
    cum.vectorize(cc[-1])
    cum.decompose_reduction(r_)
    if root.name == "pool":
        root.decompose_reduction("q")
