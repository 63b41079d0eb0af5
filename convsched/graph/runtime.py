"""A compiled network: one kernel per plan group, run in order on buffers planned once at compile time.

A buffer is given to an intermediate value when the kernel producing it runs, and is free again once the
last kernel reading that value has run (memory_plan() prints the slots).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from ..errors import GraphError
from ..export import export
from ..kernel import aligned_empty, as_kernel_arg
from .fused import prepare_params


def _nbytes(spec) -> int:
    return math.prod(spec.shape) * np.dtype(spec.dtype).itemsize


class CompiledGraph:
    """A compiled network: call it on its inputs; intermediate buffers are planned and reused."""

    def __init__(self, graph, plan, kernels: list):
        self.graph, self.plan, self.kernels = graph, plan, kernels
        self.params: dict = {}
        self._plan_memory()
        self._steps = [self._step(i) for i in range(len(kernels))]

    def __repr__(self):
        return f"CompiledGraph({self.graph.name}, {len(self.kernels)} kernels)"

    # each group reads values (graph inputs or other groups' outputs) and parameters
    def _group_args(self, gi):
        """[(kind, key)] of kernel gi's arguments: ("value", name) or ("param", "node.arg")."""
        g = self.plan.groups[gi]
        inside = set(g.nodes)
        out = []
        if g.rewrite is not None:
            layer, amap = g.rewrite
            for s in layer.input_specs():
                node, arg = amap[s.name]
                src = self.graph.binds(node).get(arg)
                out.append(("param", f"{node}.{arg}") if src is None else ("value", src))
            return out
        for n in g.nodes:
            for s in self.graph.layer(n).input_specs():
                src = self.graph.binds(n).get(s.name)
                if src is None:
                    out.append(("param", f"{n}.{s.name}"))
                elif src not in inside:
                    out.append(("value", src))
        return out

    def _plan_memory(self):
        """Give each intermediate value a slot; a slot is free again once the value's last reader ran."""
        groups = self.plan.groups
        produced = {g.nodes[-1]: i for i, g in enumerate(groups)}
        last_use = {}
        for i in range(len(groups)):
            for kind, key in self._group_args(i):
                if kind == "value":
                    last_use[key] = i
        self.slot_of, sizes, free = {}, [], []
        for i, g in enumerate(groups):
            v = g.nodes[-1]
            if v not in self.graph.outputs:
                nbytes = _nbytes(self.graph.value_spec(v))
                fit = sorted((sizes[s], s) for s in free if sizes[s] >= nbytes)
                if fit:
                    slot = fit[0][1]
                    free.remove(slot)
                else:
                    slot = len(sizes)
                    sizes.append(nbytes)
                self.slot_of[v] = slot
            # values whose last reader is this group: their slots are free for the next groups
            for kind, key in self._group_args(i):
                if kind == "value" and last_use.get(key) == i and key in self.slot_of and key in produced:
                    if self.slot_of[key] not in free:
                        free.append(self.slot_of[key])
        self.slot_sizes = sizes
        self._slots = [aligned_empty((s,), np.uint8) for s in sizes]

    def memory_plan(self) -> str:
        unshared = sum(_nbytes(self.graph.value_spec(v)) for v in self.slot_of)
        lines = [f"intermediate buffers: {len(self.slot_sizes)} slots, {sum(self.slot_sizes)} bytes "
                 f"(one buffer per value would take {unshared} bytes)"]
        for v, s in self.slot_of.items():
            lines.append(f"  {v:20s} -> slot {s} ({self.slot_sizes[s]} bytes)")
        return "\n".join(lines)

    def set_params(self, params: dict) -> None:
        """Give the parameters ("node.arg" -> array; kernel format, or whatever the layer's prepare_inputs
        takes). Checked and aligned once here, not per call."""
        need = {f"{n}.{s.name}": (n, s) for n in self.graph.nodes() for s in self.graph.params(n)}
        missing, unknown = set(need) - set(params), set(params) - set(need)
        if missing or unknown:
            raise GraphError("parameters: " + "; ".join(
                ([f"missing {', '.join(sorted(missing))}"] if missing else [])
                + ([f"unknown {', '.join(sorted(unknown))}"] if unknown else [])))
        prepared = {}
        for n in self.graph.nodes():
            layer = self.graph.layer(n)
            b = self.graph.binds(n)
            full = prepare_params(layer, b, lambda s: params[f"{n}.{s.name}"])
            for s, a in zip(layer.input_specs(), full):
                if s.name not in b:
                    prepared[f"{n}.{s.name}"] = as_kernel_arg(a, s, f"parameter {n}")
        self.params = prepared

    def _step(self, gi):
        """What a forward pass needs of kernel gi, fixed once compiled: its argument keys and specs, the
        value it produces, and its output buffer (a view of a reused slot), or None where each pass needs a
        fresh array (a graph output the caller keeps)."""
        g, k = self.plan.groups[gi], self.kernels[gi]
        # the kernel's specs, prepared once when it was built (a custom layer's specs run its declaration)
        keys, kspecs = self._group_args(gi), k._inputs
        if len(keys) != len(kspecs):
            raise GraphError(f"kernel {g.name}: {len(keys)} arguments for {len(kspecs)} specs (internal error)")
        spec, v = k._outputs[0], g.nodes[-1]
        out = None
        if v in self.slot_of:
            out = self._slots[self.slot_of[v]][:_nbytes(spec)].view(spec.dtype).reshape(spec.shape)
        return k, keys, kspecs, spec, v, out

    def __call__(self, *args, params: dict | None = None, **inputs):
        if params is not None:
            self.set_params(params)
        if not self.params and any(self.graph.params(n) for n in self.graph.nodes()):
            raise GraphError("no parameters: call set_params(params) or pass params=")
        names = list(self.graph.inputs)
        if len(args) > len(names):
            raise GraphError(f"{self.graph.name} takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        inputs.update(zip(names, args))
        vals = self.graph._check_inputs(inputs)
        for k, keys, kspecs, spec, v, slot in self._steps:
            kargs = [vals[key] if kind == "value" else self.params[key] for kind, key in keys]
            out = aligned_empty(spec.shape, spec.dtype) if slot is None else slot
            k._built(*[as_kernel_arg(a, s, "input") for a, s in zip(kargs, kspecs)], out)
            vals[v] = out
        outs = [vals[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def benchmark(self, inputs: dict | None = None, repeat: int = 20, number: int = 5) -> dict:
        """Wall time of whole forward passes (Python dispatch included): best and median ms."""
        inputs = inputs or self.graph.random_inputs()
        self(**inputs)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                self(**inputs)
            times.append((time.perf_counter() - t0) / number * 1e3)
        return {"best_ms": float(np.min(times)), "median_ms": float(np.median(times))}

    def describe(self) -> str:
        return "\n\n".join([str(self.plan), self.memory_plan()] + [k.schedule.text() for k in self.kernels])

    def export(self, path, name: str | None = None):
        """Write every kernel of the network into one library (convsched.export: libNAME.so, NAME.h,
        manifest.json) plus graph.json: the kernels in execution order, which value or parameter each
        argument is, and the intermediate buffer slots, so a C program can run the network."""
        names = [g.name.replace("+", "__") for g in self.plan.groups]
        out = export(dict(zip(names, self.kernels)), path, name=name)
        wiring = {"graph": self.graph.name, "inputs": {k: [list(v.shape), v.dtype] for k, v in self.graph.inputs.items()},
                  "outputs": list(self.graph.outputs),
                  "kernels": [{"entry": n, "nodes": list(g.nodes), "template": g.template,
                               "arguments": [f"{kind}:{key}" for kind, key in self._group_args(i)],
                               "output": g.nodes[-1]} for i, (n, g) in enumerate(zip(names, self.plan.groups))],
                  "slots": {"bytes": self.slot_sizes, "values": self.slot_of}}
        (out / "graph.json").write_text(json.dumps(wiring, indent=1) + "\n")
        return out
