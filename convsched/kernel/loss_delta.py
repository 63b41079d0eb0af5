"""LossDeltaKernel: the compiled loss-delta layer, its compiled parts and the numpy glue between them.

One call runs:  arguments (checks, image and weight words: one compiled pass for 0/1 bytes, else numpy)  ->
forward (TE: the XOR-popcount conv, with its classification -- row masks of active and sensitive patches,
per-segment counts -- computed per conv row while the counts are in L1)  ->  head (numpy, O(B*(S*O +
classes)): scores, the per-segment loss terms)  ->  deltas (hand-written TIR: per channel and example, the
segments that can flip, the sums of input bits over their sensitive patches, the loss delta of every
mutation)  ->  FC deltas (numpy, one matrix product). The hot parts (the forward conv, the sparse delta stage)
are compiled; the glue is linear in B*S*O, never per weight.
LOSS_DELTA tells compile() the parts: which templates hold which part's knobs, how to build and assemble them.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np

from .. import bits
from ..backend import num_threads
from ..backend.binary import assembly
from ..backend.loss_delta import build_deltas, build_pack, deltas_script, packable
from ..errors import TargetError
from ..layers.loss_delta import LossDeltas
from ..schedule import Schedule, get_template
from .arrays import aligned_empty
from .parts import MultiPart, Part
from .timing import Timing, time_calls, timing_arguments

FORWARD_TEMPLATE = "loss_delta/forward"
DELTAS_TEMPLATE = "loss_delta/deltas"
SLACK_BYTES = 64        # after packed bits the delta stage reads with 64-bit loads that may pass the last pixel


class _Scratch(threading.local):
    """Work buffers reused across calls (per thread): a fresh allocation is a fresh mmap whose page faults cost
    more than the kernel that fills it."""

    def __init__(self):
        self.bufs = {}

    def get(self, name, shape, dtype) -> np.ndarray:
        b = self.bufs.get(name)
        if b is None or b.shape != tuple(shape) or b.dtype != np.dtype(dtype):
            b = self.bufs[name] = aligned_empty(shape, dtype)
        return b


class _Results(threading.local):
    """Output arrays handed to callers, reused only when nothing outside this pool refers to one any more.

    A call returns new arrays as far as the caller can tell: an array (or a view of it, which refers to its
    base) that the caller still holds is never written again. But `d = k(...)` in a loop drops the previous
    result, and writing into it again avoids a fresh allocation: at 1024 -> 1024 the batch-summed deltas are
    75 MB, a new mmap whose first touch cost ~21 ms a call here (4K page faults under KVM; Xeon "rocketlake",
    2026-12-01), more than the delta stage."""

    KEEP = 2     # arrays kept per shape: the one the caller holds and the one being refilled

    def __init__(self):
        self.pool = {}

    def get(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        arrays = self.pool.setdefault(key, [])
        for entry in arrays:
            # Every view a caller holds refers to the memory's owner (numpy collapses a view of a view to the
            # owner), so the owner's references tell: this entry, its array's base, and getrefcount's argument.
            if sys.getrefcount(entry[0]) <= 3:
                return entry[1].view()                    # a new view: the caller never holds entry[1] itself
        a = aligned_empty(shape, dtype)
        arrays.append((_owner(a), a))
        del arrays[:-self.KEEP]
        return a.view()


def _owner(a: np.ndarray):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base if a.base is not None else a


class DeltaStage:
    """The compiled sparse delta stage (hand-written TIR, convsched.backend.loss_delta) of one layer and target:
    one function per reduction ("sum", "none"), built on first use with the knobs of its template."""

    def __init__(self, layer, target, knobs: dict, refusal: str | None):
        self.layer, self.target, self.knobs, self.refusal = layer, target, dict(knobs), refusal
        self.cp = layer.forward_words(target) * layer.forward_word_bits(target)
        self._funcs = {}

    def params(self, reduce: str) -> dict:
        L = self.layer
        mb, rw = L.mask_layout
        return dict(h=L.h, w=L.w, cp=self.cp, cout=L.cout, segments=L.segment_grid, seg_shape=L.seg_shape,
                    mask_bits=mb, row_words=rw, seg_threshold=L.seg_threshold, nbands=len(L.bands()),
                    classes=L.classes, unit_bits=self.knobs["unit_bits"], units=self.knobs["units"],
                    compress=self.knobs["compress"], per_example=reduce == "none",
                    ternlog=self.target.has("avx512f") and (self.knobs["unit_bits"] == 512 or
                                                            self.target.has("avx512vl")),
                    ternary=L.weights == "ternary", max_delta=L.max_delta)

    def func(self, reduce: str):
        if reduce not in self._funcs:
            self._funcs[reduce] = build_deltas(self.params(reduce), self.target)
        return self._funcs[reduce]

    def __call__(self, reduce: str, *arrays):
        if self.refusal:
            raise TargetError(self.refusal)
        self.func(reduce)(*arrays)

    @property
    def executable(self):
        """The batch-sum function's compiled module (its assembly: backend.binary.assembly)."""
        return self.func("sum").executable

    def script(self) -> str:
        return deltas_script(self.params("sum"))


class LossDeltaKernel:
    """k(images, labels, conv_w, fc_w, reduce="sum") -> LossDeltas(conv, fc). See convsched.layers.loss_delta."""

    def __init__(self, layer, target, parts: dict, recipes: dict, refusal: str | None = None):
        self.layer, self.target, self._parts = layer, target, parts
        self._refusal = refusal
        self._forward = parts["forward"].built
        self._deltas = parts["deltas"].built
        self.word_bits = layer.forward_word_bits(target)
        self._image_words = layer.forward_words(target)
        self._pack = ({"images": build_pack(layer.h * layer.w, layer.cin, target),
                       "weights": build_pack(9, layer.cin, target)}      # the O channels as a batch (threads)
                      if packable(layer.cin) and not refusal else None)
        self._scratch = _Scratch()
        self._results = _Results()
        self._fc_masks = None
        self.source = "compiled"

    @property
    def schedule(self):
        """The recorded Schedule of the delta stage (its knobs); all parts: .schedules."""
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

    def assembly(self, part: str = "deltas") -> str:
        """The assembly of a part ("forward" or "deltas"), e.g. to check vpopcntq / vpcompressd in a build for a
        CPU the host cannot run."""
        return assembly(self._parts[part].built)

    # ------------------------------------------------------------------ the stages of a call
    def arguments(self, images, labels, conv_w, fc_w) -> tuple:
        """(xb, x_words, labels, forward weights, delta weight planes, fc): the arguments checked as
        LossDelta.canon_inputs does and packed into this thread's buffers. xb: the image bits as bytes with
        slack (the delta stage reads them), x_words: the forward's view of the same bytes; the forward's weight
        words are laid out (3, 3, cw, O), the delta stage's planes (O, 3, 3, Cp) as bytes. 0/1 bytes (uint8 or
        bool) of a supported width are checked and packed in one compiled pass (backend.loss_delta.pack_func);
        anything else goes through bits.as_bits and numpy."""
        L = self.layer
        xb, xw = self._images(images)
        lab = L.canon_labels(labels, xw.shape[0])
        wfwd, dplanes = self._weights(conv_w, xw.dtype)
        return xb, xw, lab, wfwd, dplanes, L.canon_fc(fc_w)

    def _packs(self, a, shape) -> bool:
        """Whether the compiled pack takes array a of logical shape `shape` (batch axis free when None)."""
        return (self._pack is not None and a.dtype in (np.bool_, np.uint8) and a.flags.c_contiguous and a.size > 0
                and a.ndim == len(shape) and all(d is None or d == e for d, e in zip(shape, a.shape)))

    def _images(self, images) -> tuple:
        L = self.layer
        a = np.asarray(images)
        if self._packs(a, (None, L.h, L.w, L.cin)):
            xb, xw = self._image_buffers(a.shape[0])
            bad = self._scratch.get("bad", (a.shape[0],), "uint8")
            self._pack["images"](a.view(np.uint8).reshape(-1), xb, bad)
            if bad.any():
                bits.as_bits(a, (L.h, L.w, L.cin), "images", batch=True)     # raises the usual error
            return xb, xw
        x = bits.as_bits(a, (L.h, L.w, L.cin), "images", batch=True)
        if x.shape[0] == 0:
            raise ValueError("LossDelta kernel: the batch is empty")
        xb, xw = self._image_buffers(x.shape[0])
        bits.pack(x, dtype=xw.dtype, out=xw, validate=False)
        return xb, xw

    def _image_buffers(self, batch: int) -> tuple:
        L = self.layer
        dt, cw = np.dtype(f"uint{self.word_bits}"), self._image_words
        nbytes = batch * L.h * L.w * cw * dt.itemsize
        xb = self._scratch.get("x_bytes", (nbytes + SLACK_BYTES,), "uint8")
        return xb, xb[:nbytes].view(dt).reshape(batch, L.h, L.w, cw)

    def _weights(self, conv_w, dt) -> tuple:
        """(the forward's weight words [, zeros per channel], the delta stage's weight planes as bytes)."""
        L, S = self.layer, self._scratch
        cw = bits.words(L.cin, dt.itemsize * 8)
        wbytes = L.cout * 9 * cw * dt.itemsize

        def plane(i):
            pb = S.get(f"w_bytes{i}", (wbytes + SLACK_BYTES,), "uint8")
            return pb, pb[:wbytes].view(dt).reshape(L.cout, 3, 3, cw)
        a = np.asarray(conv_w)
        if L.weights == "binary" and self._packs(a, (L.cout, 3, 3, L.cin)):
            pb, pw = plane(0)
            bad = S.get("w_bad", (L.cout,), "uint8")
            self._pack["weights"](a.view(np.uint8).reshape(-1), pb, bad)
            if bad.any():
                L.canon_conv_w(a)                                             # raises the usual error
            planes = [(pb, pw)]
        else:
            w = L.canon_conv_w(a)
            planes = []
            for i, p in enumerate([w] if L.weights == "binary" else [(w == 1).view(np.uint8), (w == -1).view(np.uint8)]):
                pb, pw = plane(i)
                bits.pack(p, dtype=dt, out=pw, validate=False)
                planes.append((pb, pw))
        fwd = []
        for i, (pb, pw) in enumerate(planes):
            tw = S.get(f"w_words{i}", (3, 3, cw, L.cout), dt)
            tw[...] = pw.transpose(1, 2, 3, 0)          # o innermost: the forward conv vectorizes over it
            fwd.append(tw)
        dplanes = [pb for pb, _ in planes]
        if L.weights == "ternary":
            zc = S.get("w_zeros", (L.cout,), "int32")
            zc[...] = (w == 0).reshape(L.cout, -1).sum(1)
            fwd.append(zc)
        else:
            dplanes.append(dplanes[0])                  # the delta stage's second plane is unused
        return fwd, dplanes

    def forward(self, fwd_args) -> tuple:
        """rowbits and stats (the forward part's outputs, this thread's work buffers: the next call overwrites
        them); see LossDelta._declare_forward."""
        L, S = self.layer, self._scratch
        B = fwd_args[0].shape[0]
        mb, rw = L.mask_layout
        rowbits = S.get("rowbits", (B, 1 + len(L.bands()), L.used_patches[0], L.segment_grid[1], rw, L.cout),
                        f"uint{mb}")
        stats = S.get("stats", (B, L.nseg, L.nflags, L.cout), "int32")
        self._forward(*fwd_args, rowbits, stats)
        return rowbits, stats

    def head(self, stats, labels, fc) -> tuple:
        """(old pooled bits (B, S, O) uint8, a, fcm): LossDelta.class_scores and class_masks on the forward's
        counts; fc's masks are kept while fc's bytes stay the same (a dozen numpy calls a batch: ~1 us an
        example at 32->32 with 64 examples)."""
        L = self.layer
        old = (stats[:, :, 0] > L.seg_threshold).view(np.uint8)
        key, cached = fc.tobytes(), self._fc_masks          # (one read: another thread may replace it)
        if cached is None or cached[0] != key:
            cached = self._fc_masks = (key, L.class_masks(fc))
        return old, L.class_scores(old, labels, fc), cached[1]

    def deltas(self, reduce, xb, dplanes, stats, rowbits, a, fcm) -> np.ndarray:
        """The conv deltas: (O, 3, 3, C) [ternary: + (3,)] summed, or with a leading batch axis."""
        L = self.layer
        B = stats.shape[0]
        nt = 3 if L.weights == "ternary" else 1
        cp = self._deltas.cp
        shape = (nt, L.cout, 3, 3 * cp) if reduce == "sum" else (B, nt, L.cout, 3, 3 * cp)
        direct = nt == 1 and cp == L.cin          # the stage's output is the result itself
        out = self._results.get(shape, "int64") if direct else self._scratch.get("deltas_" + reduce, shape, "int64")
        self._deltas(reduce, xb, dplanes[0], dplanes[1], stats, rowbits, a, fcm, out)
        lead = () if reduce == "sum" else (B,)
        out = out.reshape(lead + (nt, L.cout, 3, 3, cp))
        if direct:
            return out.reshape(lead + L.conv_shape)
        conv = out[..., :L.cin]                    # pad channels of the words carry nothing
        if nt == 1:
            return np.ascontiguousarray(conv[..., 0, :, :, :, :])
        return np.ascontiguousarray(np.moveaxis(conv, len(lead), -1))

    def __call__(self, images, labels, conv_w, fc_w, reduce: str = "sum") -> LossDeltas:
        if reduce not in ("sum", "none"):
            raise ValueError(f"LossDelta kernel: reduce must be 'sum' or 'none', got {reduce!r}")
        if self._refusal:
            raise TargetError(self._refusal)
        L = self.layer
        xb, xw, lab, wfwd, dplanes, fc = self.arguments(images, labels, conv_w, fc_w)
        rowbits, stats = self.forward([xw] + wfwd)
        old, a, fcm = self.head(stats, lab, fc)
        conv = self.deltas(reduce, xb, dplanes, stats, rowbits, a, fcm)
        return LossDeltas(conv, L.fc_deltas_of(a, old, fc, reduce))

    def profile(self, arrays=None, repeat: int = 5) -> dict:
        """Best-of-`repeat` milliseconds of each stage of one batch-summed call: args (checking the arguments,
        packing images and weights), forward (the conv and its classification), head, deltas, fc, total."""
        repeat, _ = timing_arguments(repeat, 0)
        L = self.layer
        arrays = arrays if arrays is not None else L.random_inputs()
        best = {}

        def tick(name, t0):
            best[name] = min(best.get(name, 1e30), (time.perf_counter() - t0) * 1e3)

        for _ in range(repeat):
            t_all = t0 = time.perf_counter()
            xb, xw, lab, wfwd, dplanes, fc = self.arguments(*arrays)
            tick("args", t0)
            t0 = time.perf_counter()
            rowbits, stats = self.forward([xw] + wfwd)
            tick("forward", t0)
            t0 = time.perf_counter()
            old, a, fcm = self.head(stats, lab, fc)
            tick("head", t0)
            t0 = time.perf_counter()
            conv = self.deltas("sum", xb, dplanes, stats, rowbits, a, fcm)
            tick("deltas", t0)
            t0 = time.perf_counter()
            L.fc_deltas_of(a, old, fc, "sum")
            tick("fc", t0)
            tick("total", t_all)
            del conv
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
    """The part a loss-delta template schedules: "forward" (a forward declaration), else "deltas"."""
    try:
        algorithm = get_template(template).algorithm
    except Exception:            # a template that no longer loads: its records are ignored
        return None
    return "forward" if algorithm.startswith("forward") else "deltas"


def _algorithm(part: str, layer, target) -> str | None:
    """The forward part compiles the declaration of the target's word (LossDelta.forward_algorithm)."""
    return layer.forward_algorithm(target) if part == "forward" else None


def _build(part: str, layer, target, recipe, refusal) -> Part | None:
    """The delta stage is hand-written TIR: its template holds the knobs (defaults from the target model),
    nothing to record on a declaration."""
    if part != "deltas":
        return None
    if isinstance(recipe.schedule, Schedule):
        tmpl, knobs = get_template(recipe.schedule.template), recipe.schedule.knob_dict
    else:
        tmpl, knobs = get_template(recipe.template or DELTAS_TEMPLATE), recipe.knobs
    knobs = tmpl.check_knobs(layer, target, knobs)
    stage = DeltaStage(layer, target, knobs, refusal)
    stage.func("sum")
    sched = Schedule((), tmpl.name, tuple(sorted(knobs.items())), tmpl.algorithm)
    return Part(sched, stage, stage.script())


LOSS_DELTA = MultiPart(parts={"forward": FORWARD_TEMPLATE, "deltas": DELTAS_TEMPLATE}, primary="deltas",
                       part_of=part_of, assemble=LossDeltaKernel, algorithm=_algorithm, build=_build)
