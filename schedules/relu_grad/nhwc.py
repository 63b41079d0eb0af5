"""ReLU gradient (dx = dy where y > 0), NHWC: relu/nhwc's loop nest, reused as it is.

Both are one streaming pass over n*h*w*c elements of the same shape (relu_grad reads two arrays instead of one):
the ReLU template schedules the last stage of the layer it is given, here "dx", with the forward ReLU's geometry.
"""
from convsched.schedule import get_template

LAYER = "relu_grad"
FORWARD = "relu/nhwc"


def _forward():
    return get_template(FORWARD)


KNOBS = {name: (lambda name: lambda layer, target: _forward().knob_space(layer.forward, target)[name])(name)
         for name in _forward().ns["KNOBS"]}


def defaults(layer, target):
    return _forward().defaults(layer.forward, target)


def constraint(layer, target, **knobs):
    return _forward().constraint(layer.forward, target, knobs)


def schedule(s, layer, **knobs):
    _forward().ns["schedule"](s, layer.forward, **knobs)
