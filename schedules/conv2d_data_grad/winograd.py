"""Conv data gradient by Winograd F(2x2, 3x3): the forward template conv2d/nhwc_winograd, reused as it is.

With stride 1 and groups 1, dx is a forward convolution of dy with the flipped, transposed weights
(Conv2dDataGrad.equivalent_conv()), and the layer's "winograd2x2" declaration is that conv's Winograd
declaration (same stages: pad, wino_u, wino_v, wino_m, conv) on the flipped, transposed weights "wt". Knobs,
defaults, constraint and schedule are the forward template's, on that conv; this file adds the schedule of
"wt": a parallel pass over the taps, 16 rows of w (a vector of its output channels) at a time, so the rows
stay in L1 while their columns are read (the vector is gathered with one insert per lane).
(A tuning record keeps this file's hash: after editing the forward template, re-tune these layers too.)
"""
from convsched.schedule import get_template, lanes_dividing

LAYER = "conv2d_data_grad"
ALGORITHM = "winograd2x2"
FORWARD = "conv2d/nhwc_winograd"


def _forward():
    return get_template(FORWARD)


def applies(layer, target):
    ok = layer.algorithm_applies(ALGORITHM)
    return ok if ok is not True else _forward().applies(layer.equivalent_conv(), target)


def _space(name):
    def space(layer, target):
        return _forward().knob_space(layer.equivalent_conv(), target)[name]
    return space


KNOBS = {name: _space(name) for name in _forward().ns["KNOBS"]}


def defaults(layer, target):
    return _forward().defaults(layer.equivalent_conv(), target)


def constraint(layer, target, **knobs):
    return _forward().constraint(layer.equivalent_conv(), target, knobs)


def schedule(s, layer, **knobs):
    _forward().ns["schedule"](s, layer.equivalent_conv(), **knobs)
    v = lanes_dividing(layer.forward.cin, s.target)
    wt = s["wt"]
    o_o, o_v = wt.split("o", v)
    wt.reorder("i", "j", o_o, "c", o_v)
    wt.parallel(wt.fuse("i", "j"))
    wt.vectorize(o_v)
