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
        # channels in blocks of ob (one 64-byte line of counts), the patches inside: each line of counts is
        # read once, and the block's counters and list cursors stay in L1
        for n in T.parallel(batch):
            for s in range(S):
                for f in range(NF):
                    for o in range(cout):
                        stats[n, s, f, o] = 0
                for o_b in range(cout // ob):
                    for ii in range(hs):
                        for jj in range(ws):
                            for o_i in range(ob):
                                o = o_b * ob + o_i
                                i = (s // sy) * hs + ii
                                j = (s % sy) * ws + jj
                                c = counts[n, i, j, o]
                                stats[n, s, 0, o] = stats[n, s, 0, o] + T.Cast("int32", c > t1)
                                stats[n, s, 1, o] = stats[n, s, 1, o] + T.Cast("int32", c > t2)
                                if c >= t1 and c <= t2:
                                    lists[n, s, 0, o, stats[n, s, 2, o]] = i * width + j
                                    stats[n, s, 2, o] = stats[n, s, 2, o] + 1
                                if two:
                                    stats[n, s, 3, o] = stats[n, s, 3, o] + T.Cast("int32", c > u2)
                                    if c >= u1 and c <= u2:
                                        lists[n, s, 1, o, stats[n, s, 4, o]] = i * width + j
                                        stats[n, s, 4, o] = stats[n, s, 4, o] + 1

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
