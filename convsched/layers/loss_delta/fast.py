"""The fast path of the loss-delta layer in numpy: the glue the compiled kernel runs between its parts (class
scores and masks, FC deltas: class_scores, class_masks, fc_deltas_of), and fast_numpy(), the whole fast algorithm without TVM
(stats_of_counts, analyse, lookup: a second oracle, written independently of the compiled stages, and the
tuner's oracle where reference() is too slow).

A flip changes one channel and moves each patch's count by exactly +-1 (ternary: +-1 or +-2), so only
"sensitive" patches can change state, and after the flip a sensitive patch is on exactly when its input bit
equals a known bit bx: the new count of a segment is ON[s,o] + (bx ? G : S - G), G[s,o,i] = the sum over the
sensitive patches of segment s of input bit i.
"""
from __future__ import annotations

import numpy as np

from ...bits import hamming, pack, popcount
from .definition import TERNARY_STATES, LossDeltas

TABLE_MAX_SEGMENTS = 8       # fast_numpy: up to 2^8 lookup entries per channel; more segments use class masks
# Ternary: (current state, target state) -> (band, bx): after the mutation a sensitive patch is on iff x == bx.
TERNARY_RULES = {(1, 0): (1, 1), (1, -1): (2, 1), (-1, 0): (1, 0), (-1, 1): (2, 0), (0, 1): (1, 0), (0, -1): (1, 1)}


class FastPath:
    """The numpy half of LossDelta's fast path (a mixin of LossDelta)."""

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

    # ---------------------------------------------------------------- the compiled kernel's glue, O(B*S*O)
    def class_scores(self, old, labels, fc) -> np.ndarray:
        """a (B, classes) int32 = score_k - target_k, score_k = popcount(fc_k ^ old) (bits.hamming)."""
        target = np.where(np.arange(self.classes)[None] == labels[:, None], self.nseg * self.cout, 0)
        return (hamming(old, fc) - target).astype(np.int32)

    def class_masks(self, fc) -> np.ndarray:
        """(S, O, KW) uint64: bit k % 64 of word k // 64 = fc[k, s, o] (the delta stage derives each segment's
        loss terms from the class scores and these masks, for the segments that can flip only)."""
        return pack(np.moveaxis(fc, 0, -1), validate=False)

    def fc_deltas_of(self, a, old, fc, reduce: str) -> np.ndarray:
        """FC deltas from class_scores' a: flipping fc[k, s, o] moves score_k by e = +-1, delta = 2 a_k e + 1
        (e = +1 where fc[k, s, o] equals the old bit). reduce="sum": over the batch by one matrix product,
        sum_n a_nk [fc != old_n] = fc ? sum_n a_nk - A : A with A = sum_n a_nk old_n; "none": (B,) + fc_shape."""
        B, C = old.shape[0], self.classes
        if reduce == "none":
            e = np.where(fc[None] == old[:, None], 1, -1)                              # B, classes, S, O
            return (2 * a[:, :, None, None] * e + 1).reshape((B,) + self.fc_shape)
        A = np.rint(a.T.astype(np.float64) @ old.reshape(B, -1).astype(np.float64)).astype(np.int64)
        A = A.reshape(C, self.nseg, self.cout)
        sa = a.sum(0)[:, None, None]
        differ = np.where(fc != 0, sa - A, A)                                          # sum_n a_nk [fc != old_n]
        return (2 * sa - 4 * differ + B).reshape(self.fc_shape)

    def fc_deltas(self, info) -> np.ndarray:
        """(B,) + fc_shape: flipping fc[k, s, o] moves score_k by e = +-1: delta = 2 a_k e + 1."""
        d = 2 * info["a"][:, :, None, None] * info["e"] + 1
        return d.reshape((d.shape[0],) + self.fc_shape)

    def lookup(self, info, G, wstate):
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
            n = popcount(code)
            tot = np.zeros(code.shape, np.int64)
            for k in range(self.classes):
                dk = n - 2 * popcount(code & info["fmask"][:, :, k:k + 1])
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
