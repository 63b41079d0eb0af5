"""The definition of the loss-delta layer: mutate one weight, recompute the whole loss, subtract.

This is the test oracle (reference()), never the fast path; the fast path (fast.py, the TE declarations and
the compiled kernel) must equal it exactly. The helpers here (im2col patches, forward counts, segments,
the loss of pooled bits) are shared with the fast path's numpy glue.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...bits import as_bits

TERNARY_STATES = (1, 0, -1)  # order of the last output axis of ternary conv deltas


class LossDeltas(NamedTuple):
    conv: np.ndarray
    fc: np.ndarray


class Definition:
    """LossDelta's oracle and the numpy helpers it is written with (a mixin of LossDelta)."""

    def patches(self, x) -> np.ndarray:
        """im2col: (B, H-2, W-2, 9C) uint8, bit index (di, dj, c)."""
        v = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))   # B, PH, PW, C, 3, 3
        return np.ascontiguousarray(v.transpose(0, 1, 2, 4, 5, 3)).reshape(x.shape[0], self.ph, self.pw, -1)

    def counts(self, x, w) -> np.ndarray:
        """Forward counts (B, PH, PW, O) int64: mismatches (binary) or cost (ternary)."""
        # float64 products of 0/1 matrices are exact (integers far below 2^53) and use BLAS
        return self.counts_of_patches(self.patches(x).astype(np.float64), np.asarray(w).reshape(self.cout, -1))

    def counts_of_patches(self, X, W, ones=None) -> np.ndarray:
        """Counts (..., K) int64 of weight rows W (K, 9C) on 0/1 patches X (..., 9C) given as floats (matrix
        products of 0/1 values, exact in float32 below 2^24 terms); ones: X's row sums (..., 1) if known."""
        if self.weights == "ternary":
            plus, minus = (W == 1).astype(X.dtype), (W == -1).astype(X.dtype)
            c = 2 * (plus.sum(1) - X @ plus.T) + 2 * (X @ minus.T) + (W == 0).sum(1)
        else:
            Wf = W.astype(X.dtype)
            c = (X.sum(-1, keepdims=True) if ones is None else ones) + Wf.sum(1) - 2 * (X @ Wf.T)
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
            w = as_bits(conv_w, (self.cout, 3, 3, self.cin), "conv_w")
            for idx in zip(*np.nonzero(np.abs(dconv) > threshold)):
                out.append(("conv", tuple(int(i) for i in idx), 1 - 2 * int(w[idx]), int(dconv[idx])))
        fc = as_bits(fc_w, self.fc_shape, "fc_w")
        dfc = np.asarray(deltas.fc)
        for idx in zip(*np.nonzero(np.abs(dfc) > threshold)):
            out.append(("fc", tuple(int(i) for i in idx), 1 - 2 * int(fc[idx]), int(dfc[idx])))
        return out
