"""LossDeltaKernel: the compiled loss-delta layer, composed of compiled TE functions and numpy glue.

One call runs:  forward (TE "mismatch" [+ "cost"])  ->  analyse (numpy, O(B*P*O))  ->  deltas (TE "gather" +
"dsum", or "delta" per example)  ->  FC deltas (numpy, O(B*classes*S*O)). The hot paths (the XOR-popcount
forward conv, and the sparse AND-popcount "GEMM" with its per-weight lookup) are TVM kernels scheduled by
templates in schedules/loss_delta/; the glue is linear in the forward output, never per weight.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .. import bits as _bits
from .. import target as _target
from ..errors import ScheduleError, TargetError
from ..kernel import Timing, aligned, aligned_empty
from .loss_delta import LossDeltas

FORWARD_TEMPLATE = "loss_delta/forward"
DELTAS_TEMPLATE = "loss_delta/deltas"


def _pack(bits, dtype) -> np.ndarray:
    """0/1 uint8 bits (..., C) -> aligned packed words (..., ceil(C / word bits)) of `dtype` (uint8/16/32/64,
    little-endian, zero pad bits: as cs.bits.pack). One flat np.packbits over whole bytes: 6 us per 32x32x32
    image (1 thread, Zen 3, core pinned), where packbits along the last axis of a 4-D array took 30 us."""
    dt = np.dtype(dtype)
    C = bits.shape[-1]
    lead = bits.shape[:-1]
    if C % 8:
        padded = np.zeros(lead + (C + (-C) % 8,), np.uint8)
        padded[..., :C] = bits
        bits, C = padded, padded.shape[-1]
    nb, nw = C // 8, _bits.words(C, 8 * dt.itemsize)
    by = np.packbits(bits.reshape(-1), bitorder="little").reshape(lead + (nb,))
    out = aligned_empty(lead + (nw,), dt)
    ob = out.view(np.uint8).reshape(lead + (nw * dt.itemsize,))
    if nw * dt.itemsize != nb:
        ob[..., nb:] = 0
    ob[..., :nb] = by
    return out


_KBOUNDS = {}


def _kbound(k: int) -> np.ndarray:
    if k not in _KBOUNDS:
        _KBOUNDS[k] = aligned_empty((k,), "int32")
        _KBOUNDS[k][:] = 0
    return _KBOUNDS[k]


class _Part:
    """One compiled function of the pipeline: its recorded Schedule and the built code."""

    def __init__(self, schedule, built, script):
        self.schedule, self.built, self.script = schedule, built, script


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

    def __init__(self, layer, target, parts: dict, deltas_recipe):
        self.layer, self.target, self._parts = layer, target, parts
        self._deltas_recipe = deltas_recipe       # (template, knobs): builds "deltas_none" on first use
        from ..backend.loss_delta import build_classify
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
            out += [f"## {name}", p.schedule.text(), "", p.script]
        return "\n".join(out)

    # ------------------------------------------------------------------ running
    def _part(self, name):
        if name not in self._parts:
            tmpl, knobs = self._deltas_recipe
            self._parts[name] = _build(self.layer, self.target, tmpl, knobs, algorithm=name)
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
        if isinstance(self._parts["forward"].built, _Refuse):
            self._parts["forward"].built()
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

    def benchmark(self, repeat: int = 7, min_repeat_ms: int = 0, arrays=None) -> Timing:
        """Wall time of whole calls (numpy glue included) on random (or given) inputs of batch layer.n (or the
        given arrays' batch): `repeat` measurements, each the mean of enough calls to last `min_repeat_ms`."""
        from ..backend import num_threads, peaks
        L = self.layer
        arrays = arrays if arrays is not None else L.random_inputs()
        t0 = time.perf_counter()
        self(*arrays)
        first = time.perf_counter() - t0
        number = max(1, int(np.ceil(min_repeat_ms * 1e-3 / max(first, 1e-6)))) if min_repeat_ms else 1
        ms = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                self(*arrays)
            ms.append((time.perf_counter() - t0) * 1e3 / number)
        ms = np.array(ms)
        med = float(np.median(ms))
        ops = int(np.shape(arrays[0])[0]) * L.ph * L.pw * L.cout * 9 * L.cin      # the batch actually run
        threads = num_threads()
        peak = peaks.bit_peak(self.target, threads)
        return Timing(med, float(np.percentile(ms, 10)), float(np.percentile(ms, 90)), len(ms), threads, ops,
                      "G bit-MAC/s", ops / (med * 1e-3) / 1e9, peak.value, peak.measured, peak.source)


class _Refuse:
    def __init__(self, msg):
        self.msg = msg

    def __call__(self, *a):
        raise TargetError(self.msg)


def _build(layer, tgt, template, knobs, algorithm):
    from .. import backend
    from ..schedule import template as T
    tmpl = T.get_template(template)
    full = tmpl.check_knobs(layer, tgt, knobs)
    sched, live = T.record(layer, tgt, tmpl.ns["schedule"], full, name=tmpl.name, path=str(tmpl.path),
                           algorithm=algorithm)
    return _Part(sched, backend.build(live, tgt), live.script())


def best_recipes(layer, tgt, log=None) -> dict:
    """{part: (template, knobs)} of the fastest verified tuning record of each part ("forward", "deltas") for
    this workload and target key. A LossDelta record times a whole call with one part's candidate and the other
    part at its template defaults (convsched.tune): the parts run one after the other on their own data, so
    the best of each is combined."""
    try:
        from ..schedule import template as T
        from ..tune import database
    except ImportError:
        return {}
    default_tmpl = {"forward": FORWARD_TEMPLATE, "deltas": DELTAS_TEMPLATE}
    defaults = {}
    for alg, name in default_tmpl.items():
        try:
            defaults[alg] = T.get_template(name).defaults(layer, tgt)
        except Exception:
            defaults[alg] = None
    best = {}

    def offer(alg, template, knobs, ms):
        if alg not in best or ms < best[alg][2]:
            best[alg] = (template, dict(knobs), ms)
    for r in database.records_for(layer, tgt, log):
        if not database.is_good(r):
            continue
        try:
            alg = T.get_template(r["template"]).algorithm
        except Exception:
            continue
        alg = alg if alg in ("forward", "deltas") else "deltas"
        ms = r["timing"]["median_ms"]
        offer(alg, r["template"], r["knobs"], ms)
        # a record of one part's default template at its defaults is the whole default configuration: also a
        # sample of the other part's defaults (without it, one noisy sample of the defaults per part decides;
        # 128->128 global picked a delta candidate 0.79x the defaults that way, 1 thread, Zen 3, pinned)
        if r["template"] == default_tmpl[alg] and dict(r["knobs"]) == defaults[alg]:
            other = "deltas" if alg == "forward" else "forward"
            if defaults[other] is not None:
                offer(other, default_tmpl[other], defaults[other], ms)
    return {alg: (t, kn) for alg, (t, kn, _) in best.items()}


def compile_loss_delta(layer, template=None, knobs=None, target="host", schedule=None,
                       log=None) -> LossDeltaKernel:
    """Build the forward and delta kernels. `template` (with `knobs`) replaces the default template of the
    part its ALGORITHM names ("forward", or "deltas" which also serves reduce="none"), the other part keeps
    its defaults. With neither (nor schedule=), each part takes its best verified tuning record for this
    workload and target key (best_recipes; `log` as for cs.compile), else its template's defaults."""
    from .. import backend
    from ..schedule import template as T
    from ..schedule.steps import Schedule
    tgt = _target.get(target)
    missing = tgt.missing_on(_target.host())
    recipes = {"forward": (FORWARD_TEMPLATE, None), "deltas": (DELTAS_TEMPLATE, None)}
    parts = {}
    if schedule is not None:
        if template or knobs:
            raise ScheduleError("give either schedule= or template=/knobs=, not both")
        if not isinstance(schedule, Schedule) or schedule.algorithm not in recipes:
            raise ScheduleError("a LossDelta kernel takes a recorded Schedule of algorithm 'forward' or "
                                "'deltas' (or template=/knobs=)")
        live = T.replay(layer, schedule)
        parts[schedule.algorithm] = _Part(schedule, backend.build(live, tgt), live.script())
    elif template is not None or knobs is not None:
        tmpl = T.get_template(template or DELTAS_TEMPLATE)
        alg = tmpl.algorithm if tmpl.algorithm in recipes else "deltas"
        if tmpl.layer_kind != layer.KIND:
            raise ScheduleError(f"template {tmpl.name} is for {tmpl.layer_kind}, not {layer.KIND}")
        recipes[alg] = (tmpl.name, knobs)
    else:
        tuned = best_recipes(layer, tgt, log)
        recipes.update(tuned)
        if not tuned:
            from ..kernel import _warn_once
            _warn_once((layer.workload_key, tgt.key),
                       f"no tuning record for {layer} on {tgt.key}; using the default templates")
    for alg, (tname, kn) in recipes.items():
        if alg not in parts:
            parts[alg] = _build(layer, tgt, tname, kn, alg)
    k = LossDeltaKernel(layer, tgt, parts, recipes["deltas"])
    if missing:
        msg = (f"kernel built for {tgt.name} ({tgt.mcpu}) uses CPU features this host lacks: "
               f"{', '.join(missing)}; running it would die of an illegal instruction")
        for p in parts.values():
            p.built = _Refuse(msg)
    return k
