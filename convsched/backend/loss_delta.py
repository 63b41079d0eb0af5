"""The loss-delta layer's sparse stage, hand-written TIR: the conv deltas of every weight from the forward's
row masks (convsched.layers.loss_delta; docs/loss_delta.md).

Why not TE: per (example, channel) the work is a data-dependent set -- the segments whose pooled bit can change
(usually 0 to 2 of them), and in each the sensitive patches (1-10% of the patches) -- and TE declares dense
loops over fixed extents. Here every set is walked as it is: a list of the sensitive patches built from the
row mask words (AVX-512 vpcompressd where the target has it, else a set-bit loop), and the deltas of a group
of mutations as masked adds of per-segment terms, only for the segments that can change.

One function, `deltas`, per layer geometry and target; a call does, for every channel o (in parallel) and
example n:
  1. the segment scan: from stats (active / on / sensitive counts per band) the segments that can change
     their pooled bit ("unfixed": on <= thr < on + sensitive), with the G thresholds of each;
  2. per unfixed (segment, band): the list of its sensitive patches (pixel index of the top-left pixel);
  3. per chunk of mutation lanes (groups of 64 lanes: one patch row's 3 pixels of Cp bits = 3*Cp lanes per
     row di, in 64-lane groups): G = the sum, over the list, of the input bits of each lane (bit masks turned
     into uint8 lanes in registers: kmov + vpmovm2b + vpsubb per 64 lanes on AVX-512; int16 lanes for a
     segment with more than 255 sensitive patches); then the mask of lanes whose pooled bit flips:
     (bx ? G > thr - on : G < on + S - thr) != old, bx = the weight bit (binary) or the ternary rule's bit;
  4. the loss delta of each lane: with d_k the change of class k's score and a_k = score_k - target_k,
     delta = sum_k (2 a_k d_k + d_k^2), and d_k = sum over the flipped segments s of e_ks (+1 where fc[k,s,o]
     equals the old bit, else -1), so delta = sum_{s flipped} lin_s + sum_{s<s' flipped} q_ss' with
     lin_s = sum_k (2 a_k e_ks + 1) (an argument, from the host) and q_ss' = 2 sum_k e_ks e_ks' =
     2 classes - 4 |E_s ^ E_s'| (E_s the classes with e_ks = -1; from fc's class masks and the old bits):
     masked adds of broadcast terms over the lanes, for the unfixed segments only -- no 2^S table, no
     per-class masks, any number of segments.
The batch sum (reduce="sum") accumulates per channel; reduce="none" writes each example's row.

TVM 0.27 facts this code works around (each found here): a buffer of 1 KB or more, or of scope "local", is a
heap workspace, not registers (the chunk of G lanes stays below it); a let-bound value inside a while loop
became a heap scalar (the bit index is recomputed instead); CompactBufferAllocation shrank a buffer written
at a data-dependent index to a wrong region (each such buffer is first written whole); one 384-lane store
made LLVM split the register buffer into bytes (zeroing goes 64 lanes at a time).
"""
from __future__ import annotations

from functools import lru_cache

import tvm
from tvm.script import tirx as T

from . import Built

def deltas_func(*, h, w, cp, cout, segments, seg_shape, mask_bits, row_words, seg_threshold, nbands, classes,
                groups, groups16, compress, per_example, ternary):
    """PrimFunc deltas(xb, w1, w2, stats, rowbits, lin, fcm, out), see the module docstring.

    xb: the packed image bytes, Cp/8 bytes a pixel (+ 8 bytes of slack: a 64-bit load may pass the last pixel);
    w1/w2: weight bits (O, 3, 3, Cp) as bytes (+ slack): binary the weight bits (w2 unused), ternary the +1
    and -1 planes; stats (B, S, 1 + 2 NB, O) int32 and rowbits (B, 1 + NB, SX*hs, SY, RW, O) from the
    forward part; lin (B, S, O) int64; fcm (S, O, KW) uint64: bit k of fc[k, s, o]; out: (NT, O, 3, 3*Cp)
    int64 batch sums, or (B, NT, O, 3, 3*Cp) per example (NT = 3 target states for ternary weights, else 1).
    groups / groups16: 64-lane groups per chunk in uint8 / int16 lanes; compress: build patch lists with
    vpcompressd (AVX-512) instead of a set-bit loop."""
    SX, SY = segments
    S = SX * SY
    hs, ws = seg_shape
    MB, RW = mask_bits, row_words
    mdt = f"uint{MB}"
    NB = nbands
    NF = 1 + 2 * NB
    O = cout
    RB = 3 * cp                          # mutation lanes of one patch row: 3 pixels of Cp bits
    NG = (RB + 63) // 64                 # 64-lane groups per row
    TL = RB - 64 * (NG - 1)              # lanes of a row's last group
    TG = 3 * NG                          # groups per channel
    V = min(groups, TG)                  # groups per chunk
    V16 = min(groups16, V)               # ... per int16 sub-pass
    NSUB = (V + V16 - 1) // V16
    NCH = (TG + V - 1) // V
    PXB = cp // 8                        # bytes per pixel
    XB = h * w * PXB                     # bytes per image
    WB = 9 * PXB                         # weight bytes per channel
    KW = (classes + 63) // 64
    LCAP = hs * ws + 16                  # list capacity per (segment, band): a compress stores 16 lanes
    thr = seg_threshold
    need16 = hs * ws > 255               # a segment can hold more sensitive patches than uint8 lanes count
    NT = 3 if ternary else 1
    ALL = ~T.uint64(0)

    @T.macro
    def build_list(lst, rowbits_, n_, o_, b_, i0, sy, u_):
        """The sensitive patches of one (segment, band) as pixel indices, in row order."""
        cur = T.alloc_buffer((2,), "int32", scope="global")
        cur[0] = 0
        for ii in range(hs):
            for rw in range(RW):
                if compress:
                    for hh in T.unroll(MB // 16):
                        lst[T.ramp(u_ * LCAP + cur[0], 1, 16)] = T.call_llvm_pure_intrin(
                            "int32x16", "llvm.x86.avx512.mask.compress.v16i32",
                            T.ramp((i0 + ii) * w + sy * ws + rw * MB + hh * 16, 1, 16), T.Broadcast(T.int32(0), 16),
                            T.Cast("boolx16", T.reinterpret("uint1x16", T.Cast(
                                "uint16", rowbits_[n_, 1 + b_, i0 + ii, sy, rw, o_] >> T.Cast(mdt, hh * 16)))))
                        cur[0] = cur[0] + T.Cast("int32", T.popcount(T.Cast(
                            "uint16", rowbits_[n_, 1 + b_, i0 + ii, sy, rw, o_] >> T.Cast(mdt, hh * 16))))
                else:
                    mm = T.alloc_buffer((2,), mdt, scope="global")
                    mm[0] = rowbits_[n_, 1 + b_, i0 + ii, sy, rw, o_]
                    while mm[0] != T.Cast(mdt, 0):
                        lst[u_ * LCAP + cur[0]] = (i0 + ii) * w + sy * ws + rw * MB + T.Cast(
                            "int32", T.call_llvm_pure_intrin(mdt, f"llvm.cttz.i{MB}", mm[0], T.bool(True)))
                        cur[0] = cur[0] + 1
                        mm[0] = mm[0] & (mm[0] - T.Cast(mdt, 1))

    @T.macro
    def gather_changed(G, dt, ng, xb_, lst, cnt, n_, u_, ub, g0, gofs, t1, t0, oldm, cm_):
        """G over groups g0 + gofs .. + ng of the (segment, band) list u_ (cnt patches), then its flip masks
        cm_[ub, bx, gofs + gl] for bx = 1 (G > t1) and bx = 0 (G < t0), xor the old bit."""
        for gl in T.unroll(ng):
            G[T.ramp(gl * 64, 1, 64)] = T.Broadcast(T.Cast(dt, 0), 64)
        for k in range(cnt):
            for gl in T.unroll(ng):
                if gofs + gl < V and g0 + gofs + gl < TG:
                    G[T.ramp(gl * 64, 1, 64)] = T.Select(
                        T.Cast("boolx64", T.reinterpret("uint1x64", T.reinterpret("uint64", xb_[T.ramp(
                            n_ * XB + (lst[u_ * LCAP + k] + ((g0 + gofs + gl) // NG) * w) * PXB
                            + ((g0 + gofs + gl) % NG) * 8, 1, 8)]))),
                        G[T.ramp(gl * 64, 1, 64)] + T.Broadcast(T.Cast(dt, 1), 64), G[T.ramp(gl * 64, 1, 64)])
        for gl in T.unroll(ng):
            if gofs + gl < V:
                cm_[ub, 1, gofs + gl] = T.reinterpret("uint64", T.Cast(
                    "uint1x64", G[T.ramp(gl * 64, 1, 64)] > T.Broadcast(T.Cast(dt, t1), 64))) ^ oldm
                cm_[ub, 0, gofs + gl] = T.reinterpret("uint64", T.Cast(
                    "uint1x64", G[T.ramp(gl * 64, 1, 64)] < T.Broadcast(T.Cast(dt, t0), 64))) ^ oldm

    @T.prim_func
    def deltas(xb_h: T.handle, w1_h: T.handle, w2_h: T.handle, stats_h: T.handle, rowbits_h: T.handle,
               lin_h: T.handle, fcm_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": "deltas", "tir.noalias": True})
        batch = T.int32()
        nx = T.int32()
        nw = T.int32()
        xb = T.match_buffer(xb_h, (nx,), "uint8")
        w1 = T.match_buffer(w1_h, (nw,), "uint8")
        w2 = T.match_buffer(w2_h, (nw,), "uint8")
        stats = T.match_buffer(stats_h, (batch, S, NF, O), "int32")
        rowbits = T.match_buffer(rowbits_h, (batch, 1 + NB, SX * hs, SY, RW, O), mdt)
        lin = T.match_buffer(lin_h, (batch, S, O), "int64")
        fcm = T.match_buffer(fcm_h, (S, O, KW), "uint64")
        if per_example:
            out = T.match_buffer(out_h, (batch, NT, O, 3, RB), "int64")
        else:
            out = T.match_buffer(out_h, (NT, O, 3, RB), "int64")
        for o in T.parallel(O):
            # per unfixed segment u: its index, old bit (all ones or 0), and per band: unfixed?, G thresholds,
            # sensitive count; the patch lists; the flip masks of the chunk; the terms of one group
            us = T.alloc_buffer((S + 1,), "int32", scope="global")
            uold = T.alloc_buffer((S + 1,), "uint64", scope="global")
            ufl = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            ut1 = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            ut0 = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            usc = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            nu = T.alloc_buffer((2,), "int32", scope="global")
            anyf = T.alloc_buffer((2,), "int32", scope="global")
            lists = T.alloc_buffer((S * NB * LCAP,), "int32", scope="global")
            cm = T.alloc_buffer((S * NB, 2, V), "uint64", scope="global")
            ch = T.alloc_buffer((S + 1,), "uint64", scope="global")
            acc = T.alloc_buffer((64,), "int64", scope="global")
            pc = T.alloc_buffer((2,), "int32", scope="global")
            G = T.alloc_buffer((V * 64,), "uint8", scope="global")
            G16 = T.alloc_buffer((V16 * 64,), "int16", scope="global")
            # whole-buffer writes first (see the module docstring: CompactBufferAllocation)
            for i in range(S + 1):
                us[i] = 0
                uold[i] = T.uint64(0)
                ch[i] = T.uint64(0)
            for i in range(S * NB + 1):
                ufl[i] = 0
                ut1[i] = 0
                ut0[i] = 0
                usc[i] = 0
            for i in range(S * NB * LCAP):
                lists[i] = 0
            for i0, i1, i2 in T.grid(S * NB, 2, V):
                cm[i0, i1, i2] = T.uint64(0)
            if not per_example:
                for t, di, gz in T.grid(NT, 3, NG):
                    for l in T.vectorized(64):
                        if gz * 64 + l < RB:
                            out[t, o, di, gz * 64 + l] = T.int64(0)
            for n in range(batch):
                # 1. the segments whose pooled bit can change, and their thresholds
                nu[0] = 0
                for s in range(S):
                    anyf[0] = 0
                    for b in range(NB):
                        ufl[nu[0] * NB + b] = T.Cast("int32", (stats[n, s, 1 + 2 * b, o] <= thr) and (
                            stats[n, s, 1 + 2 * b, o] + stats[n, s, 2 + 2 * b, o] > thr))
                        ut1[nu[0] * NB + b] = thr - stats[n, s, 1 + 2 * b, o]
                        ut0[nu[0] * NB + b] = stats[n, s, 1 + 2 * b, o] + stats[n, s, 2 + 2 * b, o] - thr
                        usc[nu[0] * NB + b] = stats[n, s, 2 + 2 * b, o]
                        anyf[0] = anyf[0] | ufl[nu[0] * NB + b]
                    if anyf[0] != 0:
                        us[nu[0]] = s
                        uold[nu[0]] = T.Select(stats[n, s, 0, o] > thr, ALL, T.uint64(0))
                        nu[0] = nu[0] + 1
                nuv: T.int32 = nu[0]
                if per_example:
                    if nuv == 0:
                        for t, di, gz in T.grid(NT, 3, NG):
                            for l in T.vectorized(64):
                                if gz * 64 + l < RB:
                                    out[n, t, o, di, gz * 64 + l] = T.int64(0)
                if nuv > 0:
                    # 2. the sensitive patches of each unfixed (segment, band)
                    for u in range(nuv):
                        for b in range(NB):
                            if ufl[u * NB + b] != 0:
                                build_list(lists, rowbits, n, o, b, (us[u] // SY) * hs, us[u] % SY, u * NB + b)
                    for c in range(NCH):
                        # 3. G and the flip masks of this chunk's groups
                        for u in range(nuv):
                            for b in range(NB):
                                if ufl[u * NB + b] != 0:
                                    if (not need16) or usc[u * NB + b] <= 255:
                                        gather_changed(G, "uint8", V, xb, lists, usc[u * NB + b], n, u * NB + b,
                                                       u * NB + b, c * V, 0, ut1[u * NB + b], ut0[u * NB + b],
                                                       uold[u], cm)
                                    else:
                                        for sub in range(NSUB):
                                            gather_changed(G16, "int16", V16, xb, lists, usc[u * NB + b], n,
                                                           u * NB + b, u * NB + b, c * V, sub * V16,
                                                           ut1[u * NB + b], ut0[u * NB + b], uold[u], cm)
                                else:
                                    for gl in range(V):
                                        cm[u * NB + b, 0, gl] = T.uint64(0)
                                        cm[u * NB + b, 1, gl] = T.uint64(0)
                        # 4. the loss deltas of each group's lanes
                        for gl in range(V):
                            if c * V + gl < TG:
                                di = T.meta_var((c * V + gl) // NG)
                                g = T.meta_var((c * V + gl) % NG)
                                wa = T.meta_var(T.reinterpret("uint64", w1[T.ramp(o * WB + di * (RB // 8) + g * 8, 1, 8)]))
                                wm = T.meta_var(T.reinterpret("uint64", w2[T.ramp(o * WB + di * (RB // 8) + g * 8, 1, 8)]))
                                for t in range(NT):
                                    # the lanes whose segment u flips under this group's mutations
                                    for u in range(nuv):
                                        if ternary:
                                            # by target state t (+1, 0, -1) and current state (wa: +1, wm: -1,
                                            # neither: 0) the (band, bx) of LossDelta's TERNARY_RULES:
                                            # +1: 0 -> (1, 0), -1 -> (2, 0); 0: +1 -> (1, 1), -1 -> (1, 0);
                                            # -1: +1 -> (2, 1), 0 -> (1, 1); the current state itself: no flip
                                            ch[u] = T.Select(
                                                t == 0, (~(wa | wm) & cm[u * NB, 0, gl]) | (wm & cm[u * NB + NB - 1, 0, gl]),
                                                T.Select(t == 1, (wa & cm[u * NB, 1, gl]) | (wm & cm[u * NB, 0, gl]),
                                                         (wa & cm[u * NB + NB - 1, 1, gl]) | (~(wa | wm) & cm[u * NB, 1, gl])))
                                        else:
                                            ch[u] = (wa & cm[u, 1, gl]) | (~wa & cm[u, 0, gl])
                                    for l8 in T.unroll(8):
                                        acc[T.ramp(l8 * 8, 1, 8)] = T.Broadcast(T.int64(0), 8)
                                    for u in range(nuv):
                                        acc[T.ramp(0, 1, 64)] = acc[T.ramp(0, 1, 64)] + T.Select(
                                            T.Cast("boolx64", T.reinterpret("uint1x64", ch[u])),
                                            T.Broadcast(lin[n, us[u], o], 64), T.Broadcast(T.int64(0), 64))
                                        for u2 in range(nuv):
                                            if u2 > u:
                                                pc[0] = 0
                                                for kw in range(KW):
                                                    pc[0] = pc[0] + T.Cast("int32", T.popcount(fcm[us[u], o, kw] ^ fcm[us[u2], o, kw]))
                                                acc[T.ramp(0, 1, 64)] = acc[T.ramp(0, 1, 64)] + T.Select(
                                                    T.Cast("boolx64", T.reinterpret("uint1x64", ch[u] & ch[u2])),
                                                    T.Broadcast(T.Cast("int64", 2 * classes - 4 * T.Select(
                                                        uold[u] == uold[u2], pc[0], classes - pc[0])), 64),
                                                    T.Broadcast(T.int64(0), 64))
                                    if g == NG - 1:
                                        if per_example:
                                            out[n, t, o, di, T.ramp(g * 64, 1, TL)] = acc[T.ramp(0, 1, TL)]
                                        else:
                                            out[t, o, di, T.ramp(g * 64, 1, TL)] = (
                                                out[t, o, di, T.ramp(g * 64, 1, TL)] + acc[T.ramp(0, 1, TL)])
                                    else:
                                        if per_example:
                                            out[n, t, o, di, T.ramp(g * 64, 1, 64)] = acc[T.ramp(0, 1, 64)]
                                        else:
                                            out[t, o, di, T.ramp(g * 64, 1, 64)] = (
                                                out[t, o, di, T.ramp(g * 64, 1, 64)] + acc[T.ramp(0, 1, 64)])
    return deltas


@lru_cache(maxsize=64)
def _build_cached(params, target_dict_items):
    func = deltas_func(**dict(params))
    ex = tvm.compile(tvm.IRModule({"deltas": func}), target=tvm.target.Target(dict(target_dict_items)))
    return Built(ex, None, name="deltas")


def build_deltas(params: dict, target) -> Built:
    """The compiled delta function for deltas_func(**params) on `target` (cached per parameters and target)."""
    tdict = target.to_tvm()
    return _build_cached(tuple(sorted(params.items())),
                         tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in tdict.items()))
