"""LossDeltaKernel: the compiled loss-delta layer, its compiled parts and the numpy glue between them.

One call runs:  forward (TE "mismatch" [+ "cost"])  ->  classify (TIR)  ->  analyse (numpy, O(B*S*O))  ->
deltas (TE "gather" + "dsum", or "delta" per example)  ->  FC deltas (numpy, O(B*classes*S*O)). The hot paths
(the XOR-popcount forward conv, and the sparse AND-popcount "GEMM" with its per-weight lookup) are TVM
kernels scheduled by templates in schedules/loss_delta/; the glue is linear in the forward output, never per
weight. LOSS_DELTA tells compile() the parts: which templates schedule which part, and how to assemble them.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .. import bits
from ..backend import num_threads
from ..backend.loss_delta import build_classify
from ..errors import TargetError
from ..layers.loss_delta import LossDeltas
from ..schedule import get_template
from .arrays import aligned, aligned_empty
from .parts import MultiPart, build_part
from .timing import Timing, time_calls, timing_arguments

FORWARD_TEMPLATE = "loss_delta/forward"
DELTAS_TEMPLATE = "loss_delta/deltas"


def _pack(bits_, dtype) -> np.ndarray:
    """0/1 uint8 bits (..., C), already checked -> aligned packed words (..., ceil(C / word bits)) of `dtype`."""
    dt = np.dtype(dtype)
    out = aligned_empty(bits_.shape[:-1] + (bits.words(bits_.shape[-1], 8 * dt.itemsize),), dt)
    return bits.pack(bits_, dtype=dt, out=out, validate=False)


_KBOUNDS = {}


def _kbound(k: int) -> np.ndarray:
    if k not in _KBOUNDS:
        _KBOUNDS[k] = aligned_empty((k,), "int32")
        _KBOUNDS[k][:] = 0
    return _KBOUNDS[k]


class _Scratch(threading.local):
    """Work buffers reused across calls (per thread): counts and lists are ~15 MB each at 1024 -> 1024, and a
    fresh allocation is a fresh mmap whose page faults cost more than the kernel that fills it."""

    def __init__(self):
        self.bufs = {}

    def get(self, name, shape, dtype) -> np.ndarray:
        b = self.bufs.get(name)
        if b is None or b.shape != tuple(shape) or b.dtype != np.dtype(dtype):
            b = self.bufs[name] = aligned_empty(shape, dtype)
        return b


class LossDeltaKernel:
    """k(images, labels, conv_w, fc_w, reduce="sum") -> LossDeltas(conv, fc). See convsched.layers.loss_delta."""

    def __init__(self, layer, target, parts: dict, recipes: dict, refusal: str | None = None):
        self.layer, self.target, self._parts = layer, target, parts
        self._deltas_recipe = recipes["deltas"]   # also builds "deltas_none" (per example) on first use
        self._refusal = refusal
        self._classify = build_classify(layer, target)
        self._scratch = _Scratch()
        self.source = "compiled"

    @property
    def schedule(self):
        """The recorded Schedule of the delta kernel (the one worth tuning); all parts: .schedules."""
        return self._parts["deltas"].schedule

    @property
    def schedules(self) -> dict:
        return {k: p.schedule for k, p in self._parts.items()}

    def __repr__(self):
        return (f"LossDeltaKernel({self.layer}, forward={self._parts['forward'].schedule.template!r}, "
                f"deltas={self._parts['deltas'].schedule.template!r}, target={self.target.key})")

    def describe(self) -> str:
        out = [f"# {self}"]
        for name, p in self._parts.items():
            out += [f"## {name}", p.schedule.text(), "", p.loop_nest]
        return "\n".join(out)

    # ------------------------------------------------------------------ running
    def _part(self, name):
        if name not in self._parts:
            self._parts[name] = build_part(self.layer, self.target, self._deltas_recipe, self._refusal,
                                           algorithm=name)
        return self._parts[name]

    def forward(self, x, w):
        """Forward counts (B, PH, PW, O) int32 (TE), then classify (TIR): (stats, lists); see
        convsched.backend.loss_delta.classify_func. The arrays are this kernel's work buffers (per thread):
        the next call on the same thread overwrites them."""
        return self.classify(self.counts(*self.pack(x, w)))

    def pack(self, x, w) -> list:
        """The forward kernel's inputs: packed image words, then weight words (ternary: plus, minus, zeros)."""
        L = self.layer
        wd = np.dtype(L.word_dtype)
        if L.weights == "binary":
            return [_pack(x, wd), aligned(_pack(w, wd).transpose(1, 2, 3, 0))]
        wp = aligned(_pack((w == 1).view(np.uint8), wd).transpose(1, 2, 3, 0))
        wm = aligned(_pack((w == -1).view(np.uint8), wd).transpose(1, 2, 3, 0))
        zc = aligned((w == 0).reshape(L.cout, -1).sum(1), np.int32)
        return [_pack(x, wd), wp, wm, zc]

    def counts(self, *packed) -> np.ndarray:
        L = self.layer
        counts = self._scratch.get("counts", (packed[0].shape[0], L.ph, L.pw, L.cout), "int32")
        self._parts["forward"].built(*packed, counts)
        return counts

    def classify(self, counts):
        L = self.layer
        B, nb = counts.shape[0], len(L.bands())
        stats = self._scratch.get("stats", (B, L.nseg, 1 + 2 * nb, L.cout), "int32")
        lists = self._scratch.get("lists", (B, L.nseg, nb, L.cout, L.seg_shape[0] * L.seg_shape[1]), "int32")
        self._classify(counts, stats, lists)
        return stats, lists

    def delta_args(self, x, w, info, lists) -> list:
        """The delta kernel's input arrays, in declaration order."""
        L = self.layer
        B = x.shape[0]
        args = [aligned(x, np.uint8).reshape(B, L.h * L.w, L.cin), lists]
        for bd in info["bands"]:
            # the gather loops to the longest live list (the length of this otherwise unused argument)
            args += [_kbound(max(1, int(bd["s"].max()))), aligned(bd["on"], np.int32), aligned(bd["s"], np.int32)]
        args.append(aligned(info["old"], np.int32))
        live = self._scratch.get("live", (B, L.cout), "int32")
        live[...] = np.logical_or.reduce([(bd["s"] > 0).any(1) for bd in info["bands"]])
        args.append(live)
        args.append(aligned(w, np.uint8 if L.weights == "binary" else np.int8))
        if "table" in info:
            args.append(aligned(info["table"], np.int32))
        else:
            args += [aligned(info["fmask"], np.int32), aligned(info["a2"], np.int32)]
        return args

    def __call__(self, images, labels, conv_w, fc_w, reduce: str = "sum") -> LossDeltas:
        if reduce not in ("sum", "none"):
            raise ValueError(f"LossDelta kernel: reduce must be 'sum' or 'none', got {reduce!r}")
        if self._refusal:
            raise TargetError(self._refusal)
        L = self.layer
        x, lab, w, fc = L.canon_inputs(images, labels, conv_w, fc_w)
        if x.shape[0] == 0:
            raise ValueError("LossDelta kernel: the batch is empty")
        stats, lists = self.forward(x, w)
        info = L.analyse(stats, lab, fc)
        args = self.delta_args(x, w, info, lists)
        part = self._part("deltas" if reduce == "sum" else "deltas_none")
        shape = L.conv_shape if reduce == "sum" else (x.shape[0],) + L.conv_shape
        conv = aligned_empty(shape, "int64")
        part.built(*args, conv)
        dfc = L.fc_deltas(info)
        return LossDeltas(conv, dfc.sum(0) if reduce == "sum" else dfc)

    def profile(self, arrays=None, repeat: int = 5) -> dict:
        """Best-of-`repeat` milliseconds of each part of one call: pack, conv (the forward XOR-popcount conv),
        classify, analyse, lists (the delta kernel's arguments), deltas, fc, total."""
        repeat, _ = timing_arguments(repeat, 0)
        L = self.layer
        arrays = arrays if arrays is not None else L.random_inputs()
        x, lab, w, fc = L.canon_inputs(*arrays)
        best = {}

        def tick(name, t0):
            best[name] = min(best.get(name, 1e30), (time.perf_counter() - t0) * 1e3)

        conv = aligned_empty(L.conv_shape, "int64")
        part = self._part("deltas")
        for _ in range(repeat):
            t_all = time.perf_counter()
            t0 = time.perf_counter()
            packed = self.pack(x, w)
            tick("pack", t0)
            t0 = time.perf_counter()
            counts = self.counts(*packed)
            tick("conv", t0)
            t0 = time.perf_counter()
            fwd = self.classify(counts)
            tick("classify", t0)
            t0 = time.perf_counter()
            info = L.analyse(fwd[0], lab, fc)
            tick("analyse", t0)
            t0 = time.perf_counter()
            args = self.delta_args(x, w, info, fwd[1])
            tick("lists", t0)
            t0 = time.perf_counter()
            part.built(*args, conv)
            tick("deltas", t0)
            t0 = time.perf_counter()
            L.fc_deltas(info).sum(0)
            tick("fc", t0)
            tick("total", t_all)
        return best

    def benchmark(self, repeat: int = 7, min_repeat_ms: int = 0, arrays=None, call_time: bool = True) -> Timing:
        """Wall time of whole calls (numpy glue included) on random (or given) inputs of batch layer.n (or the
        given arrays' batch): `repeat` measurements, each the mean of enough calls to last `min_repeat_ms`.
        The glue is part of the algorithm, so the kernel time is the Python call time (call_time: also report
        it as such)."""
        repeat, min_repeat_ms = timing_arguments(repeat, min_repeat_ms)
        L = self.layer
        arrays = arrays if arrays is not None else L.random_inputs()
        ms = time_calls(self, arrays, repeat, min_repeat_ms)
        ops = int(np.shape(arrays[0])[0]) * L.ph * L.pw * L.cout * 9 * L.cin      # the batch actually run
        t = Timing.from_ms(ms, num_threads(), ops, L.op_unit, self.target)
        return t.with_calls(ms) if call_time else t


def part_of(template: str) -> str | None:
    """The part a loss-delta template schedules: "forward", else "deltas" (also serving reduce="none")."""
    try:
        algorithm = get_template(template).algorithm
    except Exception:            # a template that no longer loads: its records are ignored
        return None
    return "forward" if algorithm == "forward" else "deltas"


LOSS_DELTA = MultiPart(parts={"forward": FORWARD_TEMPLATE, "deltas": DELTAS_TEMPLATE}, primary="deltas",
                       part_of=part_of, assemble=LossDeltaKernel)
