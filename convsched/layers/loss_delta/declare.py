"""TE declarations of the loss-delta layer's compiled parts (algorithms "forward", "deltas", "deltas_none").

Their arguments are not the layer's (images, labels, conv_w, fc_w) but what the kernel prepares for them:
packed words for the forward conv, classify's lists and the numpy glue's tables for the delta kernel (see
the layer's module docstring for the stages).
"""
from __future__ import annotations

from ...backend import expr, te
from ..base import Declaration
from .definition import TERNARY_STATES
from .fast import TABLE_MAX_SEGMENTS, TERNARY_RULES


class Declarations:
    """LossDelta.declare() (a mixin of LossDelta)."""

    def declare(self, algorithm: str = "deltas", *, inputs=None, prefix: str = "") -> Declaration:
        if inputs or prefix:
            raise ValueError("LossDelta: its declarations are the parts of one multi-part kernel, whose arguments "
                             "differ from the layer's; they take no input tensors or prefix")
        batch = te.var("batch")
        if algorithm == "forward":
            return self._declare_forward(batch)
        if algorithm in ("deltas", "direct", "deltas_none"):
            return self._declare_deltas(batch, per_example=(algorithm == "deltas_none"))
        raise ValueError(f"LossDelta has no algorithm {algorithm!r} (it has {', '.join(self.ALGORITHMS)})")

    def _declare_forward(self, B) -> Declaration:
        """Forward counts (B, PH, PW, O) int32: "popc" + "mismatch" (binary) or "popc" + "cost" (ternary)."""
        O, H, W, CW = self.cout, self.h, self.w, self.cwords
        x = te.placeholder((B, H, W, CW), self.word_dtype, name="x_words")
        di, dj, cw = te.reduce_axis((0, 3), "di"), te.reduce_axis((0, 3), "dj"), te.reduce_axis((0, CW), "cw")
        out_shape = (B, self.ph, self.pw, O)
        # "popc" accumulates in the word type (uint64 lanes: vpsadbw's own result, no narrowing per term;
        # the binary conv's blocked template does the same), then one cast per output
        if self.weights == "binary":
            wt = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_words")      # o innermost: vectorizes
            acc = te.compute(out_shape, lambda n, i, j, o: te.sum(
                expr.popcount(wt[di, dj, cw, o] ^ x[n, i + di, j + dj, cw]), axis=[di, dj, cw]), name="popc")
            m = te.compute(out_shape, lambda n, i, j, o: acc[n, i, j, o].astype("int32"), name="mismatch")
            return Declaration([x, wt], [m])
        wp = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_plus")
        wm = te.placeholder((3, 3, CW, O), self.word_dtype, name="w_minus")
        zc = te.placeholder((O,), "int32", name="w_zeros")
        # cost bits: 2 where (w = +1 and x = 0) or (w = -1 and x = 1) = the bits of wp ^ ((wp ^ wm) & x)
        acc = te.compute(out_shape, lambda n, i, j, o: te.sum(expr.popcount(
            wp[di, dj, cw, o] ^ ((wp[di, dj, cw, o] ^ wm[di, dj, cw, o]) & x[n, i + di, j + dj, cw])),
            axis=[di, dj, cw]), name="popc")
        cost = te.compute(out_shape, lambda n, i, j, o: 2 * acc[n, i, j, o].astype("int32") + zc[o], name="cost")
        return Declaration([x, wp, wm, zc], [cost])

    def _declare_deltas(self, B, per_example: bool) -> Declaration:
        """The delta kernel: "gather"[2] -> "code" [-> "vdelta"] -> "dsum" (or "delta" per example)."""
        O, C = self.cout, self.cin
        S, thr, nb = self.nseg, self.seg_threshold, len(self.bands())
        # The image itself (no sentinel rows) and classify's lists as they are: row (n, s, b, o) holds
        # sens[n, s, o] pixel offsets, the rest is stale. The gather loop runs to K (the longest live list,
        # bound by the length of the "kbound" argument) and skips k >= sens: rows are 6 long on average and
        # 29 at most at 1024 -> 1024, so padding every row to K did 5x the work.
        ximg = te.placeholder((B, self.h * self.w, C), "uint8", name="ximg")
        lists = te.placeholder((B, S, nb, O, self.seg_shape[0] * self.seg_shape[1]), "int32", name="lists")
        inputs, gathers, ons, ss = [ximg, lists], [], [], []
        for band in range(1, nb + 1):
            sfx = "" if band == 1 else str(band)
            K = te.var("k" + str(band))
            kb = te.placeholder((K,), "int32", name="kbound" + sfx)
            on = te.placeholder((B, S, O), "int32", name="on" + sfx)
            sc = te.placeholder((B, S, O), "int32", name="sens" + sfx)
            gathers.append(_gather(ximg, lists, band - 1, K, sc, (B, S, O, 3, 3, C), self.w, self.gather_dtype,
                                   "gather" + sfx))
            inputs += [kb, on, sc]
            ons.append(on)
            ss.append(sc)
        old = te.placeholder((B, S, O), "int32", name="old")
        # live[n, o] = 0 when no segment of channel o can change its pooled bit in example n (every row fixed):
        # all its deltas are 0, and the batch sum skips it (63% of (example, channel) pairs at 1024 -> 1024)
        live = te.placeholder((B, O), "int32", name="live")
        wst = te.placeholder((O, 3, 3, C), *(("uint8", "w_bits") if self.weights == "binary" else ("int8", "w_state")))
        inputs += [old, live, wst]
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
        tail = self.conv_shape
        if per_example:
            return Declaration(inputs, [te.compute((B,) + tail, per, name="delta")])
        nb_ = te.reduce_axis((0, B), "n")

        def live_per(n, *ax):
            return expr.if_then_else(live[n, ax[0]] != 0, per(n, *ax), expr.const(0, "int64"))
        if self.weights == "binary":
            out = te.compute(tail, lambda o, di, dj, c: te.sum(live_per(nb_, o, di, dj, c), axis=nb_), name="dsum")
        else:
            out = te.compute(tail, lambda o, di, dj, c, t: te.sum(live_per(nb_, o, di, dj, c, t), axis=nb_),
                             name="dsum")
        return Declaration(inputs, [out])

def _gather(ximg, lists, b, K, cnt, shape, W, acc, name):
    """G[n, s, o, di, dj, c] = sum over k < cnt[n, s, o] (<= K) of the input bit (di, dj, c) of the patch
    whose top-left pixel offset is lists[n, s, b, o, k]."""
    k = te.reduce_axis((0, K), "k")
    # if_then_else, not te.sum(where=): TVM 0.27's create_prim_func drops a reduction's where= silently;
    # if_then_else keeps the load of a stale list entry from running
    return te.compute(shape, lambda n, s, o, di, dj, c: te.sum(expr.if_then_else(
        k < cnt[n, s, o], ximg[n, lists[n, s, b, o, k] + di * W + dj, c].astype(acc), expr.const(0, acc)),
        axis=k), name=name)
