"""Run a layer's backward pass with compiled kernels: the forward that saves, then every gradient step.

    import convsched as cs
    pool = cs.layers.Pool2d(h=112, w=112, c=64, kind="max", k=3, stride=2, pad=1)
    train = cs.compile_backward(pool)               # one Kernel for bw.forward, one per gradient step
    y = train.forward(x)                            # runs Pool2dArgmax: keeps x and the saved argmax
    grads = train.backward(dy)                      # {"x": dx}
    train.kernels                                   # {"forward": Kernel, "dx": Kernel, ...}: benchmark, export

Each kernel is compiled the way cs.compile() compiles any layer (the best tuning record, else the default
template; templates= picks one per step, by output name). The layers say what each step reads (Backward in
convsched/layers/backward/base.py); this module only calls them in order.
"""
from __future__ import annotations

from .compiler import compile as compile_layer


class CompiledBackward:
    """Kernels for a Backward pass: forward(*inputs) then backward(dy) (or backward(**{output: grad}))."""

    def __init__(self, backward, kernels: dict):
        self.bw, self.kernels = backward, kernels
        self._inputs: dict | None = None
        self._saved: dict | None = None

    def __repr__(self):
        return f"CompiledBackward({self.bw.forward}, steps {', '.join(k for k in self.kernels if k != 'forward')})"

    def forward(self, *arrays):
        """Run the training forward on the layer's inputs; keep them and its outputs for backward()."""
        fwd = self.bw.forward
        prepared = fwd.prepare_inputs(list(arrays))
        out = self.kernels["forward"](*prepared)
        outs = out if isinstance(out, tuple) else (out,)
        self._inputs = dict(zip((s.name for s in fwd.input_specs()), prepared))
        self._saved = {s.name: o for s, o in zip(fwd.output_specs(), outs)}
        return out

    def backward(self, *grads, **named) -> dict:
        """Gradients of the inputs, {input name: array}, from the gradient of the output (positional: the
        forward's first output) or of named outputs."""
        if self._saved is None:
            raise RuntimeError("call forward() first: the backward pass reads its inputs and saved outputs")
        if grads:
            named = {self.bw.forward.output_specs()[0].name: grads[0], **named}

        def call(layer, *arrays):
            return self.kernels[_key(self.bw, layer)](*arrays)
        return self.bw.run(call, self._inputs, self._saved, named)


def _key(bw, layer) -> str:
    for step in bw.steps:
        if step.layer is layer:
            return ", ".join(step.outputs)
    raise KeyError(layer)


def compile_backward(layer_or_backward, target="host", templates: dict | None = None) -> CompiledBackward:
    """Compile layer.backward() (or a Backward): {"forward": kernel, "<step outputs>": kernel, ...}.
    templates: {"forward" or step output names ("dx", "dx, dslope"): template name}."""
    bw = layer_or_backward.backward() if hasattr(layer_or_backward, "backward") else layer_or_backward
    templates = templates or {}
    kernels = {"forward": compile_layer(bw.forward, template=templates.get("forward"), target=target)}
    for step in bw.steps:
        if step.layer is not None:
            name = ", ".join(step.outputs)
            kernels[name] = compile_layer(step.layer, template=templates.get(name), target=target)
    return CompiledBackward(bw, kernels)
