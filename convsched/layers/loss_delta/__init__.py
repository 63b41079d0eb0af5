"""Loss deltas of every single-weight mutation of a binary (or ternary) 3x3 conv under an objective head.

Seed 000 (is8ac/bnn). For one H x W image of C-bit pixels, conv weights O x 3 x 3 x C and an FC head, the
layer computes, for EVERY conv weight and every FC weight, how the integer loss changes when that one weight
is mutated, summed over a batch (or per example). Semantics (docs/loss_delta.md):

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

The fast path (docs/loss_delta.md): a flip changes one channel and moves each patch's count by exactly +-1
(ternary: +-1 or +-2), so only "sensitive" patches (count T or T+1; ternary band 2: T-1..T+2) can change state,
and after the flip a sensitive patch is on exactly when its input bit equals a known bit bx. The new count of a
segment is ON[s,o] + (bx ? G : S - G), G[s,o,i] = sum over the sensitive patches p of segment s of X[p,i];
the loss delta of a mutation is a sum of per-segment and per-pair terms over the segments it flips.
Stages of the compiled kernel (convsched/kernel/loss_delta.py):
  algorithm "forward<bits>" (TE, scheduled by schedules/loss_delta/forward.py; the popcount word by target:
                         forward_word_bits): "popc" (n, i, s_y, jj, o; reduce di, dj, cw) XOR-popcount counts
                         in the word type, then "mismatch" (int32) [ternary: "cost" = 2 * popc + zeros];
                         "rowbits" (n, f, i, s_y, rw, o): the active and sensitive flags of each segment row
                         packed into words; "stats" (n, s, f, o): active / on / sensitive counts per segment
  "conv<bits>":          the conv alone (its counts): what the floor measures
  host glue (numpy, O(B*S*O)): pooled bits, class scores and masks (class_scores, class_masks), FC deltas (fc_deltas_of)
  the delta stage:       hand-written TIR (convsched/backend/loss_delta.py; its knobs in
                         schedules/loss_delta/deltas.py): per channel and example the segments that can flip,
                         their sensitive patches, G as bit-sliced counters, the deltas of every mutation

The package holds the layer's jobs apart: layer.py (parameters, geometry, arguments), definition.py (the
oracle), fast.py (the host glue and fast_numpy, the fast algorithm in plain numpy), declare.py (the TE parts).
The compiled kernel that runs the parts and the glue is convsched/kernel/loss_delta.py.
"""
from .definition import TERNARY_STATES, LossDeltas
from .fast import TABLE_MAX_SEGMENTS, TERNARY_RULES
from .layer import LossDelta

__all__ = ["LossDelta", "LossDeltas", "TABLE_MAX_SEGMENTS", "TERNARY_STATES", "TERNARY_RULES"]
