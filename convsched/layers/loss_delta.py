"""Loss deltas of every single-weight mutation of a binary (or ternary) 3x3 conv under an objective head.

Seed 000 (is8ac/bnn). For one H x W image of C-bit pixels, conv weights O x 3 x 3 x C and an FC head, the
layer computes, for EVERY conv weight and every FC weight, how the integer loss changes when that one weight
is mutated, summed over a batch (or per example). Semantics (DESIGN.md, "The loss-delta layer"):

- Bits: bit 1 = +1, bit 0 = -1, packed little-endian along channels (cs.bits). Patch p = (i, j) covers image
  rows i..i+2 and columns j..j+2; there are (H-2) x (W-2) patches; patch bit index = (di, dj, c).
- Binary weights: act[p, o] = popcount(w_o XOR patch_p) > T, T = floor(9C / 2).
  Ternary weights (int8 -1/0/+1): cost = sum over the 9C bits of 2*(s XOR x) for +-1 (s = 1 for +1), 1 for 0;
  act = cost > T with T = 9C; every weight has two mutations (the other two states).
- Head "global": pooled[o] = (#active patches) > floor(P / 2), P = (H-2)(W-2).
  Head "segmented" (SX, SY): the patch grid is cut into SX x SY segments of floor((H-2)/SX) x floor((W-2)/SY)
  patches from the top-left (leftovers belong to no segment); bit[s, o] = count > floor(n_seg / 2).
- score_k = popcount(fc[k] XOR bits); target_k = #bits if k == label else 0; loss = sum_k (score_k - target_k)^2.
- Output LossDeltas(conv, fc): loss(mutated) - loss, int64. conv: binary (O,3,3,C); ternary (O,3,3,C,3) with
  the last axis the target state (+1, 0, -1), 0 where it is the current state. fc: the shape of fc_w.
  reduce="sum" (default) sums over the batch; reduce="none" keeps a leading batch axis.

reference() is the definition (mutate one weight, recompute the whole loss, subtract): the test oracle.

The fast path (DESIGN.md): a flip changes one channel and moves each patch's count by exactly +-1 (ternary:
+-1 or +-2), so only "sensitive" patches (count T or T+1; ternary band 2: T-1..T+2) can change state, and
after the flip a sensitive patch is on exactly when its input bit equals a known bit bx. The new count of a
segment is ON[s,o] + (bx ? G : S - G), G[s,o,i] = sum over the sensitive patches p of segment s of X[p,i].
Stages of the fast path (TE, scheduled by templates in schedules/loss_delta/):
  algorithm "forward":   "popc" (n, i, j, o; reduce di, dj, cw): XOR-popcount forward counts in the word
                         type (uint8 / uint16 / uint64 words, word_bits), then "mismatch" (int32 cast)
                         [ternary: "cost" (n, i, j, o) = 2 * popc + zeros[o] instead]
  "classify" (hand-written TIR, convsched/backend/loss_delta.py: a data-dependent compaction TE cannot
                         declare): per (example, segment, channel) the active / stay-on / sensitive patch
                         counts and the list of sensitive patches, O(B*P*O)
  numpy glue (O(B*S*O)): pooled bits, skip (b, s, o) rows that cannot change a pooled bit (their count
                         becomes 0, and "live" marks (b, o) pairs with any row left), the per-channel loss
                         lookup table (or per-class masks when there are > 8 segments)
  algorithm "deltas":    "gather" [and "gather2", ternary band 2] (n, s, o, di, dj, c; reduce k): G = the
                         sum of input bits over each row's list of sensitive patches (the sparse form of the
                         AND-popcount GEMM: ~1-10% of patches are sensitive), read from classify's lists in
                         place up to each row's count; "code" (n, o, di, dj, c[, v]):
                         the set of segments each mutation flips; [ternary: "vdelta" (n, o, di, dj, c, v)];
                         "dsum" (o, di, dj, c[, t]; reduce n): the batch sum of the looked-up loss deltas.
  algorithm "deltas_none": the same with "delta" (n, o, di, dj, c[, t]) per example.
The FC deltas are 2 * a_k * e + 1 per FC bit (a_k = score_k - target_k, e = +-1): numpy, O(classes*S*O).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .. import bits as _bits
from .base import Declaration, Layer, TensorSpec, check_positive, pair

TABLE_MAX_SEGMENTS = 8       # up to 2^8 lookup entries per channel; more segments use per-class bit masks
# Ternary: (current state, target state) -> (band, bx): after the mutation a sensitive patch is on iff x == bx.
TERNARY_STATES = (1, 0, -1)  # order of the last output axis
TERNARY_RULES = {(1, 0): (1, 1), (1, -1): (2, 1), (-1, 0): (1, 0), (-1, 1): (2, 0), (0, 1): (1, 0), (0, -1): (1, 1)}


class LossDeltas(NamedTuple):
    conv: np.ndarray
    fc: np.ndarray


@dataclass(frozen=True)
class LossDelta(Layer):
    """See the module docstring. n is the batch used for samples and benchmarks; kernels take any batch."""

    h: int = 32
    w: int = 32
    cin: int = 32
    cout: int = 32
    classes: int = 10
    head: str = "global"
    segments: int | tuple = (1, 1)
    weights: str = "binary"
    n: int = 1

    KIND: ClassVar[str] = "loss_delta"
    op_unit: ClassVar[str] = "bit-MAC"   # ops() = the forward conv's bit-MACs, the floor of the work
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True
    ALGORITHMS: ClassVar[tuple] = ("forward", "deltas", "deltas_none")

    def __post_init__(self):
        check_positive(self, h=self.h, w=self.w, cin=self.cin, cout=self.cout, classes=self.classes, n=self.n)
        if self.h < 3 or self.w < 3:
            raise ValueError(f"LossDelta: a valid 3x3 conv needs h, w >= 3, got {self.h}x{self.w}")
        if self.head not in ("global", "segmented"):
            raise ValueError(f"LossDelta: head must be 'global' or 'segmented', got {self.head!r}")
        if self.weights not in ("binary", "ternary"):
            raise ValueError(f"LossDelta: weights must be 'binary' or 'ternary', got {self.weights!r}")
        seg = pair(self.segments)
        if self.head == "global":
            seg = (1, 1)
        if min(seg) <= 0:
            raise ValueError(f"LossDelta: segments must be positive, got {self.segments}")
        if (self.h - 2) // seg[0] < 1 or (self.w - 2) // seg[1] < 1:
            raise ValueError(f"LossDelta: {seg[0]}x{seg[1]} segments do not fit the {self.h - 2}x{self.w - 2} "
                             f"patch grid")
        object.__setattr__(self, "segments", seg)

    # ------------------------------------------------------------------ geometry
    @property
    def ph(self): return self.h - 2

    @property
    def pw(self): return self.w - 2

    @property
    def nseg(self) -> int:
        return self.segments[0] * self.segments[1]

    @property
    def seg_shape(self) -> tuple:
        """Patches per segment (rows, cols); the global head is one segment of all patches."""
        if self.head == "global":
            return (self.ph, self.pw)
        return (self.ph // self.segments[0], self.pw // self.segments[1])

    @property
    def seg_threshold(self) -> int:
        a, b = self.seg_shape
        return (a * b) // 2

    @property
    def threshold(self) -> int:
        """T: a patch is active when its count exceeds T."""
        return 9 * self.cin if self.weights == "ternary" else (9 * self.cin) // 2

    @property
    def word_bits(self) -> int:
        """Bits per packed word of the forward kernel: uint8 for C <= 8, uint16 for C <= 32, else uint64. AVX2
        popcounts more narrow lanes per vector (on uint8 lanes the emulated popcount is just the vpshufb nibble
        lookups); forward alone, 1 thread, Zen 3, core pinned: 8->32 uint8 7.7 us/example vs 42 as uint32;
        32->32 uint16 (2 words) 35 us vs 42 as uint32; 64->64 uint64 131 us vs 141 as uint16."""
        return 8 if self.cin <= 8 else 16 if self.cin <= 32 else 64

    @property
    def gather_dtype(self) -> str:
        """Lanes of the delta kernel's G sums, which count at most one segment's patches: uint8 when that fits
        (no widening of the input bytes, 32 lanes per AVX2 vector; segmented 2x2 128->128 delta kernel 370 ->
        298 us/example, 1024->1024 12.6 -> 10.1 ms, 1 thread, Zen 3, core pinned), else int16 / int32."""
        nps = self.seg_shape[0] * self.seg_shape[1]
        return "uint8" if nps < 256 else "int16" if nps < 32768 else "int32"

    @property
    def word_dtype(self) -> str:
        return f"uint{self.word_bits}"

    @property
    def cwords(self) -> int:
        return _bits.words(self.cin, self.word_bits)

    @property
    def conv_shape(self) -> tuple:
        s = (self.cout, 3, 3, self.cin)
        return s + (3,) if self.weights == "ternary" else s

    @property
    def fc_shape(self) -> tuple:
        if self.head == "global":
            return (self.classes, self.cout)
        return (self.classes, self.segments[0], self.segments[1], self.cout)

    def n_params(self) -> int:
        """Parameters counted as the seed does: 9*in*out + 10*out (global head), 9*in*out (segmented)."""
        conv = 9 * self.cin * self.cout
        return conv + self.classes * self.cout if self.head == "global" else conv

    # ------------------------------------------------------------------ layer API
    def input_specs(self):
        cw = ("conv_w", (self.cout, 3, 3, self.cin), "int8" if self.weights == "ternary" else "uint8")
        return [TensorSpec("images", (self.n, self.h, self.w, self.cin), "uint8"),
                TensorSpec("labels", (self.n,), "int64"), TensorSpec(*cw),
                TensorSpec("fc_w", self.fc_shape, "uint8")]

    def output_specs(self):
        return [TensorSpec("conv", self.conv_shape, "int64"), TensorSpec("fc", self.fc_shape, "int64")]

    def ops(self) -> int:
        return self.n * self.ph * self.pw * self.cout * 9 * self.cin

    def default_template(self) -> str:
        return "loss_delta/deltas"

    def random_inputs(self, seed: int = 0) -> list:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 2, (self.n, self.h, self.w, self.cin), dtype=np.uint8)
        labels = rng.integers(0, self.classes, self.n).astype(np.int64)
        if self.weights == "ternary":
            cw = rng.integers(-1, 2, (self.cout, 3, 3, self.cin)).astype(np.int8)
        else:
            cw = rng.integers(0, 2, (self.cout, 3, 3, self.cin), dtype=np.uint8)
        fc = rng.integers(0, 2, self.fc_shape, dtype=np.uint8)
        return [x, labels, cw, fc]

    # ------------------------------------------------------------------ tuning hooks (convsched.tune.measure)
    REFERENCE_MAX_WORK: ClassVar[float] = 2e8   # above this (mutations x forward bit-MACs) tuning checks fast_numpy

    def tuning_batch(self) -> int:
        """The batch the tuner checks and times a candidate on: benchmarks/loss_delta.py's batch for this shape
        (64 examples, fewer for big layers, at least 2), not n = 1: a whole call at 32->32 is ~0.1 ms per
        example, and the best schedule of the batch loops depends on the batch."""
        return max(self.n, 2, min(64, 2 ** 22 // (self.cin * self.cout)))

    def tuning_inputs(self, seed: int = 0) -> list:
        from dataclasses import replace
        return replace(self, n=self.tuning_batch()).random_inputs(seed)

    def tuning_reference(self, images, labels, conv_w, fc_w) -> LossDeltas:
        """The tuner's oracle: reference() (the definition: mutate, recompute the whole loss) where that is
        cheap, else fast_numpy() (the fast algorithm in plain numpy, no TVM; tests/test_loss_delta.py checks it
        equals reference() exactly). reference() costs (mutations x forward bit-MACs): ~1e15 at 1024->1024,
        hours; fast_numpy takes ~2 s there. Both are exact, and the comparison is exact (int64)."""
        B = np.shape(images)[0]
        muts = int(np.prod(self.conv_shape)) + int(np.prod(self.fc_shape))
        work = muts * B * self.ph * self.pw * 9 * self.cin * self.cout
        if work <= self.REFERENCE_MAX_WORK:
            return self.reference(images, labels, conv_w, fc_w)
        return self.fast_numpy(images, labels, conv_w, fc_w)

    # ------------------------------------------------------------------ inputs
    def canon_inputs(self, images, labels, conv_w, fc_w):
        """User arrays -> (x uint8 0/1 (B,H,W,C), labels int64 (B,), conv_w uint8 bits or int8 states, fc uint8
        bits (classes, S, O)). Bits may be bool/0-1 integers or packed uint64 words (cs.bits.pack)."""
        x = _bit_array(images, None, (self.h, self.w, self.cin), "images", batch=True)
        B = x.shape[0]
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != B or lab.dtype.kind not in "iu":
            raise ValueError(f"LossDelta: labels must be a 1-D integer array of length {B} (the batch), got "
                             f"dtype {lab.dtype} shape {lab.shape}")
        if B and (lab.min() < 0 or lab.max() >= self.classes):
            raise ValueError(f"LossDelta: labels must lie in [0, {self.classes}), got {lab.min()}..{lab.max()}")
        if self.weights == "ternary":
            w = np.asarray(conv_w)
            if w.shape != (self.cout, 3, 3, self.cin) or w.dtype.kind not in "iu":
                raise ValueError(f"LossDelta: ternary conv_w must be an integer array (-1/0/+1) of shape "
                                 f"{(self.cout, 3, 3, self.cin)}, got dtype {w.dtype} shape {w.shape}")
            if w.size and (w.min() < -1 or w.max() > 1):
                raise ValueError("LossDelta: ternary conv_w values must be -1, 0 or +1")
            w = w.astype(np.int8)
        else:
            w = _bit_array(conv_w, None, (self.cout, 3, 3, self.cin), "conv_w")
        fc = _bit_array(fc_w, None, self.fc_shape, "fc_w")
        return x, lab.astype(np.int64), w, fc.reshape(self.classes, self.nseg, self.cout)

    # ------------------------------------------------------------------ the definition (oracle)
    def patches(self, x) -> np.ndarray:
        """im2col: (B, H-2, W-2, 9C) uint8, bit index (di, dj, c)."""
        v = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))   # B, PH, PW, C, 3, 3
        return np.ascontiguousarray(v.transpose(0, 1, 2, 4, 5, 3)).reshape(x.shape[0], self.ph, self.pw, -1)

    def counts(self, x, w) -> np.ndarray:
        """Forward counts (B, PH, PW, O) int64: mismatches (binary) or cost (ternary)."""
        # float64 products of 0/1 matrices are exact (integers far below 2^53) and use BLAS
        X = self.patches(x).astype(np.float64)
        W = w.reshape(self.cout, -1).astype(np.float64)
        if self.weights == "ternary":
            plus, minus, zero = (W == 1), (W == -1), (W == 0)
            c = 2 * (plus.sum(1) - X @ plus.T.astype(np.float64)) + 2 * (X @ minus.T.astype(np.float64)) + zero.sum(1)
        else:
            c = X.sum(-1, keepdims=True) + W.sum(1) - 2 * (X @ W.T)
        return np.rint(c).astype(np.int64)

    def seg_view(self, a) -> np.ndarray:
        """(B, PH, PW, ...) -> (B, S, n_seg, ...): the patches of each segment (leftovers dropped)."""
        B = a.shape[0]
        rest = a.shape[3:]
        if self.head == "global":
            return a.reshape((B, 1, self.ph * self.pw) + rest)
        (sx, sy), (hs, ws) = self.segments, self.seg_shape
        a = a[:, :sx * hs, :sy * ws].reshape((B, sx, hs, sy, ws) + rest)
        return a.transpose((0, 1, 3, 2, 4) + tuple(range(5, 5 + len(rest)))).reshape((B, sx * sy, hs * ws) + rest)

    def seg_bits(self, act) -> np.ndarray:
        """Active patches (B, PH, PW, O) -> pooled bits (B, S, O)."""
        return (self.seg_view(act).sum(2) > self.seg_threshold).astype(np.uint8)

    def loss_of_bits(self, bits_, labels, fc) -> np.ndarray:
        """(B, S, O) bits -> (B,) int64 loss, and a = score - target (B, classes)."""
        score = (fc[None] != bits_[:, None]).sum((2, 3)).astype(np.int64)
        target = np.where(np.arange(self.classes)[None] == labels[:, None], self.nseg * self.cout, 0)
        a = score - target
        return (a * a).sum(-1), a

    def loss(self, x, labels, w, fc) -> np.ndarray:
        """Per-example loss (B,), from canonical arrays."""
        act = self.counts(x, w) > self.threshold
        return self.loss_of_bits(self.seg_bits(act), labels, fc)[0]

    def reference(self, images, labels, conv_w, fc_w, reduce: str = "sum") -> LossDeltas:
        """The definition: mutate one weight, recompute the whole loss, subtract. Slow; the test oracle."""
        x, lab, w, fc = self.canon_inputs(images, labels, conv_w, fc_w)
        B = x.shape[0]
        base = self.loss(x, lab, w, fc)
        dconv = np.zeros((B,) + self.conv_shape, np.int64)
        for idx in np.ndindex(*w.shape):
            if self.weights == "ternary":
                for t, state in enumerate(TERNARY_STATES):
                    if state != w[idx]:
                        w2 = w.copy()
                        w2[idx] = state
                        dconv[(slice(None),) + idx + (t,)] = self.loss(x, lab, w2, fc) - base
            else:
                w2 = w.copy()
                w2[idx] ^= 1
                dconv[(slice(None),) + idx] = self.loss(x, lab, w2, fc) - base
        dfc = np.zeros((B,) + fc.shape, np.int64)
        for idx in np.ndindex(*fc.shape):
            fc2 = fc.copy()
            fc2[idx] ^= 1
            dfc[(slice(None),) + idx] = self.loss(x, lab, w, fc2) - base
        return self._finish(dconv, dfc.reshape((B,) + self.fc_shape), reduce)

    def _finish(self, dconv, dfc, reduce) -> LossDeltas:
        if reduce == "sum":
            return LossDeltas(dconv.sum(0), dfc.sum(0))
        if reduce == "none":
            return LossDeltas(dconv, dfc)
        raise ValueError(f"LossDelta: reduce must be 'sum' or 'none', got {reduce!r}")

    # ------------------------------------------------------------------ the fast algorithm: numpy glue
    def bands(self) -> list:
        """Sensitive count ranges [lo, hi] per band: a mutation moves a patch's count by +-1 (band 1) or +-2."""
        T = self.threshold
        return [(T, T + 1)] if self.weights == "binary" else [(T, T + 1), (T - 1, T + 2)]

    def stats_of_counts(self, counts):
        """numpy mirror of the forward kernel's outputs, from counts (B, PH, PW, O):
        stats (B, S, NF, O) int32 = [active patches, then per band: ON (count > hi), S (lo <= count <= hi)],
        sensmask (B, S, O, n_seg) uint8 = bit (band - 1) set where the patch is sensitive in that band."""
        c = self.seg_view(counts)                                               # B, S, n_seg, O
        st = [(c > self.threshold).sum(2)]
        mask = np.zeros(c.shape, np.uint8)
        for b, (lo, hi) in enumerate(self.bands()):
            sens = (c >= lo) & (c <= hi)
            st += [(c > hi).sum(2), sens.sum(2)]
            mask |= sens.astype(np.uint8) << b
        return np.stack(st, 2).astype(np.int32), np.ascontiguousarray(np.swapaxes(mask, 2, 3))

    def analyse(self, stats, labels, fc) -> dict:
        """Everything the delta stage needs from the per-segment stats (see stats_of_counts). O(B*S*O) numpy.

        Per band: ON[b,s,o] = patches that stay on whatever the mutation, S = sensitive patches. Rows (b, s, o)
        whose pooled bit cannot change (ON > thr: stays 1; ON + S <= thr: stays 0) are "fixed" and
        neutralised: S = 0, ON = old ? thr + 1 : 0, and no sensitive patches (the caller drops them from the
        lists); so the kernel does no work for them and their lookup reports no change.
        """
        thr = self.seg_threshold
        old = stats[:, :, 0] > thr                                              # B, S, O
        bands = []
        for b in range(len(self.bands())):
            on, s = stats[:, :, 1 + 2 * b], stats[:, :, 2 + 2 * b]
            fixed = (on > thr) | (on + s <= thr)
            s = np.where(fixed, 0, s)
            on = np.where(fixed, np.where(old, thr + 1, 0), on)
            bands.append({"on": on.astype(np.int32), "s": s.astype(np.int32), "fixed": fixed})
        oldb = old.astype(np.uint8)
        _, a = self.loss_of_bits(oldb, labels, fc)
        e = np.where(fc[None] == oldb[:, None], 1, -1).astype(np.int64)       # B, classes, S, O
        out = {"bands": bands, "old": oldb.astype(np.int32), "a": a, "e": e}
        if self.nseg <= TABLE_MAX_SEGMENTS:
            # table[b, o, c] = sum_k d_k (2 a_k + d_k), d_k = sum of e[b, k, s, o] over the segments s in c:
            # float64 matrix products (small integers: exact), 5x faster than the int64 einsum at 128->128 2x2
            codes = ((np.arange(2 ** self.nseg)[:, None] >> np.arange(self.nseg)[None]) & 1).astype(np.float64)
            ef = e.astype(np.float64)
            d = np.matmul(codes, ef)                                            # B, classes, 2^S, O
            lin = np.matmul(codes, np.matmul(2 * a[:, None].astype(np.float64),
                                             ef.reshape(ef.shape[0], self.classes, -1)).reshape(
                ef.shape[0], self.nseg, self.cout))                            # B, 2^S, O: sum_k 2 a_k d_k
            quad = np.einsum("bkco,bkco->bco", d, d)                            # sum_k d_k^2
            out["table"] = np.rint(lin + quad).astype(np.int32).transpose(0, 2, 1).copy()
        else:
            out["fmask"] = ((e == -1).astype(np.int64) << np.arange(self.nseg)[None, None, :, None]).sum(2)\
                .transpose(0, 2, 1).astype(np.int32).copy()                    # B, O, classes
            out["a2"] = (2 * a).astype(np.int32)
        return out

    def fc_deltas(self, info) -> np.ndarray:
        """(B,) + fc_shape: flipping fc[k, s, o] moves score_k by e = +-1: delta = 2 a_k e + 1."""
        d = 2 * info["a"][:, :, None, None] * info["e"] + 1
        return d.reshape((d.shape[0],) + self.fc_shape)

    def lookup(self, info, G, wstate, xp=np):
        """Per-example conv deltas (B,) + conv_shape from G (per band, (B, S, O, 9C)): the numpy version of
        the "delta" stage (the TE declaration mirrors it)."""
        thr = self.seg_threshold
        B = G[0].shape[0]
        old = info["old"][..., None]                                           # B, S, O, 1

        def code_of(band, bx):
            bd = info["bands"][band - 1]
            g = G[band - 1]
            new = bd["on"][..., None] + np.where(bx[None, None], g, bd["s"][..., None] - g)
            changed = ((new > thr).astype(np.int32) != old).astype(np.int64)   # B, S, O, 9C
            return (changed << np.arange(self.nseg)[None, :, None, None]).sum(1)  # B, O, 9C

        def delta_of(code):
            if "table" in info:
                return np.take_along_axis(info["table"], code, axis=2).astype(np.int64)
            n = _popcount(code)
            tot = np.zeros(code.shape, np.int64)
            for k in range(self.classes):
                dk = n - 2 * _popcount(code & info["fmask"][:, :, k:k + 1])
                tot += dk * (info["a2"][:, k:k + 1, None] + dk)
            return tot

        wf = wstate.reshape(self.cout, -1)
        if self.weights == "binary":
            d = delta_of(code_of(1, wf.astype(bool)))
            return d.reshape((B,) + self.conv_shape)
        out = np.zeros((B, self.cout, 9 * self.cin, 3), np.int64)
        for t, state in enumerate(TERNARY_STATES):
            for cur in TERNARY_STATES:
                if cur == state:
                    continue
                band, bx = TERNARY_RULES[(cur, state)]
                d = delta_of(code_of(band, np.full(wf.shape, bool(bx))))
                out[..., t] += np.where((wf == cur)[None], d, 0)
        return out.reshape((B,) + self.conv_shape)

    def fast_numpy(self, images, labels, conv_w, fc_w, reduce: str = "sum") -> LossDeltas:
        """The fast algorithm in plain numpy (dense G by matrix product): a second oracle, no TVM."""
        x, lab, w, fc = self.canon_inputs(images, labels, conv_w, fc_w)
        stats, sensmask = self.stats_of_counts(self.counts(x, w))
        info = self.analyse(stats, lab, fc)
        X = self.seg_view(self.patches(x)).astype(np.float32)                   # B, S, n_seg, 9C
        G = []
        for b, bd in enumerate(info["bands"]):
            sens = ((sensmask >> b) & 1).astype(bool) & ~bd["fixed"][:, :, :, None]   # B, S, O, n_seg
            G.append(np.rint(sens.astype(np.float32) @ X).astype(np.int32))
        return self._finish(self.lookup(info, G, w), self.fc_deltas(info), reduce)

    def sparse(self, deltas: LossDeltas, conv_w, fc_w, threshold: int = 0) -> list:
        """[(part, index, new value, delta)] for every mutation with |delta| > threshold (like the seed's
        sparse output). part is "conv" or "fc"; index a tuple into conv_w / fc_w; new value is what the weight
        stands for after the mutation (+1/-1 for bits, +1/0/-1 for ternary states)."""
        out = []
        dconv = np.asarray(deltas.conv)
        if dconv.shape != self.conv_shape:
            raise ValueError(f"LossDelta.sparse: expects batch-summed deltas of shape {self.conv_shape}")
        if self.weights == "ternary":
            for idx in zip(*np.nonzero(np.abs(dconv) > threshold)):
                out.append(("conv", tuple(int(i) for i in idx[:4]), TERNARY_STATES[idx[4]], int(dconv[idx])))
        else:
            w = _bit_array(conv_w, None, (self.cout, 3, 3, self.cin), "conv_w")
            for idx in zip(*np.nonzero(np.abs(dconv) > threshold)):
                out.append(("conv", tuple(int(i) for i in idx), 1 - 2 * int(w[idx]), int(dconv[idx])))
        fc = _bit_array(fc_w, None, self.fc_shape, "fc_w")
        dfc = np.asarray(deltas.fc)
        for idx in zip(*np.nonzero(np.abs(dfc) > threshold)):
            out.append(("fc", tuple(int(i) for i in idx), 1 - 2 * int(fc[idx]), int(dfc[idx])))
        return out

    # ------------------------------------------------------------------ TE declarations
    def declare(self, algorithm: str = "deltas") -> Declaration:
        from ..backend import expr, te
        if algorithm == "direct":
            algorithm = "deltas"
        B = te.var("batch")
        O, C, H, W, CW = self.cout, self.cin, self.h, self.w, self.cwords
        if algorithm == "forward":
            x = te.placeholder((B, H, W, CW), self.word_dtype, name="x_words")
            di, dj, cw = te.reduce_axis((0, 3), "di"), te.reduce_axis((0, 3), "dj"), te.reduce_axis((0, CW), "cw")
            # "popc" accumulates in the word type (uint64 lanes: vpsadbw's own result, no narrowing per term;
            # the binary conv's blocked template does the same), then one cast per output
            if self.weights == "binary":
                wt = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_words")      # o innermost: vectorizes
                acc = te.compute((B, self.ph, self.pw, O), lambda n, i, j, o: te.sum(
                    expr.popcount(wt[di, dj, cw, o] ^ x[n, i + di, j + dj, cw]), axis=[di, dj, cw]), name="popc")
                m = te.compute((B, self.ph, self.pw, O), lambda n, i, j, o: acc[n, i, j, o].astype("int32"),
                               name="mismatch")
                return Declaration([x, wt], [m])
            wp = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_plus")
            wm = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_minus")
            zc = te.placeholder((O,), "int32", name="w_zeros")
            # cost bits: 2 where (w = +1 and x = 0) or (w = -1 and x = 1) = the bits of wp ^ ((wp ^ wm) & x)
            acc = te.compute((B, self.ph, self.pw, O), lambda n, i, j, o: te.sum(expr.popcount(
                wp[di, dj, cw, o] ^ ((wp[di, dj, cw, o] ^ wm[di, dj, cw, o]) & x[n, i + di, j + dj, cw])),
                axis=[di, dj, cw]), name="popc")
            cost = te.compute((B, self.ph, self.pw, O),
                              lambda n, i, j, o: 2 * acc[n, i, j, o].astype("int32") + zc[o], name="cost")
            return Declaration([x, wp, wm, zc], [cost])
        if algorithm not in ("deltas", "deltas_none"):
            raise ValueError(f"LossDelta has no algorithm {algorithm!r} (it has {', '.join(self.ALGORITHMS)})")
        S, thr, nb = self.nseg, self.seg_threshold, (2 if self.weights == "ternary" else 1)
        acc = self.gather_dtype
        # The image itself (no sentinel rows) and classify's lists as they are: row (n, s, b, o) holds
        # sens[n, s, o] pixel offsets, the rest is stale. The gather loop runs to K (the longest live list,
        # bound by the length of the "kbound" argument) and skips k >= sens: rows are 6 long on average and
        # 29 at most at 1024 -> 1024, so padding every row to K did 5x the work.
        ximg = te.placeholder((B, H * W, C), "uint8", name="ximg")
        lists = te.placeholder((B, S, nb, O, self.seg_shape[0] * self.seg_shape[1]), "int32", name="lists")
        inputs, gathers, ons, ss = [ximg, lists], [], [], []
        for band in range(1, nb + 1):
            sfx = "" if band == 1 else str(band)
            K = te.var("k" + str(band))
            kb = te.placeholder((K,), "int32", name="kbound" + sfx)
            on = te.placeholder((B, S, O), "int32", name="on" + sfx)
            sc = te.placeholder((B, S, O), "int32", name="sens" + sfx)
            g = _gather(te, ximg, lists, band - 1, K, sc, (B, S, O, 3, 3, C), W, acc, "gather" + sfx)
            inputs += [kb, on, sc]
            gathers.append(g)
            ons.append(on)
            ss.append(sc)
        old = te.placeholder((B, S, O), "int32", name="old")
        # live[n, o] = 0 when no segment of channel o can change its pooled bit in example n (every row fixed):
        # all its deltas are 0, and the batch sum skips it (63% of (example, channel) pairs at 1024 -> 1024)
        live = te.placeholder((B, O), "int32", name="live")
        inputs += [old, live]
        if self.weights == "binary":
            wst = te.placeholder((O, 3, 3, C), "uint8", name="w_bits")
        else:
            wst = te.placeholder((O, 3, 3, C), "int8", name="w_state")
        inputs.append(wst)
        if S <= TABLE_MAX_SEGMENTS:
            table = te.placeholder((B, O, 2 ** S), "int32", name="table")
            inputs.append(table)
        else:
            fmask = te.placeholder((B, O, self.classes), "int32", name="fmask")
            a2 = te.placeholder((B, self.classes), "int32", name="a2")
            inputs += [fmask, a2]

        def code_expr(n, o, di, dj, c, band, bx):
            """Bit s set when the mutation flips the pooled bit of segment s."""
            g, on, sc = gathers[band - 1], ons[band - 1], ss[band - 1]
            tot = None
            for s in range(S):
                gv = g[n, s, o, di, dj, c].astype("int32")
                new = on[n, s, o] + expr.Select(bx, gv, sc[n, s, o] - gv)
                changed = (new > thr).astype("int32") ^ old[n, s, o]
                tot = changed if s == 0 else tot | (changed << s)
            return tot

        def delta(n, o, cd):
            """Loss delta of a mutation whose changed-segment set is cd (a stage value: loaded once)."""
            if S == 1:
                return expr.Select(cd != 0, table[n, o, 1], 0).astype("int64")
            if S <= TABLE_MAX_SEGMENTS:
                return table[n, o, cd].astype("int64")
            cnt = expr.popcount(cd)
            tot = None
            for kk in range(self.classes):
                dk = cnt - 2 * expr.popcount(cd & fmask[n, o, kk])
                term = dk * (a2[n, kk] + dk)
                tot = term if tot is None else tot + term
            return tot.astype("int64")

        body = (B, O, 3, 3, C)
        if self.weights == "binary":
            code = te.compute(body, lambda n, o, di, dj, c: code_expr(n, o, di, dj, c, 1, wst[o, di, dj, c] != 0),
                              name="code")

            def per(n, o, di, dj, c):
                return delta(n, o, code[n, o, di, dj, c])
            shape_tail = (O, 3, 3, C)
        else:
            # 4 variants v = 2 * (band - 1) + bx; each (current, target) state pair uses one of them
            def code_v(n, o, di, dj, c, v):
                res = None
                for vv in range(4):
                    e = code_expr(n, o, di, dj, c, vv // 2 + 1, expr.const(bool(vv % 2), "bool"))
                    res = e if res is None else expr.Select(v == vv, e, res)
                return res
            code = te.compute(body + (4,), code_v, name="code")
            vdelta = te.compute(body + (4,), lambda n, o, di, dj, c, v: delta(n, o, code[n, o, di, dj, c, v]),
                                name="vdelta")

            def per(n, o, di, dj, c, t):
                cur = wst[o, di, dj, c]
                res = expr.const(0, "int64")
                for ti, state in enumerate(TERNARY_STATES):
                    for cs_ in TERNARY_STATES:
                        if cs_ != state:
                            band, bx = TERNARY_RULES[(cs_, state)]
                            res = expr.Select(expr.all(t == ti, cur == cs_),
                                              vdelta[n, o, di, dj, c, 2 * (band - 1) + bx], res)
                return res
            shape_tail = (O, 3, 3, C, 3)
        if algorithm == "deltas_none":
            out = te.compute((B,) + shape_tail, per, name="delta")
            return Declaration(inputs, [out])
        nb_ = te.reduce_axis((0, B), "n")

        def live_per(n, *ax):
            return expr.if_then_else(live[n, ax[0]] != 0, per(n, *ax), expr.const(0, "int64"))
        if self.weights == "binary":
            out = te.compute(shape_tail, lambda o, di, dj, c: te.sum(live_per(nb_, o, di, dj, c), axis=nb_),
                             name="dsum")
        else:
            out = te.compute(shape_tail, lambda o, di, dj, c, t: te.sum(live_per(nb_, o, di, dj, c, t), axis=nb_),
                             name="dsum")
        return Declaration(inputs, [out])

    # ------------------------------------------------------------------ compiling
    def compile_kernel(self, template=None, knobs=None, target="host", schedule=None, log=None):
        """cs.compile(loss_delta_layer, ...) lands here: a LossDeltaKernel of several compiled functions."""
        from .loss_delta_kernel import compile_loss_delta
        return compile_loss_delta(self, template=template, knobs=knobs, target=target, schedule=schedule, log=log)


def _gather(te, ximg, lists, b, K, cnt, shape, W, acc, name):
    """G[n, s, o, di, dj, c] = sum over k < cnt[n, s, o] (<= K) of the input bit (di, dj, c) of the patch
    whose top-left pixel offset is lists[n, s, b, o, k]."""
    from ..backend import expr
    k = te.reduce_axis((0, K), "k")
    # if_then_else, not te.sum(where=): TVM 0.27's create_prim_func drops a reduction's where= silently;
    # if_then_else keeps the load of a stale list entry from running
    return te.compute(shape, lambda n, s, o, di, dj, c: te.sum(expr.if_then_else(
        k < cnt[n, s, o], ximg[n, lists[n, s, b, o, k] + di * W + dj, c].astype(acc), expr.const(0, acc)),
        axis=k), name=name)


def _popcount(a):
    a = np.asarray(a, np.int64)
    return np.bitwise_count(a).astype(np.int64) if hasattr(np, "bitwise_count") else \
        np.vectorize(lambda v: bin(int(v)).count("1"))(a).astype(np.int64)


def _bit_array(a, _unused, shape, name, batch=False) -> np.ndarray:
    """Bits given as bool / 0-1 integers in `shape` (with a leading batch axis if batch) or packed uint64
    words along the last axis -> uint8 0/1 array."""
    a = np.asarray(a)
    lead = a.shape[:1] if batch else ()
    if batch and a.ndim != len(shape) + 1:
        raise ValueError(f"LossDelta: {name} must have shape (batch,) + {shape}, got {a.shape}")
    if a.dtype == np.uint64:
        want = lead + tuple(shape[:-1]) + (_bits.words(shape[-1]),)
        if a.shape != want:
            raise ValueError(f"LossDelta: packed {name} must have shape {want} (uint64 words), got {a.shape}")
        return _bits.unpack(a, shape[-1], axis=-1)
    if a.shape != lead + tuple(shape):
        raise ValueError(f"LossDelta: {name} must have shape {lead + tuple(shape)} (bits), got {a.shape}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.kind not in "iu":
        raise ValueError(f"LossDelta: {name} must be bits (bool or 0/1 integers, or packed uint64), got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"LossDelta: {name} must hold 0/1 bits (bit 1 = +1, bit 0 = -1)")
    return a.astype(np.uint8, copy=False)
