"""NHWC conv (+ bias, ReLU, elementwise tail) -> non-overlapping pool, one loop nest per pool row.

Loop nest (outer to inner):
    parallel (n, oh_o)                 one pool output row = `stride` conv rows
      [pad rows]                       the padded input rows these conv rows read
      oh_i, co_o, ci_o, ow_o           conv as in conv2d/nhwc_direct: an (ow_tile x co_tile) register tile,
        kh, kw, ci_i, ow_i, co_v, co_l co vectorized, bias+ReLU stored with the tile
      pool row                         reads the stride x W x C conv rows just written (still in L1/L2)
The conv output never makes a round trip through memory; with k == stride no conv row is computed twice.
Overlapping windows (3x3/2) would recompute rows and a padded pool would need rows of two iterations:
the planner leaves those unfused. Knobs as conv2d/nhwc_direct (defaults from it).
Measured (Zen 3, 2 threads, 56x56x64->64 3x3 + bias + ReLU + 2x2/2 max pool): see benchmarks/networks.py.
"""
from convsched.schedule import get_template, stages_of

LAYER = "fused"

_CONV = "conv2d/nhwc_direct"


def _parts(layer):
    conv, *mid, pool = layer.members
    return conv, mid, pool


def applies(layer, target):
    if len(layer.members) < 2:
        return "nothing to fuse"
    conv, mid, pool = _parts(layer)
    if conv.layer.KIND != "conv2d" or pool.layer.KIND != "pool2d":
        return "needs conv2d [-> elementwise ...] -> pool2d"
    c, p = conv.layer, pool.layer
    if c.layout != "NHWC" or c.groups != 1:
        return "conv must be NHWC with groups=1"
    if any(not getattr(m.layer, "ELEMENTWISE", False) for m in mid):
        return "only elementwise layers may sit between the conv and the pool"
    (kh, kw), (sh, sw), (ph, pw) = [(v, v) if isinstance(v, int) else v for v in (p.k, p.stride, p.pad)]
    if (kh, kw) != (sh, sw) or ph or pw:
        return (f"pool {p.k}/{p.stride} pad {p.pad}: overlapping or padded windows would recompute conv rows "
                f"(no gain)")
    if c.oh % sh or c.ow % sw:
        return f"conv output {c.oh}x{c.ow} is not a multiple of the pool stride"
    if mid and not c.bias and not c.act:
        return "an elementwise tail needs the conv's bias/act stage to inline into"
    return True


def _conv_space(name):
    def space(layer, target):
        c = layer.members[0].layer
        return get_template(_CONV).knob_space(c, target)[name]
    return space


KNOBS = {"co_tile": _conv_space("co_tile"), "ow_tile": _conv_space("ow_tile"), "ci_tile": _conv_space("ci_tile")}


def defaults(layer, target):
    """The conv's tuned tile when its tuning record used conv2d/nhwc_direct, else that template's defaults."""
    conv = layer.members[0]
    d = get_template(_CONV).defaults(conv.layer, target)
    if conv.template == _CONV:
        d.update({k: v for k, v in conv.knobs if k in KNOBS})
    return {k: d[k] for k in KNOBS}


def constraint(layer, target, co_tile, ow_tile, ci_tile):
    conv_tmpl, conv = get_template(_CONV), layer.members[0].layer
    knobs = {**conv_tmpl.defaults(conv, target), "co_tile": co_tile, "ow_tile": ow_tile, "ci_tile": ci_tile}
    return conv_tmpl.constraint(conv, target, knobs)


def schedule(s, layer, co_tile, ow_tile, ci_tile):
    conv_m, mid, pool_m = _parts(layer)
    c, p = conv_m.name + "_", pool_m.name + "_"
    lanes = s.target.lanes("float32")
    p_stride = pool_m.layer.stride if isinstance(pool_m.layer.stride, int) else pool_m.layer.stride[0]

    conv = s[c + "conv"]
    oh_o, oh_i = conv.split("oh", p_stride)
    co_o, co_i = conv.split("co", co_tile)
    ow_o, ow_i = conv.split("ow", ow_tile)
    ci_o, ci_i = conv.split("ci", ci_tile)
    inner = [co_i]
    if co_tile % lanes == 0 and co_tile > lanes:
        inner = list(conv.split(co_i, lanes, names=("co_v", "co_l")))
    conv.reorder("n", oh_o, oh_i, co_o, ci_o, ow_o, "kh", "kw", ci_i, ow_i, *inner)
    row = conv.fuse("n", oh_o)
    conv.parallel(row)
    conv.vectorize(inner[-1])
    if len(inner) == 2:
        conv.unroll(inner[0])
    conv.unroll(ow_i)
    s[c + "pad"].compute_at(conv, row)
    # epilogue: act and the elementwise tail are inlined into the bias (or act) stage, stored per tile
    tail = [st for st in stages_of(layer, conv_m.name) if st not in (c + "pad", c + "conv")]
    for m in mid:
        tail += stages_of(layer, m.name)
    if tail:
        for st in tail[1:]:
            s[st].reverse_compute_inline()
        s[tail[0]].reverse_compute_at(conv, co_o)
    # the pool: padding stage (identity, pad 0) inlined; its rows computed after the conv rows they read
    pool_stages = stages_of(layer, pool_m.name)
    s[p + "pad"].compute_inline()
    pool = s[p + "pool"]
    pool.reverse_compute_at(conv, row)
    ax = pool.axes
    at = ax.index(row)
    n_, oh_, ow_, ch, rh, rw = ax[at + 1: at + 7]
    ch_o, ch_i = pool.split(ch, lanes if pool_m.layer.c % lanes == 0 else 1, names=("pc_o", "pc_i"))
    pool.reorder(n_, oh_, ow_, ch_o, rh, rw, ch_i)
    pool.vectorize(ch_i)
    if p + "avg" in pool_stages:
        s[p + "avg"].reverse_compute_at(conv, row)
    pool.decompose_reduction(rh)
    conv.decompose_reduction(ci_o)
