"""Stochastic pooling that also returns the sampled positions: stochastic_pool2d/rows, reused as it is.

The layer's stages are StochasticPool2d's (act, cum, pool); "pool" is one reduction over q with two results
(value, position), so the forward template's loop nest computes both in the same loops.
"""
from convsched.schedule import get_template

LAYER = "stochastic_pool2d_sampled"
FORWARD = "stochastic_pool2d/rows"

KNOBS = dict(get_template(FORWARD).ns["KNOBS"])


def applies(layer, target):
    forward_applies = get_template(FORWARD).ns.get("applies")
    return True if forward_applies is None else forward_applies(layer, target)


def schedule(s, layer, **knobs):
    get_template(FORWARD).ns["schedule"](s, layer, **knobs)
