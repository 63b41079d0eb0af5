"""Kernel: a compiled layer. Call it on numpy arrays; benchmark it; read its schedule and loop nest.

TVM kernels assume 64-byte aligned, contiguous buffers and segfault otherwise, so every argument is
checked here (shape and dtype: ValueError) and copied into an aligned buffer when it is misaligned or
strided. Outputs are allocated aligned.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import target as _target
from .errors import ScheduleError, TargetError

ALIGN = 64


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off: off + nbytes].view(dt).reshape(shape)


def is_aligned(a: np.ndarray, align: int = ALIGN) -> bool:
    return a.ctypes.data % align == 0


def aligned(a, dtype=None) -> np.ndarray:
    """`a` as a C-contiguous, 64-byte aligned array (itself if it already is one, else a copy).

    Kernels copy any other argument on every call (numpy's own allocations are usually only 16-byte
    aligned): convert long-lived inputs such as weights once with cs.aligned(), or allocate them with
    cs.aligned_empty(shape, dtype), and the call passes them straight through."""
    a = np.asarray(a, dtype=dtype)
    if a.flags.c_contiguous and is_aligned(a):
        return a
    b = aligned_empty(a.shape, a.dtype)
    np.copyto(b, a)
    return b


def as_kernel_arg(a, spec, what: str) -> np.ndarray:
    """Check one argument against its TensorSpec; return it, or an aligned contiguous copy."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    want = np.dtype(spec.dtype)
    if a.dtype != want:
        raise ValueError(f"{what} '{spec.name}': dtype is {a.dtype}, expected {want} "
                         f"(convert with .astype(np.{want.name}))")
    if tuple(a.shape) != tuple(spec.shape):
        raise ValueError(f"{what} '{spec.name}': shape is {tuple(a.shape)}, expected {tuple(spec.shape)}")
    return aligned(a)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    threads: int
    ops: int                 # layer.ops() x flops_per_op
    unit: str                # "GFLOP/s", "G bit-MAC/s", ...
    rate: float              # ops per second at the median, in giga-units
    peak: float | None       # the machine's ceiling in the same unit, if known
    peak_measured: bool = False   # measured on this host (convsched.backend.peaks), or the target's model
    peak_source: str = ""         # how the ceiling was obtained (CPU, method, date)
    effective: bool = False       # rate counts the direct algorithm's ops (Winograd does fewer multiplies)

    @property
    def pct_of_peak(self) -> float | None:
        return None if not self.peak else 100.0 * self.rate / self.peak

    def __str__(self):
        eff = "effective " if self.effective else ""
        s = (f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, {self.runs} runs, "
             f"{self.threads} threads)  {self.rate:.1f} {eff}{self.unit}")
        if self.peak:
            kind = "measured" if self.peak_measured else "modelled"
            s += f"  = {self.pct_of_peak:.0f}% of the {kind} peak {self.peak:.0f}"
            if self.effective:
                s += " (effective: direct-conv ops / time; the algorithm does fewer, so it may pass 100%)"
        return s


class Kernel:
    """A layer compiled with one schedule for one target."""

    def __init__(self, layer, target, schedule, built, loop_nest: str, source: str = "compiled"):
        self.layer, self.target, self.schedule = layer, target, schedule
        self._built, self._loop_nest, self.source = built, loop_nest, source

    def __repr__(self):
        return f"Kernel({self.layer}, template={self.schedule.template!r}, target={self.target.key})"

    def __call__(self, *arrays):
        specs = self.layer.input_specs()
        arrays = list(self.layer.prepare_inputs(list(arrays)))
        if len(arrays) != len(specs):
            names = ", ".join(s.name for s in specs)
            raise ValueError(f"{type(self.layer).__name__} kernel takes {len(specs)} arrays ({names}), "
                             f"got {len(arrays)}")
        args = [as_kernel_arg(a, s, "input") for a, s in zip(arrays, specs)]
        outs = [aligned_empty(s.shape, s.dtype) for s in self.layer.output_specs()]
        self._built(*args, *outs)
        return self.layer.finish_outputs(outs)

    def benchmark(self, repeat: int = 15, min_repeat_ms: int = 20, arrays=None) -> Timing:
        """Time the kernel on random (or given) inputs: median and p10/p90 over `repeat` measurements,
        each averaging enough calls to last `min_repeat_ms`."""
        from .backend import num_threads, peaks
        specs = self.layer.input_specs()
        arrays = self.layer.prepare_inputs(list(arrays or self.layer.random_inputs()))
        args = [as_kernel_arg(a, s, "input") for a, s in zip(arrays, specs)]
        outs = [aligned_empty(s.shape, s.dtype) for s in self.layer.output_specs()]
        # warm up for ~50 ms first: the thread pool's workers, the caches and the clock ramp (the first repeats
        # of a cold 56x56 conv on 2 threads read 20-30% slow, and p10/p90 would report it as noise)
        t_end = time.perf_counter() + 0.05
        while True:
            self._built(*args, *outs)
            if time.perf_counter() > t_end:
                break
        secs = np.array(self._built.time(args + outs, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms))
        ms = secs * 1e3
        threads = num_threads()
        ops = self.layer.ops() * self.layer.flops_per_op
        med = float(np.median(ms))
        unit = {"FLOP": "GFLOP/s", "bit-MAC": "G bit-MAC/s"}.get(self.layer.op_unit, f"G{self.layer.op_unit}/s")
        rate = ops / (med * 1e-3) / 1e9
        # Winograd computes a 3x3 conv with 2.25x fewer multiplies: its rate counts the direct conv's FLOPs
        # ("effective") and may pass the FMA peak; a direct algorithm is held to it.
        effective = "winograd" in self.schedule.algorithm
        peak = peaks.peak_for(self.target, self.layer.op_unit, threads, at_least=None if effective else rate)
        return Timing(med, float(np.percentile(ms, 10)), float(np.percentile(ms, 90)), len(ms), threads, ops,
                      unit, rate, peak.value if peak else None, bool(peak and peak.measured),
                      peak.source if peak else "", effective)

    def bind(self, **fixed):
        """Fix some inputs once (e.g. bind(w=layer.pack_weights(w), b=b)): -> a callable taking the rest."""
        from .bound import BoundKernel
        return BoundKernel(self, fixed)

    def describe(self) -> str:
        """The scheduled loop nest (TVMScript), headed by the schedule's text."""
        return f"# {self}\n{self.schedule.text()}\n\n{self._loop_nest}"

    def export(self, directory, name: str | None = None):
        """Write libNAME.so + NAME.h + manifest.json into `directory` (see convsched/export.py); cs.load() reads
        it back. Several kernels in one library: convsched.export.export({name: kernel, ...}, directory)."""
        from .export import export
        return export(self, directory, name=name)


_warned: set = set()


def _warn_once(key, msg):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, stacklevel=3)


def compile(layer, template: str | None = None, knobs: dict | None = None, target="host", schedule=None,
            log=None) -> Kernel:
    """Compile `layer` for `target`.

    template/knobs: a named template ("conv2d/nhwc_direct") and knob values (missing ones take the
    template's defaults). schedule: a recorded Schedule (e.g. from a tuning log) or a function
    schedule(s, layer) written inline. With none of these, the best verified tuning record for this
    workload and target is used, else the layer's default template (with a warning, once per workload).
    """
    hook = getattr(layer, "compile_kernel", None)
    if hook is not None:  # layers whose kernel is several compiled functions plus glue (e.g. LossDelta)
        return hook(template=template, knobs=knobs, target=target, schedule=schedule, log=log)
    from . import backend
    from .schedule import template as T
    from .schedule.steps import Schedule
    tgt = _target.get(target)
    # Building for features the host lacks is fine (cross-compilation, export); running it here is not.
    missing = tgt.missing_on(_target.host())
    if schedule is not None and (template or knobs):
        raise ScheduleError("give either schedule= or template=/knobs=, not both")
    if isinstance(schedule, Schedule):
        live = T.replay(layer, schedule)
        sched = schedule
    elif callable(schedule):
        sched, live = T.record(layer, tgt, schedule, {}, name="(inline)")
    else:
        if template is None and knobs is None:
            rec = _best_record(layer, tgt, log)
            if rec is not None:
                template, knobs = rec
            else:
                template = layer.default_template()
                _warn_once((layer.workload_key, tgt.key),
                           f"no tuning record for {layer} on {tgt.key}; using the default template {template}")
        tmpl = T.get_template(template or layer.default_template())
        full = tmpl.check_knobs(layer, tgt, knobs)
        sched, live = tmpl.record(layer, tgt, full)
    built = backend.build(live, tgt)
    k = Kernel(layer, tgt, sched, built, live.script())
    if missing:
        k._built = _Refuse(tgt, missing)
    return k


class _Refuse:
    """Stands in for a kernel whose code needs CPU features this host lacks."""

    def __init__(self, tgt, missing):
        self.msg = (f"kernel built for {tgt.name} ({tgt.mcpu}) uses CPU features this host lacks: "
                    f"{', '.join(missing)}; running it would die of an illegal instruction")

    def __call__(self, *a):
        raise TargetError(self.msg)

    time = __call__


def _best_record(layer, tgt, log):
    """(template, knobs) of the best verified tuning record, if the tuning database has one."""
    try:
        from .tune import database
    except ImportError:
        return None
    find = getattr(database, "best_record", None)
    return find(layer, tgt, log) if find else None
