"""Loss deltas of every conv weight from the sensitive-patch lists: stages "gather" (+ "gather2" for ternary
weights), "code" (+ "vdelta" for ternary) and "dsum" (batch sum) or "delta" (per example).

Loop nest (reduce="sum"):
    parallel o
      n                                   the batch reduction
        gather: s, k, di, dj, c_o, c_i    G[s, :] += input bits (di, dj, c) of sensitive patch k of row (n, s, o)
                                          (uint8 loads widened to int16 lanes; k loops to the longest list,
                                          a guard skips k past this row's count: 1024->1024 deltas 14.6 ->
                                          8.5 ms per example vs padding every row, 1 thread, Zen 3, pinned)
        dsum:   di, dj, c_o, c_i          += the loss delta of the set of segments whose pooled bit the mutation
                                          flips ("code", inlined here; or its own stage per row: code_at=row),
                                          by table lookup or per-class masks; skipped for dead rows (live = 0:
                                          no segment of (n, o) can change), 1024->1024 6.8 -> 5.5 ms/example
Everything under (o, n) lives in L1: G is 9C int16 per segment.
"""
from convsched.layers.loss_delta import TABLE_MAX_SEGMENTS
from convsched.schedule import divisors

LAYER = "loss_delta"
ALGORITHM = "deltas"


def _c_vecs(layer, target):
    return divisors(layer.cin, 32)


KNOBS = {
    "c_vec": _c_vecs,              # channels per vectorized inner loop (a divisor of cin)
    "parallel": [True, False],     # parallel over channels o (sum) or (example, channel) pairs (none)
    # "inline": the changed-segment code computed inside the batch sum, so that a dead (example, channel)
    # row skips it with the lookup; "row": a stage per (o, n) row (then it runs for dead rows too)
    "code_at": ["inline", "row"],
}


def defaults(layer, target):
    # one vector of G lanes (16 int16 or 32 uint8 on AVX2), but at most 16 channels on the per-class mask
    # path (> 8 segments), whose int32 arithmetic per mutation runs out of registers wider (4x4 segments
    # 32->32: c_vec=32 155 us/example vs 16 116; 2x2 uint8: c_vec=32 40 us vs 16 57; 1 thread, Zen 3, pinned)
    widest = target.lanes(layer.gather_dtype) if layer.nseg <= TABLE_MAX_SEGMENTS else 16
    return {"c_vec": max(d for d in _c_vecs(layer, target) if d <= min(widest, 32)), "parallel": True,
            "code_at": "inline"}


def _vectorize_c(st, c, c_vec, tag):
    if c_vec > 1:
        _, c_i = st.split(c, c_vec, names=(f"{tag}_c_o", f"{tag}_c_i"))
        st.vectorize(c_i)


def schedule(s, layer, c_vec, parallel, code_at="row"):
    ternary = layer.weights == "ternary"
    if "dsum" in s:
        out, outer = s["dsum"], ("o", "n")
    else:
        out, outer = s["delta"], ("n", "o")
    out.reorder(*outer, "di", "dj", *(("t", "c") if ternary else ("c",)))
    for st in ("vdelta", "code"):          # consumers first: each lands under the loop its consumer sits in
        if st in s:
            if code_at == "inline" and "dsum" in s:
                s[st].compute_inline()
                continue
            s[st].compute_at(out, outer[1])
            ax = s[st].axes                 # ..., n, o, di, dj, c[, v] (TVM's names)
            if ternary:
                s[st].reorder(ax[-1], ax[-2])
            _vectorize_c(s[st], ax[-2] if ternary else ax[-1], c_vec, st)
    k_axis = {}
    for g in ("gather", "gather2"):
        if g not in s:
            continue
        gs = s[g]
        gs.compute_at(out, outer[1])
        ax = gs.axes                       # ..., n, s, o, di, dj, c, k (TVM's names)
        s_, di, dj, c, k = ax[-6], ax[-4], ax[-3], ax[-2], ax[-1]
        gs.reorder(s_, k, di, dj, c)
        k_axis[g] = k
        _vectorize_c(gs, c, c_vec, g)
    _vectorize_c(out, "c", c_vec, out.name)
    if parallel:
        if "dsum" in s:
            out.parallel("o")
        else:
            out.parallel(out.fuse("n", "o", name="no"))
    for g, k in k_axis.items():            # after parallel/vectorize, as TVM wants
        s[g].decompose_reduction(k)
    if "dsum" in s:
        out.decompose_reduction("n")
