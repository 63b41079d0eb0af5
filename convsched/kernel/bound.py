"""A kernel with some arguments fixed once (weights, bias): Kernel.bind(w=..., b=...).

The fixed arrays are checked and copied into aligned buffers once, at bind time; each call passes them
straight through (no check, no copy, no repacking). Blocked weights for NCHWc come from
Conv2d.pack_weights(w_oihw), also run once:  k.bind(w=layer.pack_weights(w_oihw), b=b)(x)
"""
from __future__ import annotations

from .arrays import as_kernel_arg
from .timing import time_calls


class BoundKernel:
    def __init__(self, kernel, fixed: dict):
        specs = kernel.layer.input_specs()
        names = [s.name for s in specs]
        unknown = sorted(set(fixed) - set(names))
        if unknown:
            raise ValueError(f"{type(kernel.layer).__name__} kernel has no input named {unknown[0]!r}; "
                             f"its inputs are {', '.join(names)}")
        self.kernel = kernel
        self._fixed = {s.name: as_kernel_arg(fixed[s.name], s, "bound input") for s in specs if s.name in fixed}
        self._free = [s for s in specs if s.name not in fixed]
        self._names = names

    def input_specs(self):
        """The arguments still to give at each call, in order."""
        return list(self._free)

    def _full(self, arrays):
        if len(arrays) != len(self._free):
            raise ValueError(f"bound kernel takes {len(self._free)} array(s) "
                             f"({', '.join(s.name for s in self._free)}), got {len(arrays)}")
        it = iter(arrays)
        return [self._fixed[n] if n in self._fixed else next(it) for n in self._names]

    def __call__(self, *arrays):
        return self.kernel(*self._full(arrays))

    def benchmark(self, arrays=None, call_time: bool = True, **kw):
        """Kernel.benchmark with the bound arrays and the given (else random) free ones; the call time is of
        this bound kernel's calls."""
        if arrays is None:
            arrays = [a for a, n in zip(self.kernel.layer.random_inputs(), self._names) if n not in self._fixed]
        arrays = list(arrays)
        t = self.kernel.benchmark(arrays=self._full(arrays), call_time=False, **kw)
        if not call_time:
            return t
        return t.with_calls(time_calls(self, arrays, kw.get("repeat", 15), kw.get("min_repeat_ms", 20)))

    def __repr__(self):
        return f"BoundKernel({self.kernel!r}, fixed={sorted(self._fixed)})"
