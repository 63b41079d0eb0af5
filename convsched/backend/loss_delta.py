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
  3. per vector of mutation lanes (one patch row's 3 pixels of Cp bits = 3*Cp lanes per row di; rows of at
     most half a vector share one): G = the sum, over the list, of the input bits of each lane, as bit-sliced
     counters (ones / twos / fours / eights planes in registers, 16 patches at a time through a tree of
     carry-save adders, vpternlogq on AVX-512; the planes above in memory); then the mask of lanes whose
     pooled bit flips, by comparing the planes with the thresholds: (bx ? G > thr - on : G < on + S - thr)
     != old, bx = the weight bit (binary) or the ternary rule's bit;
  4. the loss delta of each lane: with d_k the change of class k's score and a_k = score_k - target_k,
     delta = sum_k (2 a_k d_k + d_k^2), and d_k = sum over the flipped segments s of e_ks (+1 where fc[k,s,o]
     equals the old bit, else -1), so delta = sum_{s flipped} lin_s + sum_{s<s' flipped} q_ss' with
     lin_s = sum_k (2 a_k e_ks + 1) and q_ss' = 2 sum_k e_ks e_ks' =
     2 classes - 4 |E_s ^ E_s'| (E_s the classes with e_ks = -1; from fc's class masks and the old bits):
     masked adds of broadcast terms over the lanes, for the unfixed segments only -- no 2^S table, no
     per-class masks, any number of segments.
The batch sum (reduce="sum") accumulates per channel; reduce="none" writes each example's row.

TVM 0.27 facts this code works around (each found here): a buffer of 1 KB or more, or of scope "local", is a
heap workspace, not registers (the chunk of G lanes stays below it); a let-bound value inside a while loop
became a heap scalar (the bit index is recomputed instead); CompactBufferAllocation shrank a buffer written
at a data-dependent index to a wrong region (each such buffer is first written whole); one 384-lane store
made LLVM split the register buffer into bytes (zeroing goes 64 lanes at a time).

Over 400 lines: one hand-written TIR function and the pieces it is built from, read only together.
"""
from __future__ import annotations

from functools import lru_cache

import tvm
from tvm.script import tirx as T

from . import Built

def deltas_func(*, h, w, cp, cout, segments, seg_shape, mask_bits, row_words, seg_threshold, nbands, classes,
                unit_bits, units, compress, ternlog, per_example, ternary, max_delta):
    """PrimFunc deltas(xb, w1, w2, stats, rowbits, a, fcm, out), see the module docstring.

    xb: the packed image bytes, Cp/8 bytes a pixel (+ 64 bytes of slack: a vector load may pass the last pixel);
    w1/w2: weight bits (O, 3, 3, Cp) as bytes (+ slack): binary the weight bits (w2 unused), ternary the +1
    and -1 planes; stats (B, S, 1 + 2 NB, O) int32 and rowbits (B, 1 + NB, SX*hs, SY, RW, O) from the
    forward part; a (B, classes) int32: score_k - target_k; fcm (S, O, KW) uint64: bit k of fc[k, s, o];
    out: (NT, O, 3, 3*Cp) int64 batch sums, or (B, NT, O, 3, 3*Cp) per example (NT = 3 target states for
    ternary weights, else 1).
    unit_bits: the width of the bit-sliced counters' vectors (128, 256 or 512: a patch row's 3*Cp bits in
    ceil(3*Cp / unit_bits) of them); units: vectors counted per pass over a patch list (their ones / twos /
    fours planes stay in registers); compress: build patch lists with vpcompressd (AVX-512) instead of a
    set-bit loop; ternlog: carry-save adders as vpternlogq (AVX-512; AVX512VL below 512 bits); max_delta: a
    bound of one example's |loss delta| (int32 lanes and sums when it allows)."""
    SX, SY = segments
    S = SX * SY
    hs, ws = seg_shape
    MB, RW = mask_bits, row_words
    mdt = f"uint{MB}"
    NB = nbands
    NF = 1 + 2 * NB
    O = cout
    RB = 3 * cp                          # mutation lanes of one patch row: 3 pixels of Cp bits
    NG = (RB + 63) // 64                 # 64-lane groups per row (the delta accumulation's unit)
    TL = RB - 64 * (NG - 1)              # lanes of a row's last group
    TG = 3 * NG
    VQ = unit_bits // 64                 # 64-bit words of one counter vector
    VB = unit_bits // 8
    # a row of at most half a vector shares it with the next rows, each in a slot of SLOT bits (128 or 256:
    # 32 channels on AVX-512: the 3 rows of 96 bits in one zmm, 3 loads, instead of three vectors 81% empty)
    SLOT = next(b for b in (128, 256, unit_bits) if b >= RB or b == unit_bits)
    RPU = unit_bits // SLOT if SLOT < unit_bits else 1       # rows per counter vector
    SQ = SLOT // 64
    NU = (RB + unit_bits - 1) // unit_bits if RPU == 1 else 1   # counter vectors per row (split rows)
    TU = 3 * NU if RPU == 1 else (3 + RPU - 1) // RPU       # counter vectors per channel
    VU = min(units, TU) if RPU == 1 else TU                 # counter vectors per pass over a list
    NPASS = (TU + VU - 1) // VU
    NHI = max(1, (hs * ws).bit_length() - 4)   # count planes above ones / twos / fours / eights
    PXB = cp // 8                        # bytes per pixel
    XB = h * w * PXB                     # bytes per image
    WB = 9 * PXB                         # weight bytes per channel
    KW = (classes + 63) // 64
    LCAP = hs * ws + 16                  # list capacity per (segment, band): a compress stores 16 lanes
    CPR = (min(MB, ws) + 15) // 16       # 16-patch compresses per row word (a row of 7 patches needs one)
    thr = seg_threshold
    NT = 3 if ternary else 1
    ALL = ~T.uint64(0)
    acc_t = "int32" if max_delta < 2 ** 31 else "int64"
    # batch sums in int32 lanes, added to the int64 output every FLUSH examples (and once at the end)
    FLUSH = max(1, (2 ** 31 - 1) // max(1, max_delta)) if acc_t == "int32" else 1

    @T.macro
    def build_list(lst, rowbits_, n_, o_, b_, i0, sy, u_):
        """The sensitive patches of one (segment, band) as pixel indices, in row order."""
        cur = T.alloc_buffer((2,), "int32", scope="global")
        cur[0] = 0
        for ii in range(hs):
            for rw in range(RW):
                if compress:
                    for hh in T.unroll(CPR):
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

    def bits_of(xb_, n_, pix, v):
        """Counter vector v's bits of the patch whose top-left pixel is pix: a part of one row, or the slots of
        rows v * RPU .. (packed rows: one pass, so v is a constant once the unit loop is unrolled, and the test
        of a slot past the third row folds away: that slot is zero, never loaded)."""
        if RPU == 1:
            return T.reinterpret(f"uint64x{VQ}", xb_[T.ramp(n_ * XB + (pix + (v // NU) * w) * PXB + (v % NU) * VB,
                                                            1, VB)])
        slots = [T.if_then_else(v * RPU + r < 3, T.reinterpret(f"uint64x{SQ}", xb_[T.ramp(
            n_ * XB + (pix + (v * RPU + r) * w) * PXB, 1, SLOT // 8)]), T.Broadcast(T.uint64(0), SQ))
            for r in range(RPU)]
        return T.Shuffle(slots, list(range(VQ)))

    def group_of(v, q):
        """(row, 64-bit group within the row) of word q of counter vector v; the group is past the row's
        groups (NG) for padding words."""
        if RPU == 1:
            return v // NU, (v % NU) * VQ + q
        return v * RPU + q // SQ, q % SQ

    def logic3(a, b_, c, imm, expr):
        """A 3-input bit function: one vpternlogq (AVX-512) or its expression."""
        if ternlog:
            return T.call_llvm_pure_intrin(f"uint64x{VQ}", f"llvm.x86.avx512.pternlog.q.{unit_bits}", a, b_, c,
                                           T.int32(imm))
        return expr(a, b_, c)

    def xor3(a, b_, c):
        return logic3(a, b_, c, 0x96, lambda x, y, z: x ^ y ^ z)

    def maj(a, b_, c):
        return logic3(a, b_, c, 0xE8, lambda x, y, z: (x & y) | (z & (x ^ y)))

    def vec(buf, i):
        return buf[T.ramp(i * VQ, 1, VQ)]

    @T.macro
    def count_pass(xb_, lst, lbase, cnt, n_, ub, v0, t1, t0, oldm, cm_):
        """Counter vectors v0 .. v0 + VU - 1 (vector v: row v // NU, bits (v % NU) * unit_bits ...) summed over
        the cnt patches of the list at lbase, bit-sliced: ones / twos / fours / eights planes in registers,
        16 patches at a time through a tree of carry-save adders (Harley-Seal), the sixteens rippled into the
        planes above (memory), the last cnt % 16 patches one by one; then per vector the flip masks
        (G > t1) ^ old and (G < t0) ^ old into cm_[ub, bx, group] for its 64-bit groups."""
        P = T.alloc_buffer((4 * VU * VQ,), "uint64", scope="global")       # plane q of vector vv: 4 * vv + q
        tmp = T.alloc_buffer((8 * VQ,), "uint64", scope="global")
        cmp = T.alloc_buffer((4 * VQ,), "uint64", scope="global")
        hi = T.alloc_buffer((NHI * VU * VQ,), "uint64", scope="global")
        for i in range(NHI * VU * VQ):
            hi[i] = T.uint64(0)
        for i in T.unroll(4 * VU):
            P[T.ramp(i * VQ, 1, VQ)] = T.Broadcast(T.uint64(0), VQ)
        # planes above eights this count needs: bit_length(cnt) - 4
        nhi: T.int32 = T.max(0, 28 - T.Cast("int32", T.call_llvm_pure_intrin(
            "int32", "llvm.ctlz.i32", T.max(cnt, 1), T.bool(False))))
        for k16 in range(cnt // 16):
            for vv in T.unroll(VU):
                if v0 + vv < TU:
                    # the tree over 16 patches: pairs into ones (carries: tmp 1, 2), twos (tmp 3, 4), fours (tmp
                    # 5, 6), eights (tmp 7: the sixteens); one loop body (unrolled: constant indices) instead of
                    # 15 calls of a macro, which TVMScript parses at every call
                    for j in T.unroll(8):
                        xa = T.meta_var(bits_of(xb_, n_, lst[lbase + k16 * 16 + 2 * j], v0 + vv))
                        xc = T.meta_var(bits_of(xb_, n_, lst[lbase + k16 * 16 + 2 * j + 1], v0 + vv))
                        tmp[T.ramp((1 + j % 2) * VQ, 1, VQ)] = maj(vec(P, 4 * vv), xa, xc)
                        P[T.ramp(4 * vv * VQ, 1, VQ)] = xor3(vec(P, 4 * vv), xa, xc)
                        if j % 2 == 1:
                            tmp[T.ramp((3 + j // 2 % 2) * VQ, 1, VQ)] = maj(vec(P, 4 * vv + 1), vec(tmp, 1), vec(tmp, 2))
                            P[T.ramp((4 * vv + 1) * VQ, 1, VQ)] = xor3(vec(P, 4 * vv + 1), vec(tmp, 1), vec(tmp, 2))
                        if j % 4 == 3:
                            tmp[T.ramp((5 + j // 4) * VQ, 1, VQ)] = maj(vec(P, 4 * vv + 2), vec(tmp, 3), vec(tmp, 4))
                            P[T.ramp((4 * vv + 2) * VQ, 1, VQ)] = xor3(vec(P, 4 * vv + 2), vec(tmp, 3), vec(tmp, 4))
                    tmp[T.ramp(7 * VQ, 1, VQ)] = maj(vec(P, 4 * vv + 3), vec(tmp, 5), vec(tmp, 6))
                    P[T.ramp((4 * vv + 3) * VQ, 1, VQ)] = xor3(vec(P, 4 * vv + 3), vec(tmp, 5), vec(tmp, 6))
                    for p in range(nhi):            # the sixteens into the planes above, rippling
                        tmp[T.ramp(0, 1, VQ)] = vec(hi, p * VU + vv) & vec(tmp, 7)
                        hi[T.ramp((p * VU + vv) * VQ, 1, VQ)] = vec(hi, p * VU + vv) ^ vec(tmp, 7)
                        tmp[T.ramp(7 * VQ, 1, VQ)] = vec(tmp, 0)
        for k in range(cnt % 16):
            for vv in T.unroll(VU):
                if v0 + vv < TU:
                    tmp[T.ramp(7 * VQ, 1, VQ)] = bits_of(xb_, n_, lst[lbase + cnt - cnt % 16 + k], v0 + vv)
                    for q in T.unroll(4):           # one patch: a ripple through the four planes ...
                        tmp[T.ramp(0, 1, VQ)] = vec(P, 4 * vv + q) & vec(tmp, 7)
                        P[T.ramp((4 * vv + q) * VQ, 1, VQ)] = vec(P, 4 * vv + q) ^ vec(tmp, 7)
                        tmp[T.ramp(7 * VQ, 1, VQ)] = vec(tmp, 0)
                    for p in range(nhi):            # ... and the ones above
                        tmp[T.ramp(0, 1, VQ)] = vec(hi, p * VU + vv) & vec(tmp, 7)
                        hi[T.ramp((p * VU + vv) * VQ, 1, VQ)] = vec(hi, p * VU + vv) ^ vec(tmp, 7)
                        tmp[T.ramp(7 * VQ, 1, VQ)] = vec(tmp, 0)
        # G > t1 and G < t0, most significant plane first (G < 2 ** bit_length(cnt): the planes above are 0)
        for vv in T.unroll(VU):
            if v0 + vv < TU:
                cmp[T.ramp(0, 1, VQ)] = T.Broadcast(T.uint64(0), VQ)             # G > t1 so far
                cmp[T.ramp(VQ, 1, VQ)] = T.Broadcast(ALL, VQ)                    # G == t1 so far
                cmp[T.ramp(2 * VQ, 1, VQ)] = T.Broadcast(T.uint64(0), VQ)        # G < t0 so far
                cmp[T.ramp(3 * VQ, 1, VQ)] = T.Broadcast(ALL, VQ)                # G == t0 so far
                for pp in range(nhi + 4):
                    Gp = T.meta_var(T.Select(pp < nhi, vec(hi, (nhi - 1 - pp) * VU + vv),
                                             vec(P, 4 * vv + T.max(0, 3 - T.max(0, pp - nhi)))))
                    bit = T.meta_var(nhi + 3 - pp)
                    b1 = T.meta_var(T.Broadcast(T.Select(((t1 >> bit) & 1) != 0, ALL, T.uint64(0)), VQ))
                    b0 = T.meta_var(T.Broadcast(T.Select(((t0 >> bit) & 1) != 0, ALL, T.uint64(0)), VQ))
                    cmp[T.ramp(0, 1, VQ)] = vec(cmp, 0) | (vec(cmp, 1) & Gp & ~b1)
                    cmp[T.ramp(VQ, 1, VQ)] = vec(cmp, 1) & ~(Gp ^ b1)
                    cmp[T.ramp(2 * VQ, 1, VQ)] = vec(cmp, 2) | (vec(cmp, 3) & ~Gp & b0)
                    cmp[T.ramp(3 * VQ, 1, VQ)] = vec(cmp, 3) & ~(Gp ^ b0)
                for q in T.unroll(VQ):
                    gr = T.meta_var(group_of(v0 + vv, q))
                    if gr[0] < 3 and gr[1] < NG:
                        cm_[ub, 1, gr[0] * NG + gr[1]] = cmp[q] ^ oldm
                        cm_[ub, 0, gr[0] * NG + gr[1]] = cmp[2 * VQ + q] ^ oldm

    @T.prim_func
    def deltas(xb_h: T.handle, w1_h: T.handle, w2_h: T.handle, stats_h: T.handle, rowbits_h: T.handle,
               a_h: T.handle, fcm_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": "deltas", "tir.noalias": True})
        batch = T.int32()
        nx = T.int32()
        nw = T.int32()
        xb = T.match_buffer(xb_h, (nx,), "uint8")
        w1 = T.match_buffer(w1_h, (nw,), "uint8")
        w2 = T.match_buffer(w2_h, (nw,), "uint8")
        stats = T.match_buffer(stats_h, (batch, S, NF, O), "int32")
        rowbits = T.match_buffer(rowbits_h, (batch, 1 + NB, SX * hs, SY, RW, O), mdt)
        a = T.match_buffer(a_h, (batch, classes), "int32")
        fcm = T.match_buffer(fcm_h, (S, O, KW), "uint64")
        if per_example:
            out = T.match_buffer(out_h, (batch, NT, O, 3, RB), "int64")
        else:
            out = T.match_buffer(out_h, (NT, O, 3, RB), "int64")
        for o in T.parallel(O):
            # per unfixed segment u: its index, old bit (all ones or 0), and per band: unfixed?, G thresholds,
            # sensitive count; the patch lists; the flip masks; the terms of one group; the channel's sums
            us = T.alloc_buffer((S + 1,), "int32", scope="global")
            uold = T.alloc_buffer((S + 1,), "uint64", scope="global")
            ufl = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            ut1 = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            ut0 = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            usc = T.alloc_buffer((S * NB + 1,), "int32", scope="global")
            nu = T.alloc_buffer((2,), "int32", scope="global")
            anyf = T.alloc_buffer((2,), "int32", scope="global")
            state = T.alloc_buffer((2,), "int32", scope="global")        # [flushed once, sums pending]
            lists = T.alloc_buffer((S * NB * LCAP,), "int32", scope="global")
            cm = T.alloc_buffer((S * NB, 2, TG), "uint64", scope="global")
            ch = T.alloc_buffer((S + 1,), "uint64", scope="global")
            ulin = T.alloc_buffer((S + 1,), "int32", scope="global")
            acc = T.alloc_buffer((64,), acc_t, scope="global")
            pc = T.alloc_buffer((2,), "int32", scope="global")
            row = T.alloc_buffer((NT * 3 * NG * 64,), acc_t, scope="global")
            # whole-buffer writes first (see the module docstring: CompactBufferAllocation)
            for i in range(S + 1):
                us[i] = 0
                uold[i] = T.uint64(0)
                ch[i] = T.uint64(0)
                ulin[i] = 0
            for i in range(S * NB + 1):
                ufl[i] = 0
                ut1[i] = 0
                ut0[i] = 0
                usc[i] = 0
            for i in range(S * NB * LCAP):
                lists[i] = 0
            for i0, i1, i2 in T.grid(S * NB, 2, TG):
                cm[i0, i1, i2] = T.uint64(0)
            for i in range(NT * 3 * NG):
                row[T.ramp(i * 64, 1, 64)] = T.Broadcast(T.Cast(acc_t, 0), 64)
            state[0] = 0
            state[1] = 0
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
                    # the loss delta when segment u alone flips: lin_u = sum_k (2 a_k e_ku + 1) = classes +
                    # 2 sum_k a_k - 4 sum of a_k over E_u (the classes whose fc bit differs from the old bit)
                    for u in range(nuv):
                        pc[0] = 0
                        pc[1] = 0
                        for k in range(classes):
                            pc[0] = pc[0] + a[n, k]
                            pc[1] = pc[1] + T.Select(((fcm[us[u], o, k // 64] ^ uold[u]) >> T.Cast("uint64", k % 64))
                                                     & T.uint64(1) != T.uint64(0), a[n, k], 0)
                        ulin[u] = classes + 2 * pc[0] - 4 * pc[1]
                    # 2. the sensitive patches of each unfixed (segment, band); 3. their bit sums and flip masks
                    for u in range(nuv):
                        for b in range(NB):
                            if ufl[u * NB + b] != 0:
                                build_list(lists, rowbits, n, o, b, (us[u] // SY) * hs, us[u] % SY, u * NB + b)
                                for c in range(NPASS):
                                    count_pass(xb, lists, (u * NB + b) * LCAP, usc[u * NB + b], n, u * NB + b,
                                               c * VU, ut1[u * NB + b], ut0[u * NB + b], uold[u], cm)
                            else:
                                for gl in range(TG):
                                    cm[u * NB + b, 0, gl] = T.uint64(0)
                                    cm[u * NB + b, 1, gl] = T.uint64(0)
                    # 4. the loss deltas of each group's lanes
                    for gl in range(TG):
                        di = T.meta_var(gl // NG)
                        g = T.meta_var(gl % NG)
                        wa = T.meta_var(T.reinterpret("uint64", w1[T.ramp(o * WB + di * (RB // 8) + g * 8, 1, 8)]))
                        wm = T.meta_var(T.reinterpret("uint64", w2[T.ramp(o * WB + di * (RB // 8) + g * 8, 1, 8)]))
                        for t in range(NT):
                            # the lanes whose segment u flips under this group's mutations
                            for u in range(nuv):
                                if ternary:
                                    # by target state t (+1, 0, -1) and current state (wa: +1, wm: -1, neither:
                                    # 0) the (band, bx) of LossDelta's TERNARY_RULES: +1: 0 -> (1, 0),
                                    # -1 -> (2, 0); 0: +1 -> (1, 1), -1 -> (1, 0); -1: +1 -> (2, 1),
                                    # 0 -> (1, 1); the current state itself: no flip
                                    ch[u] = T.Select(
                                        t == 0, (~(wa | wm) & cm[u * NB, 0, gl]) | (wm & cm[u * NB + NB - 1, 0, gl]),
                                        T.Select(t == 1, (wa & cm[u * NB, 1, gl]) | (wm & cm[u * NB, 0, gl]),
                                                 (wa & cm[u * NB + NB - 1, 1, gl]) | (~(wa | wm) & cm[u * NB, 1, gl])))
                                else:
                                    ch[u] = (wa & cm[u, 1, gl]) | (~wa & cm[u, 0, gl])
                            for l8 in T.unroll(4):
                                acc[T.ramp(l8 * 16, 1, 16)] = T.Broadcast(T.Cast(acc_t, 0), 16)
                            for u in range(nuv):
                                acc[T.ramp(0, 1, 64)] = acc[T.ramp(0, 1, 64)] + T.Select(
                                    T.Cast("boolx64", T.reinterpret("uint1x64", ch[u])),
                                    T.Broadcast(T.Cast(acc_t, ulin[u]), 64), T.Broadcast(T.Cast(acc_t, 0), 64))
                                for u2 in range(nuv):
                                    if u2 > u:
                                        pc[0] = 0
                                        for kw in range(KW):
                                            pc[0] = pc[0] + T.Cast("int32", T.popcount(fcm[us[u], o, kw] ^ fcm[us[u2], o, kw]))
                                        acc[T.ramp(0, 1, 64)] = acc[T.ramp(0, 1, 64)] + T.Select(
                                            T.Cast("boolx64", T.reinterpret("uint1x64", ch[u] & ch[u2])),
                                            T.Broadcast(T.Cast(acc_t, 2 * classes - 4 * T.Select(
                                                uold[u] == uold[u2], pc[0], classes - pc[0])), 64),
                                            T.Broadcast(T.Cast(acc_t, 0), 64))
                            if per_example:
                                if g == NG - 1:
                                    out[n, t, o, di, T.ramp(g * 64, 1, TL)] = T.Cast(f"int64x{TL}", acc[T.ramp(0, 1, TL)])
                                else:
                                    out[n, t, o, di, T.ramp(g * 64, 1, 64)] = T.Cast("int64x64", acc[T.ramp(0, 1, 64)])
                            else:
                                row[T.ramp(((t * 3 + di) * NG + g) * 64, 1, 64)] = (
                                    row[T.ramp(((t * 3 + di) * NG + g) * 64, 1, 64)] + acc[T.ramp(0, 1, 64)])
                    state[1] = 1
                if not per_example:
                    # the int32 sums into the int64 output before they could overflow, and at the end: a store
                    # the first time (the output row is written once per call when the batch fits a flush)
                    if (state[1] != 0 and ((n + 1) % FLUSH == 0 or n == batch - 1)) or (n == batch - 1 and state[0] == 0):
                        for t, di, gz in T.grid(NT, 3, NG):
                            if state[0] == 0:
                                if gz == NG - 1:
                                    out[t, o, di, T.ramp(gz * 64, 1, TL)] = T.Cast(
                                        f"int64x{TL}", row[T.ramp(((t * 3 + di) * NG + gz) * 64, 1, TL)])
                                else:
                                    out[t, o, di, T.ramp(gz * 64, 1, 64)] = T.Cast(
                                        "int64x64", row[T.ramp(((t * 3 + di) * NG + gz) * 64, 1, 64)])
                            else:
                                if gz == NG - 1:
                                    out[t, o, di, T.ramp(gz * 64, 1, TL)] = out[t, o, di, T.ramp(gz * 64, 1, TL)] + T.Cast(
                                        f"int64x{TL}", row[T.ramp(((t * 3 + di) * NG + gz) * 64, 1, TL)])
                                else:
                                    out[t, o, di, T.ramp(gz * 64, 1, 64)] = out[t, o, di, T.ramp(gz * 64, 1, 64)] + T.Cast(
                                        "int64x64", row[T.ramp(((t * 3 + di) * NG + gz) * 64, 1, 64)])
                            row[T.ramp(((t * 3 + di) * NG + gz) * 64, 1, 64)] = T.Broadcast(T.Cast(acc_t, 0), 64)
                        state[0] = 1
                        state[1] = 0
    return deltas


def packable(cin: int) -> bool:
    """Whether pack_func handles images of `cin` channels: whole 64-bit words per pixel, or one 8/16/32-bit one
    (the words then have no pad bits)."""
    return cin % 64 == 0 or cin in (8, 16, 32)


def pack_func(*, pixels, cin):
    """PrimFunc pack(x, xb, bad): images of `pixels` pixels of `cin` 0/1 bytes each (uint8 or bool, any
    alignment) -> their bits, cin / 8 bytes a pixel, into xb; bad[n] = 1 where image n has a byte other than 0
    or 1. A 64-byte chunk is one vpsllw + vpmovb2m + kmov on AVX-512 (LLVM's lowering of a bool truncation),
    where numpy's check + packbits + copy made three passes over the bytes."""
    assert packable(cin)
    CH = min(64, cin)                   # bytes (= bits) per chunk
    NQ = cin // CH
    wdt = f"uint{CH}"

    def high_bits(v):
        """The OR of the bits above bit 0 of the CH bytes of v, as one uint64."""
        words_ = T.reinterpret("uint64" if CH == 8 else f"uint64x{CH // 8}", v & T.Broadcast(T.uint8(0xFE), CH))
        if CH == 8:
            return words_
        return T.call_llvm_pure_intrin("uint64", f"llvm.vector.reduce.or.v{CH // 8}i64", words_)

    @T.prim_func
    def pack(x_h: T.handle, xb_h: T.handle, bad_h: T.handle):
        T.func_attr({"global_symbol": "pack", "tir.noalias": True})
        batch = T.int32()
        nxb = T.int32()
        x = T.match_buffer(x_h, (batch * pixels * cin,), "uint8", align=1, offset_factor=1)
        xb = T.match_buffer(xb_h, (nxb,), "uint8")
        bad = T.match_buffer(bad_h, (batch,), "uint8")
        for n in T.parallel(batch):
            acc = T.alloc_buffer((CH,), "uint8", scope="global")
            acc[T.ramp(0, 1, CH)] = T.Broadcast(T.uint8(0), CH)
            for p, q in T.grid(pixels, NQ):
                acc[T.ramp(0, 1, CH)] = acc[T.ramp(0, 1, CH)] | x[T.ramp(((n * pixels + p) * NQ + q) * CH, 1, CH)]
                if CH == 8:
                    xb[(n * pixels + p) * NQ + q] = T.reinterpret(wdt, T.Cast(f"uint1x{CH}", x[T.ramp(
                        ((n * pixels + p) * NQ + q) * CH, 1, CH)]))
                else:
                    xb[T.ramp(((n * pixels + p) * NQ + q) * (CH // 8), 1, CH // 8)] = T.reinterpret(
                        f"uint8x{CH // 8}", T.reinterpret(wdt, T.Cast(f"uint1x{CH}", x[T.ramp(
                            ((n * pixels + p) * NQ + q) * CH, 1, CH)])))
            bad[n] = T.Cast("uint8", high_bits(acc[T.ramp(0, 1, CH)]) != T.uint64(0))
    return pack


@lru_cache(maxsize=64)
def _build_pack(pixels, cin, target_dict_items):
    ex = tvm.compile(tvm.IRModule({"pack": pack_func(pixels=pixels, cin=cin)}),
                     target=tvm.target.Target(dict(target_dict_items)))
    return Built(ex, None, name="pack")


def build_pack(pixels: int, cin: int, target) -> Built:
    """The compiled pack_func for images of `pixels` pixels of `cin` channels on `target` (cached)."""
    tdict = target.to_tvm()
    return _build_pack(pixels, cin, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in tdict.items()))


@lru_cache(maxsize=64)
def _deltas_parsed(params):
    """deltas_func(**params), parsed once per process (TVMScript takes ~0.3 s for it)."""
    return deltas_func(**dict(params))


@lru_cache(maxsize=64)
def _build_cached(params, target_dict_items):
    ex = tvm.compile(tvm.IRModule({"deltas": _deltas_parsed(params)}), target=tvm.target.Target(dict(target_dict_items)))
    return Built(ex, None, name="deltas")


def build_deltas(params: dict, target) -> Built:
    """The compiled delta function for deltas_func(**params) on `target` (cached per parameters and target)."""
    tdict = target.to_tvm()
    return _build_cached(tuple(sorted(params.items())),
                         tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in tdict.items()))


def deltas_script(params: dict) -> str:
    """The TVMScript of deltas_func(**params): the stage's loop nest, for describe()."""
    return _deltas_parsed(tuple(sorted(params.items()))).script()
