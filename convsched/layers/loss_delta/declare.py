"""TE declaration of the loss-delta layer's forward part: the XOR-popcount conv and its classification
(algorithms "forward8" / "forward16" / "forward32" / "forward64" by the popcount's word, "forward" = the
layer's word_bits).

Its arguments are not the layer's (images, labels, conv_w, fc_w) but what the kernel prepares: packed image
and weight words. The sparse delta stage that consumes its outputs is hand-written TIR
(convsched/backend/loss_delta.py): a data-dependent set per (example, channel), which TE cannot declare.
"""
from __future__ import annotations

from ...backend import expr, te
from ...bits import words
from ..base import Declaration

# forward declarations by the word their popcount runs on (None: the layer's own word_bits)
FORWARD_ALGORITHMS = {"forward": None, "forward8": 8, "forward16": 16, "forward32": 32, "forward64": 64}
# the forward conv alone (its counts, no classification): the floor's own computation, for measuring it
CONV_ALGORITHMS = {f"conv{b}": b for b in (8, 16, 32, 64)}


class Declarations:
    """LossDelta.declare() (a mixin of LossDelta)."""

    def declare(self, algorithm: str = "forward", *, inputs=None, prefix: str = "") -> Declaration:
        if inputs or prefix:
            raise ValueError("LossDelta: its declarations are the parts of one multi-part kernel, whose arguments "
                             "differ from the layer's; they take no input tensors or prefix")
        batch = te.var("batch")
        if algorithm in FORWARD_ALGORITHMS:
            return self._declare_forward(batch, FORWARD_ALGORITHMS[algorithm] or self.word_bits)
        if algorithm in CONV_ALGORITHMS:
            return self._declare_forward(batch, CONV_ALGORITHMS[algorithm], classify=False)
        raise ValueError(f"LossDelta has no algorithm {algorithm!r} (it has {', '.join(self.ALGORITHMS)})")

    def _declare_forward(self, B, word_bits: int, classify: bool = True) -> Declaration:
        """The forward conv and its classification: "popc" (+ "mismatch" or "cost") -> "rowbits" -> "stats".

        Only the patches of the segments are computed (SX*hs rows, SY*ws columns; leftover rows and columns
        belong to no segment), the columns as (segment column sy, column jj within it): every stage then reads
        its producer with one loop variable per axis, which TVM needs to place it under the conv's loops.
        Outputs: rowbits (B, 1 + NB, rows, SY, RW, O) uint32/uint64: bit jb of rowbits[n, f, i, sy, rw, o] is
        flag f (active: count > T; then per band b sensitive: lo <= count <= hi) of patch (i, sy*ws + rw*MB +
        jb) for channel o (MB the mask word's bits, LossDelta.mask_layout); stats (B, S, NF, O) int32: per
        segment the active patches, then per band the patches that stay on (count > hi) and the sensitive
        ones (the layout of stats_of_counts). classify=False: the conv alone, its counts (B, rows, SY, ws, O)
        int32 the output (algorithm "conv<bits>": what the floor measures)."""
        O, H, W = self.cout, self.h, self.w
        CW, wdt = words(self.cin, word_bits), f"uint{word_bits}"
        rows = self.used_patches[0]
        sy, ws = self.segment_grid[1], self.seg_shape[1]
        x = te.placeholder((B, H, W, CW), wdt, name="x_words")
        di, dj, cw = te.reduce_axis((0, 3), "di"), te.reduce_axis((0, 3), "dj"), te.reduce_axis((0, CW), "cw")
        shape = (B, rows, sy, ws, O)
        # "popc" accumulates in the word type (uint64 lanes: vpsadbw's own result, no narrowing per term;
        # the binary conv's blocked template does the same), then one cast per output
        if self.weights == "binary":
            wt = te.placeholder((3, 3, CW, O), wdt, name="w_words")      # o innermost: vectorizes
            acc = te.compute(shape, lambda n, i, s_y, jj, o: te.sum(expr.popcount(
                wt[di, dj, cw, o] ^ x[n, i + di, s_y * ws + jj + dj, cw]), axis=[di, dj, cw]), name="popc")
            count = te.compute(shape, lambda n, i, s_y, jj, o: acc[n, i, s_y, jj, o].astype("int32"),
                               name="mismatch")
            args = [x, wt]
        else:
            wp = te.placeholder((3, 3, CW, O), wdt, name="w_plus")
            wm = te.placeholder((3, 3, CW, O), wdt, name="w_minus")
            zc = te.placeholder((O,), "int32", name="w_zeros")
            # cost bits: 2 where (w = +1 and x = 0) or (w = -1 and x = 1) = the bits of wp ^ ((wp ^ wm) & x)
            acc = te.compute(shape, lambda n, i, s_y, jj, o: te.sum(expr.popcount(
                wp[di, dj, cw, o] ^ ((wp[di, dj, cw, o] ^ wm[di, dj, cw, o]) & x[n, i + di, s_y * ws + jj + dj, cw])),
                axis=[di, dj, cw]), name="popc")
            count = te.compute(shape, lambda n, i, s_y, jj, o: 2 * acc[n, i, s_y, jj, o].astype("int32") + zc[o],
                               name="cost")
            args = [x, wp, wm, zc]
        return Declaration(args, list(self._declare_classify(B, count)) if classify else [count])

    def _declare_classify(self, B, count):
        """rowbits (flags packed along each segment row) and stats (counts per segment) of the counts.

        The row masks hold the flags a patch needs per compare: active (count > T) and, per band b, sensitive
        (T - b <= count <= T + 1 + b); "on" (count > T + 1 + b) is active and not sensitive, so stats derives
        its count from the words instead of a third compare per patch and channel."""
        O, (sx, sy), (hs, ws) = self.cout, self.segment_grid, self.seg_shape
        rows = self.used_patches[0]
        mb, rw_n = self.mask_layout
        mdt = f"uint{mb}"
        bands = self.bands()
        nb = len(bands)
        jb = te.reduce_axis((0, min(mb, ws)), "jb")
        T = self.threshold
        partial = rw_n > 1 and ws % mb != 0      # rows wider than a word whose last word is partial

        def flag(c, f):
            """Row-mask flag f of a patch whose count is c: f = 0 active, f = 1 + b sensitive in band b."""
            out = c > T
            for b, (lo, hi) in enumerate(bands):
                out = expr.Select(f == 1 + b, expr.all(c >= lo, c <= hi), out)
            return out

        def row_word(n, f, i, s_y, rw, o):
            # (no term of a unit loop, and a clamped column only where a word can pass the row's end: the clamp
            # keeps the load in bounds, but an index that is not one loop variable keeps this stage from moving
            # under the conv's loops)
            col = jb if rw_n == 1 else rw * mb + jb
            bit = expr.if_then_else(flag(count[n, i, s_y, expr.min(col, ws - 1) if partial else col, o], f),
                                    expr.const(1, mdt) << jb.astype(mdt), expr.const(0, mdt))
            if partial:
                bit = expr.if_then_else(col < ws, bit, expr.const(0, mdt))
            return te.sum(bit, axis=jb)
        rowbits = te.compute((B, 1 + nb, rows, sy, rw_n, O), row_word, name="rowbits")
        ii, rw = te.reduce_axis((0, hs), "ii"), te.reduce_axis((0, rw_n), "rw")

        def stat(n, s, f, o):
            """f = 0 active, 1 + 2b on in band b (active and not sensitive), 2 + 2b sensitive in band b."""
            def word(g):
                return rowbits[n, g, (s // sy) * hs + ii, s % sy, rw, o]
            v = word(0)
            for b in range(nb):
                v = expr.Select(f == 1 + 2 * b, word(0) & ~word(1 + b), expr.Select(f == 2 + 2 * b, word(1 + b), v))
            return te.sum(expr.popcount(v).astype("int32"), axis=[ii, rw])
        stats = te.compute((B, sx * sy, self.nflags, O), stat, name="stats")
        return rowbits, stats
