"""Timing: how fast a kernel ran, as every part of convsched reports it (Kernel.benchmark, the loss-delta
kernel, the tuner's records, `convsched bench`), and against which ceiling: the peak measured on this host
with the target's widest vectors (convsched.backend.peaks), or the target model's figure, labelled, for a
CPU this host cannot run."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from ..backend import peaks

UNITS = {"FLOP": "GFLOP/s", "bit-MAC": "G bit-MAC/s"}


def timing_arguments(repeat, min_repeat_ms) -> tuple[int, int]:
    """benchmark()'s repeat (an integer >= 1) and min_repeat_ms (a finite number >= 0, rounded up to whole
    milliseconds as TVM's timer takes them); ValueError naming the argument otherwise."""
    if not isinstance(repeat, (int, np.integer)) or isinstance(repeat, (bool, np.bool_)) or repeat < 1:
        raise ValueError(f"benchmark: repeat must be an integer >= 1, got {repeat!r}")
    if (not isinstance(min_repeat_ms, (int, float, np.integer, np.floating)) or isinstance(min_repeat_ms, bool)
            or not math.isfinite(min_repeat_ms) or min_repeat_ms < 0):
        raise ValueError(f"benchmark: min_repeat_ms must be a number >= 0, got {min_repeat_ms!r}")
    return int(repeat), int(math.ceil(min_repeat_ms))


def unit_of(op_unit: str) -> str:
    """The throughput unit of a layer's op_unit: "GFLOP/s", "G bit-MAC/s", "GOP/s", ..."""
    return UNITS.get(op_unit, f"G{op_unit}/s")


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    threads: int | None      # None: measured elsewhere (an RPC server), thread count unknown here
    ops: int                 # ops per call: layer.ops() x flops_per_op (the batch actually run)
    unit: str                # "GFLOP/s", "G bit-MAC/s", ...
    rate: float              # ops per second at the median, in giga-units
    peak: float | None       # the machine's ceiling in the same unit, if known
    peak_measured: bool = False   # measured on this host (convsched.backend.peaks), or the target's model
    peak_source: str = ""         # how the ceiling was obtained (CPU, method, date)
    effective: bool = False       # rate counts the direct algorithm's ops (Winograd does fewer multiplies)
    # Whole Python calls k(*arrays) on the same inputs (argument checks, copies, output allocation, the call
    # itself): what a caller pays. None where only the compiled code was timed (the tuner's measurements).
    call_median_ms: float | None = None
    call_p10_ms: float | None = None
    call_p90_ms: float | None = None

    @classmethod
    def from_ms(cls, ms, threads: int | None, ops: int, op_unit: str, target=None, effective: bool = False,
                direct: bool = False) -> "Timing":
        """Median and p10/p90 of per-call times in milliseconds; the rate at the median. effective: the ops
        are the direct algorithm's (Winograd), so the rate may pass the peak. direct: ops is the work really
        done, so the rate cannot pass an honest peak (a cached peak below it is measured again)."""
        ms = np.asarray(ms, dtype=np.float64)
        med = float(np.median(ms))
        rate = ops / (med * 1e-3) / 1e9
        peak = None if target is None or threads is None else \
            peaks.peak_for(target, op_unit, threads, at_least=rate if direct and not effective else None)
        return cls(med, float(np.percentile(ms, 10)), float(np.percentile(ms, 90)), len(ms), threads, ops,
                   unit_of(op_unit), rate, peak.value if peak else None, bool(peak and peak.measured),
                   peak.source if peak else "", effective)

    def with_calls(self, ms) -> "Timing":
        """This timing plus the median and p10/p90 of whole Python calls (milliseconds per call)."""
        ms = np.asarray(ms, dtype=np.float64)
        return replace(self, call_median_ms=float(np.median(ms)), call_p10_ms=float(np.percentile(ms, 10)),
                       call_p90_ms=float(np.percentile(ms, 90)))

    @property
    def overhead_us(self) -> float | None:
        """Microseconds a Python call adds to the compiled code (medians; noise can make it slightly negative)."""
        return None if self.call_median_ms is None else 1e3 * (self.call_median_ms - self.median_ms)

    @property
    def pct_of_peak(self) -> float | None:
        return None if not self.peak else 100.0 * self.rate / self.peak

    def record_fields(self) -> dict:
        """The timing as a tuning record stores it."""
        d = {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "runs": self.runs}
        return d if self.threads is None else {**d, "threads": self.threads}

    def __str__(self):
        threads = "" if self.threads is None else f", {self.threads} threads"
        s = (f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, {self.runs} runs"
             f"{threads})  {self.rate:.1f} {self.unit}")
        if self.effective:
            s = s.replace(f" {self.unit}", f" effective {self.unit}")
        if self.peak:
            kind = "measured" if self.peak_measured else "modelled"
            s += f"  = {self.pct_of_peak:.0f}% of the {kind} peak {self.peak:.0f}"
            if self.effective:
                s += " (effective: direct-conv ops / time; the algorithm does fewer, so it may pass 100%)"
        if self.call_median_ms is not None:
            s += f"; Python call {self.call_median_ms:.3f} ms ({self.overhead_us:+.1f} us)"
        return s


def time_calls(fn, arrays, repeat: int, min_repeat_ms: float) -> list:
    """Milliseconds per call of fn(*arrays), one entry per repeat (each the mean of enough calls to last
    min_repeat_ms). The first call warms up and sizes the repeats (a loss-delta call can take seconds)."""
    t0 = time.perf_counter()
    fn(*arrays)
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(np.ceil(min_repeat_ms * 1e-3 / one))) if min_repeat_ms else 1
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*arrays)
        out.append((time.perf_counter() - t0) * 1e3 / number)
    return out
