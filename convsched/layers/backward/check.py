"""Gradient checks in numpy: a backward pass's analytic references against finite differences of the forward.

    bw = layer.backward()
    inputs = dict(zip(names, arrays))                 # the forward's inputs, float64 for a tight check
    errs = gradient_check(bw, inputs, seed=0)         # {input name: max |analytic - numeric| / scale}

The loss is L = sum over the forward's outputs y of <dy, y> with random dy, so dL/dinput is exactly what the
backward computes from dy. Numeric gradients are central differences of L, one input element at a time, on
the forward's own reference() in float64: use small shapes. Non-smooth layers (max, ReLU) are checked away
from their kinks: random float inputs almost never lie within eps of one.
"""
from __future__ import annotations

import numpy as np


def reference_call(layer, *arrays):
    """layer.reference on the arrays a kernel would get (prepare_inputs fills in derived inputs)."""
    return layer.reference(*layer.prepare_inputs(list(arrays)))


def forward_outputs(layer, inputs: dict) -> dict:
    """{output name: array} of layer.reference on the named inputs."""
    names = [s.name for s in layer.input_specs()]
    out = reference_call(layer, *[inputs[n] for n in names if n in inputs])
    outs = out if isinstance(out, tuple) else (out,)
    return {s.name: o for s, o in zip(layer.output_specs(), outs)}


def analytic_gradients(backward, inputs: dict, grads: dict) -> dict:
    """{input name: gradient} from the backward layers' references."""
    saved = forward_outputs(backward.forward, inputs)
    return backward.run(reference_call, inputs, saved, grads)


def numeric_gradients(backward, inputs: dict, grads: dict, wrt, eps: float = 1e-6) -> dict:
    """{input name: central-difference gradient of sum <dy, y>} for every input named in wrt."""
    def loss(ins):
        outs = forward_outputs(backward.forward, ins)
        return sum(float(np.sum(grads[k].astype(np.float64) * outs[k].astype(np.float64))) for k in grads)
    result = {}
    for name in wrt:
        base = inputs[name].astype(np.float64)
        g = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[i] += eps
            minus[i] -= eps
            g[i] = (loss({**inputs, name: plus}) - loss({**inputs, name: minus})) / (2 * eps)
        result[name] = g
    return result


def gradient_check(backward, inputs: dict, seed: int = 0, eps: float = 1e-6) -> dict:
    """{input name: max |analytic - numeric| / max(1, max |numeric|)} for every gradient of the pass, with
    random dy (uniform [-1, 1), float64) for every float output of the forward."""
    rng = np.random.default_rng(seed)
    inputs = {k: (v.astype(np.float64) if np.asarray(v).dtype.kind == "f" else v) for k, v in inputs.items()}
    grads = {s.name: rng.uniform(-1, 1, s.shape) for s in backward.forward.output_specs()
             if np.dtype(s.dtype).kind == "f"}
    analytic = analytic_gradients(backward, inputs, grads)
    numeric = numeric_gradients(backward, inputs, grads, list(analytic), eps)
    return {k: float(np.max(np.abs(analytic[k] - numeric[k])) / max(1.0, float(np.max(np.abs(numeric[k])))))
            for k in analytic}
