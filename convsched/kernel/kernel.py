"""Kernel: a layer compiled into one function. Call it on numpy arrays; benchmark it; read its schedule.

Every argument is checked (shape and dtype: ValueError) and copied into an aligned buffer when it is
misaligned or strided (kernel/arrays.py); outputs are allocated aligned.

A call costs a few microseconds of Python on top of the compiled function, whatever the layer: the argument
specs (for a custom layer, the result of running its declaration) are computed once, when the kernel is made,
and each call only checks, allocates and calls (benchmarks/call_overhead.py measures it per layer kind).
"""
from __future__ import annotations

import time

import numpy as np

from ..backend import num_threads
from ..backend.binary import assembly
from ..errors import TargetError
from ..export import export as write_library
from .arrays import as_kernel_arg, new_aligned, spec_of
from .bound import BoundKernel
from .timing import Timing, time_calls, timing_arguments


class RefusedBuild:
    """Stands in for compiled code that needs CPU features this host lacks: running it raises TargetError
    (instead of dying of an illegal instruction); its machine code can still be read and exported."""

    def __init__(self, built, message: str):
        self.built, self.message = built, message
        self.executable = getattr(built, "executable", None)

    def __call__(self, *arrays):
        raise TargetError(self.message)

    def time(self, *args, **kwargs):
        raise TargetError(self.message)


class FiniteOnly:
    """Compiled code of an algorithm the layer documents as exact on finite inputs only (Winograd: an inf in,
    NaN out of its whole tile): a call whose float inputs are all finite runs it; any other call runs the
    fallback (an algorithm that follows reference() on inf and NaN, built on first need). So the tuner may pick
    the fast algorithm and no input gets a different answer than the definition. The check costs one
    np.isfinite pass over the float inputs (15-40 us on a 56x56x64 input, Intel Xeon rocketlake, 2026-12; a few %
    of that Winograd conv); timing (time()) measures the algorithm itself."""

    def __init__(self, built, float_inputs: list, fallback):
        self.built, self.float_inputs, self._fallback = built, list(float_inputs), fallback
        self.executable = getattr(built, "executable", None)
        self._run = getattr(built, "func", built)      # the compiled function itself: one Python frame less
        self._fallback_built = None

    def __call__(self, *arrays):
        for i in self.float_inputs:
            if not np.isfinite(arrays[i]).all():
                if self._fallback_built is None:
                    self._fallback_built = self._fallback()
                return self._fallback_built(*arrays)
        return self._run(*arrays)

    def time(self, *args, **kwargs):
        return self.built.time(*args, **kwargs)


def refusal(target, host) -> str | None:
    """Why a kernel built for `target` must not run on `host` (None: it may)."""
    missing = target.missing_on(host)
    if not missing:
        return None
    return (f"kernel built for {target.name} ({target.mcpu}) uses CPU features this host lacks: "
            f"{', '.join(missing)}; running it would die of an illegal instruction")


class Kernel:
    """A layer compiled with one schedule for one target."""

    def __init__(self, layer, target, schedule, built, loop_nest: str, source: str = "compiled"):
        self.layer, self.target, self.schedule = layer, target, schedule
        self._built, self._loop_nest, self.source = built, loop_nest, source
        # Once per kernel, not per call: a custom layer's output_specs() runs its whole TE declaration.
        self._inputs = [spec_of(s) for s in layer.input_specs()]
        self._outputs = [spec_of(s) for s in layer.output_specs()]
        # the compiled function itself where there is one (tvm_ffi's), not the wrapper around it: one Python
        # frame less per call; a refused build or a loaded C entry point is called as it is
        self._run = getattr(built, "func", built)

    def __repr__(self):
        return f"Kernel({self.layer}, template={self.schedule.template!r}, target={self.target.key})"

    def _arguments(self, arrays) -> list:
        specs = self._inputs
        arrays = self.layer.prepare_inputs(list(arrays))
        if len(arrays) != len(specs):
            names = ", ".join(s.name for s in specs)
            raise ValueError(f"{type(self.layer).__name__} kernel takes {len(specs)} arrays ({names}), "
                             f"got {len(arrays)}")
        return [as_kernel_arg(a, s, "input") for a, s in zip(arrays, specs)]

    def _new_outputs(self) -> list:
        return [new_aligned(s.shape, s.dtype) for s in self._outputs]

    def __call__(self, *arrays):
        args = self._arguments(arrays)
        outs = self._new_outputs()
        self._run(*args, *outs)
        return self.layer.finish_outputs(outs)

    def benchmark(self, repeat: int = 15, min_repeat_ms: int = 20, arrays=None, call_time: bool = True) -> Timing:
        """Time the kernel on random (or given) inputs: median and p10/p90 over `repeat` measurements,
        each averaging enough calls to last `min_repeat_ms`. call_time: also time whole Python calls
        k(*arrays) on the same inputs (Timing.call_median_ms; what a caller pays, checks and copies included)."""
        repeat, min_repeat_ms = timing_arguments(repeat, min_repeat_ms)
        user = list(arrays) if arrays is not None else self.layer.random_inputs()
        args = self._arguments(user)
        outs = self._new_outputs()
        # warm up for ~50 ms first: the thread pool's workers, the caches and the clock ramp (the first repeats
        # of a cold 56x56 conv on 2 threads read 20-30% slow, AMD Zen 3, 2026-11, and p10/p90 would call it noise)
        t_end = time.perf_counter() + 0.05
        while True:
            self._built(*args, *outs)
            if time.perf_counter() > t_end:
                break
        secs = np.array(self._built.time(args + outs, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms))
        # Winograd computes a 3x3 conv with 2.25x fewer multiplies: its rate counts the direct conv's FLOPs
        # ("effective") and may pass the FMA peak; any other algorithm is held to the peak
        t = Timing.from_ms(secs * 1e3, num_threads(), self.layer.ops() * self.layer.flops_per_op,
                           self.layer.op_unit, self.target, effective="winograd" in self.schedule.algorithm,
                           direct=True)
        return t.with_calls(time_calls(self, user, repeat, min_repeat_ms)) if call_time else t

    def bind(self, **fixed) -> BoundKernel:
        """Fix some inputs once (e.g. bind(w=layer.pack_weights(w), b=b)): -> a callable taking the rest."""
        return BoundKernel(self, fixed)

    def describe(self) -> str:
        """The scheduled loop nest (TVMScript), headed by the schedule's text."""
        return f"# {self}\n{self.schedule.text()}\n\n{self._loop_nest}"

    def assembly(self) -> str:
        """The machine code LLVM generated for this kernel, as assembly text (e.g. to look for vpopcntq)."""
        return assembly(self._built)

    def export(self, directory, name: str | None = None):
        """Write libNAME.so + NAME.h + manifest.json into `directory` (see convsched.export); cs.load() reads
        it back. Several kernels in one library: convsched.export.export({name: kernel, ...}, directory)."""
        return write_library(self, directory, name=name)
