"""What a backward pass is: a list of gradient steps, each an ordinary layer with named arguments.

    bw = cs.layers.Conv2d(h=8, w=8, cin=16, cout=32, bias=True).backward()
    print(bw)                   # forward: Conv2d(...) -> y
                                # dx = Conv2dDataGrad(...)(grad dy, input w)
                                # dw = Conv2dWeightGrad(...)(input x, grad dy)
                                # db = BiasGrad(...)(grad dy)
    bw.forward                  # the layer to run forward in training: its outputs are the values the steps save
    step, i = bw["x"]           # the step giving the gradient of input x (its output i), step.layer, step.args

Every argument of a step is an Arg(source, name):
  Arg("input", "w")    a forward input (what the forward layer was called with), by its input_specs() name
  Arg("saved", "y")    a forward output of bw.forward, by its output_specs() name (e.g. "argmax" of max pooling)
  Arg("grad", "y")     the gradient of the loss with respect to forward output "y" (written "dy")
  Arg("step", "dz")    the result of an earlier step of the same backward pass (e.g. the gradient through a
                       fused ReLU before the conv's own gradients)
A step may give several gradients at once (PReLU: dx and dslope). A step with layer None passes its one argument through unchanged (the gradient of a residual input is the
gradient that reaches the sum). Backward.run() evaluates the steps with any callable (the numpy references,
or compiled kernels: cs.compile_backward, convsched/kernel/backprop.py).

Gradients of windows that overlap (pooling, convolution) are written as gathers: every input position sums the
windows that contain it (window_candidates below), the way a transposed convolution is written, so a kernel
never scatters into its output and needs no atomics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from .. import registry
from ..base import Layer

SOURCES = ("input", "saved", "grad", "step")


@dataclass(frozen=True)
class Arg:
    """Where one argument of a gradient step comes from (see the module docstring)."""
    source: str
    name: str

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Arg source must be one of {SOURCES}, got {self.source!r}")

    def __str__(self):
        return f"grad d{self.name}" if self.source == "grad" else f"{self.source} {self.name}"


def args(*specs: str) -> tuple:
    """args("grad:y", "input:w") -> (Arg("grad", "y"), Arg("input", "w"))."""
    out = []
    for s in specs:
        source, _, name = s.partition(":")
        out.append(Arg(source, name))
    return tuple(out)


@dataclass(frozen=True)
class GradStep:
    """One step of a backward pass: outputs = layer(*args).

    outputs: the names of the values it produces, in the layer's output order ("dx",) or ("dx", "dslope").
    wrt: per output, the forward input it is the gradient of, or None for an intermediate value that later
    steps read (Arg("step", name)). layer None: the one output is the one argument, unchanged."""
    outputs: tuple
    layer: Layer | None
    args: tuple
    wrt: tuple

    def __str__(self):
        what = "identity" if self.layer is None else str(self.layer)
        return f"{', '.join(self.outputs)} = {what}({', '.join(map(str, self.args))})"


def step(outputs: str, layer, *arg_specs: str, wrt: str | None = None) -> GradStep:
    """step("dx, dslope", PReLUGrad(f), "input:x", "input:slope", "grad:y", wrt="x, slope")."""
    names = tuple(o.strip() for o in outputs.split(","))
    targets = tuple(None if t.strip() in ("", "-") else t.strip() for t in (wrt or "").split(","))
    targets = targets + (None,) * (len(names) - len(targets))
    if len(targets) != len(names):
        raise ValueError(f"step {outputs!r}: wrt {wrt!r} names more gradients than outputs")
    return GradStep(names, layer, args(*arg_specs), targets)


@dataclass(frozen=True)
class Backward:
    """The backward pass of one forward layer: run `forward` (it saves what the steps read), then the steps in
    order. bw[input name] -> (step, output index) of that input's gradient."""
    forward: Layer
    steps: tuple

    @property
    def gradients(self) -> dict:
        """{forward input name: (step, index of the step's output that is its gradient)}."""
        return {w: (s, i) for s in self.steps for i, w in enumerate(s.wrt) if w is not None}

    def __getitem__(self, wrt: str) -> tuple:
        g = self.gradients
        if wrt not in g:
            raise KeyError(f"{self.forward} has no gradient for '{wrt}' (it has: {', '.join(g) or 'none'})")
        return g[wrt]

    def __str__(self):
        outs = ", ".join(s.name for s in self.forward.output_specs())
        return "\n".join([f"forward: {self.forward} -> {outs}"] + [str(s) for s in self.steps])

    def run(self, call: Callable, inputs: dict, saved: dict, grads: dict) -> dict:
        """Evaluate every step with call(layer, *arrays) -> array or tuple of arrays: {wrt: gradient}.

        inputs: {name: array} of the forward's inputs; saved: {name: array} of bw.forward's outputs;
        grads: {output name: gradient of the loss with respect to that output}."""
        pools = {"input": inputs, "saved": saved, "grad": grads, "step": {}}
        result = {}
        for st in self.steps:
            try:
                arrays = [pools[a.source][a.name] for a in st.args]
            except KeyError as e:
                raise KeyError(f"step {', '.join(st.outputs)} needs {e.args[0]!r}; have inputs {sorted(inputs)}, "
                               f"saved {sorted(saved)}, grads {sorted(grads)}") from None
            values = (arrays[0],) if st.layer is None else call(st.layer, *arrays)
            values = values if isinstance(values, tuple) else (values,)
            for name, wrt, value in zip(st.outputs, st.wrt, values):
                pools["step"][name] = value
                if wrt is not None:
                    result[wrt] = value
        return result


@dataclass(frozen=True)
class NestedLayer(Layer):
    """Base of a layer whose parameters include another layer (a gradient layer's `forward`): its geometry
    is that layer's, and its workload key nests that layer's own key (so Conv2d's key rules carry over).

    params() gives a nested layer as {"class": name, "params": its params()} (plain data, e.g. in an exported
    kernel's manifest), and the constructor accepts that form back for layers of convsched.layers."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict) and "class" in v:
                object.__setattr__(self, f.name, _rebuild(v))
        more = getattr(super(), "__post_init__", None)       # e.g. CustomLayer's template registration
        if more is not None:
            more()

    def params(self) -> dict:
        return {f.name: _as_data(getattr(self, f.name)) for f in fields(self)}

    def __str__(self) -> str:
        args = ", ".join(str(v) if isinstance(v, Layer) else f"{f.name}={v!r}"
                         for f in fields(self) for v in [getattr(self, f.name)])
        return f"{type(self).__name__}({args})"

    @property
    def workload_key(self) -> str:
        d = {}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = json.loads(v.workload_key) if isinstance(v, Layer) else v
        return json.dumps({"layer": self.KIND, **d}, sort_keys=True, separators=(",", ":"))


def _as_data(v):
    return {"class": type(v).__name__, "params": v.params()} if isinstance(v, Layer) else v


def _rebuild(d: dict) -> Layer:
    cls = registry.layer_class(d["class"])
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["params"].items()})


def out_dtype(*arrays):
    """float64 when a reference is given float64 arrays (finite-difference checks), else float32."""
    return np.float64 if any(np.asarray(a).dtype == np.float64 for a in arrays) else np.float32


# ------------------------------------------------------------------------------ gathers over windows
def window_candidates(k: int, s: int) -> int:
    """How many windows of size k, stride s can contain one input position: ceil(k / s)."""
    return -(-k // s)


def window_of(expr, i, r, size_out: int, k: int, s: int, p: int):
    """Candidate r (0 <= r < ceil(k/s)) of the windows containing input position i, along one axis of a
    window k, stride s, padding p (before), size_out windows:
        o   = (i + p) // s - r        the window; clamped into [0, size_out) so that loads stay in bounds
        tap = (i + p) - o * s         where i falls inside window o, i.e. (i + p) % s + r * s
        ok  = 0 <= o < size_out and tap < k
    Every window containing i is exactly one candidate with ok (no window counted twice).
    Returns (clamped o, tap, ok)."""
    o = expr.floordiv(i + p, s) - r
    tap = expr.floormod(i + p, s) + r * s
    ok = expr.all(o >= 0, o < size_out, tap < k)
    return expr.max(expr.min(o, size_out - 1), 0), tap, ok
