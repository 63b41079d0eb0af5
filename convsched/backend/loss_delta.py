"""Compiled glue for the loss-delta layer (convsched.layers.loss_delta): classify the forward counts and
compact the sensitive patches of every (example, segment, channel) row into lists.

This step is a data-dependent compaction (append to a per-row list), which TE cannot declare, so it is one
hand-written TIR function. It is linear in the forward output (B x P x O) and does no per-weight work.
"""
from __future__ import annotations

from functools import lru_cache

import tvm
from tvm.script import tirx as T

from . import Built


def classify_func(ph, pw, cout, segments, seg_shape, width, threshold, nbands):
    """PrimFunc classify(counts (B, PH, PW, O) int32, stats (B, S, NF, O) int32, lists (B, S, NB, O, n_seg)
    int32). stats[:, :, 0] = active patches (count > T); per band b: stats[:, :, 1 + 2b] = patches that stay
    on (count > hi), stats[:, :, 2 + 2b] = sensitive patches (lo <= count <= hi), whose flat pixel offsets
    (row * width + col) lists[:, :, b, o, :that many] holds in patch order."""
    S = segments[0] * segments[1]
    sy = segments[1]
    hs, ws = seg_shape
    nseg = hs * ws
    NF = 1 + 2 * nbands
    t1, t2 = threshold, threshold + 1
    u1, u2 = threshold - 1, threshold + 2
    two = nbands == 2
    ob = max(d for d in range(1, 17) if cout % d == 0)

    @T.prim_func
    def classify(counts_h: T.handle, stats_h: T.handle, lists_h: T.handle):
        T.func_attr({"global_symbol": "classify", "tir.noalias": True})
        batch = T.int32()
        counts = T.match_buffer(counts_h, (batch, ph, pw, cout), "int32")
        stats = T.match_buffer(stats_h, (batch, S, NF, cout), "int32")
        lists = T.match_buffer(lists_h, (batch, S, nbands, cout, nseg), "int32")
        # Channels in blocks of ob (one 64-byte line of counts), the patches of the segment inside: each line
        # of counts is read from L2 twice (once per loop below) and the block's counters and list cursors
        # stay in L1. The counters are a vectorized loop over the block; the compaction is scalar but
        # branch-free (always store at the cursor, advance it by 0 or 1): ~8% of patches are sensitive at
        # random, a branch on it mispredicted often enough to make this function cost 2-3x the forward conv.
        for n in T.parallel(batch):
            for s in range(S):
                for f in range(NF):
                    for o in T.vectorized(cout):
                        stats[n, s, f, o] = 0
                for o_b in range(cout // ob):
                    for ii in range(hs):
                        for jj in range(ws):
                            # (no let-bound names in this vectorized loop: TVM 0.27 then stored one lane)
                            for o_i in T.vectorized(ob):
                                stats[n, s, 0, o_b * ob + o_i] = stats[n, s, 0, o_b * ob + o_i] + T.Cast(
                                    "int32", counts[n, (s // sy) * hs + ii, (s % sy) * ws + jj, o_b * ob + o_i] > t1)
                                stats[n, s, 1, o_b * ob + o_i] = stats[n, s, 1, o_b * ob + o_i] + T.Cast(
                                    "int32", counts[n, (s // sy) * hs + ii, (s % sy) * ws + jj, o_b * ob + o_i] > t2)
                                if two:
                                    stats[n, s, 3, o_b * ob + o_i] = stats[n, s, 3, o_b * ob + o_i] + T.Cast(
                                        "int32",
                                        counts[n, (s // sy) * hs + ii, (s % sy) * ws + jj, o_b * ob + o_i] > u2)
                    for ii in range(hs):
                        for jj in range(ws):
                            for o_i in range(ob):
                                lists[n, s, 0, o_b * ob + o_i, stats[n, s, 2, o_b * ob + o_i]] = \
                                    ((s // sy) * hs + ii) * width + (s % sy) * ws + jj
                                stats[n, s, 2, o_b * ob + o_i] = stats[n, s, 2, o_b * ob + o_i] + T.Cast(
                                    "int32", T.Cast("uint32", counts[n, (s // sy) * hs + ii, (s % sy) * ws + jj,
                                                                     o_b * ob + o_i] - t1) <= T.uint32(1))
                                if two:
                                    lists[n, s, 1, o_b * ob + o_i, stats[n, s, 4, o_b * ob + o_i]] = \
                                        ((s // sy) * hs + ii) * width + (s % sy) * ws + jj
                                    stats[n, s, 4, o_b * ob + o_i] = stats[n, s, 4, o_b * ob + o_i] + T.Cast(
                                        "int32", T.Cast("uint32", counts[n, (s // sy) * hs + ii, (s % sy) * ws + jj,
                                                                         o_b * ob + o_i] - u1) <= T.uint32(3))

    return classify


@lru_cache(maxsize=64)
def _build_cached(key, target_dict_items):
    args, tdict = key, dict(target_dict_items)
    func = classify_func(*args)
    ex = tvm.compile(tvm.IRModule({"classify": func}), target=tvm.target.Target(tdict))
    return Built(ex, None, name="classify")


def build_classify(layer, target) -> Built:
    """The compiled classify function for a LossDelta layer (cached per geometry and target)."""
    args = (layer.ph, layer.pw, layer.cout, tuple(layer.segments) if layer.head == "segmented" else (1, 1),
            tuple(layer.seg_shape), layer.w, layer.threshold, len(layer.bands()))
    tdict = target.to_tvm()
    return _build_cached(args, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in tdict.items()))
