"""Mutation training of binary nets with the loss-delta layer (seed 000): the loop users would otherwise rewrite.

A `cs.layers.LossDelta` kernel gives, for one minibatch, the exact change of the integer loss for every
single-weight mutation of a binary (or ternary) 3x3 conv and its FC head. Training by mutation applies the
mutations with the most negative deltas, draws the next minibatch, and repeats:

    ld = cs.layers.LossDelta(h=10, w=10, cin=8, cout=32, classes=10, head="segmented", segments=(2, 2))
    opt = MutationOptimizer(ld, cs.compile(ld), flips=16, per_channel=1, seed=0)   # or ld.fast_numpy
    conv_w, fc_w = opt.init_weights()
    step = opt.step(images[idx], labels[idx], conv_w, fc_w)      # -> Step(conv_w, fc_w, flips, ...)

`train_layer` runs epochs of such steps over a training set; `Net` stacks layers trained one at a time (each
with its own head, then frozen, its output bits the next layer's input). `Forward` evaluates a layer's conv +
head on a fixed set of images (the im2col patches cached once: layer-by-layer training never changes a
layer's input), with the definition's semantics (DESIGN.md, "The loss-delta layer"); the tests check it
equals `LossDelta.loss` exactly. `Trained.with_prototypes` / `fit_prototypes` refit a frozen layer's head
with several rows per class (Hamming k-means): the same head semantics, a stronger classifier (see there).

Why the step is built this way:
- Deltas are exact for ONE mutation. Flips of different conv channels interact only through the head's
  scores, flips in one channel interact through the shared activations, so a step takes at most
  `per_channel` mutations per conv channel (and one per weight, ternary weights having two mutations each).
  FC flips of one class interact by at most 2 per example (the loss is quadratic in a class's score), so
  they are not capped.
- accept="check" (default) recomputes the minibatch loss after the step; if the combined flips did not lower
  it, the step is undone and only the single best mutation is applied, whose effect is exactly its delta:
  every checked step lowers the minibatch loss. accept="always" skips the check (its forward passes; the
  loss can then rise on a step, as with SGD).
- `flips` may be a function of the step number: an annealing schedule (many flips early, few late).
- Ties between equal deltas (they are small integers) are broken by a seeded random key, so a run is
  deterministic given its seed and its delta function, whichever exact implementation computes the deltas
  (the compiled kernel and `fast_numpy` give identical trajectories).

This module sits above the kernels: it only calls the delta function it is given and the layer's public
numpy definitions (`patches`, `seg_bits`, `loss_of_bits`, `canon_inputs`, `loss`); it imports no compiler
(nothing of the package but TERNARY_STATES from convsched.layers).

Over 400 lines: the optimiser and the training loops around it, used together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import numpy as np

from .bits import as_bits, hamming
from .layers.loss_delta import TERNARY_STATES     # the target states along a ternary layer's last delta axis


class Flip(NamedTuple):
    """One mutation: `part` "conv" or "fc", `index` into that weight array, `value` the array's new entry (a bit
    0/1, or a ternary state -1/0/+1), `delta` the loss change the delta function predicted for it alone."""
    part: str
    index: tuple
    value: int
    delta: int


class Step(NamedTuple):
    """What one optimiser step did. conv_w / fc_w are new arrays (the inputs are not modified). loss_before /
    loss_after are minibatch sums (None with accept="always"). fallback: the combined flips did not lower
    the loss, so only the best single flip was applied."""
    conv_w: np.ndarray
    fc_w: np.ndarray
    flips: list
    loss_before: int | None
    loss_after: int | None
    fallback: bool


def apply_flips(flips, conv_w, fc_w):
    """New (conv_w, fc_w) with the flips applied (copies)."""
    cw, fw = np.array(conv_w, copy=True), np.array(fc_w, copy=True)
    for f in flips:
        (cw if f.part == "conv" else fw)[f.index] = f.value
    return cw, fw


class Forward:
    """A LossDelta layer's forward pass (conv, activations, pooled bits, head scores, loss) on a fixed set of
    images, the definition's semantics. The im2col patches are computed once (uint8, (N, P, 9C)); a call
    on rows `idx` is one float32 matrix product (0/1 products summed over <= 9C < 2^24 terms: exact)."""

    def __init__(self, layer, images):
        self.layer = layer
        x = as_bits(images, (layer.h, layer.w, layer.cin), "Forward: images (bits)", batch=True)
        self.n = len(x)
        self.patches = layer.patches(x).reshape(self.n, layer.ph * layer.pw, -1)   # N, P, 9C uint8
        self.ones = self.patches.sum(-1, dtype=np.int64)                          # N, P
        self._last = None             # (rows, weights, float32 patches, counts) of the last minibatch call

    def counts(self, conv_w, idx=None) -> np.ndarray:
        """(B, PH, PW, O) int64: mismatches (binary) or cost (ternary), as LossDelta.counts.

        A call on the same minibatch rows as the last one reuses its patches and recomputes only the channels
        whose weights changed: an optimiser step evaluates the loss before and after a few flips, and a conv
        flip changes one channel (on layer 2 of examples/train_digits.py the check took more time than the
        compiled loss deltas before this)."""
        L = self.layer
        W = np.array(conv_w, copy=True).reshape(L.cout, -1)
        last = self._last
        if idx is not None and last is not None and np.array_equal(last[0], idx):
            _, W0, X, c = last
            changed = np.flatnonzero((W != W0).any(1))
            if len(changed):
                c = c.copy()
                c[..., changed] = self._counts(X, W[changed], np.asarray(idx))
        else:
            r = slice(None) if idx is None else np.asarray(idx)
            X = self.patches[r].astype(np.float32)
            c = self._counts(X, W, r)
        if idx is not None:
            self._last = (np.array(idx, copy=True), W, X, c)
        return c.reshape(-1, L.ph, L.pw, L.cout)

    def _counts(self, X, W, rows) -> np.ndarray:
        """Counts (B, P, len(W)) of weight rows W (K, 9C) on float32 patches X (B, P, 9C)."""
        return self.layer.counts_of_patches(X, W, self.ones[rows][..., None])

    def bits(self, conv_w, idx=None) -> np.ndarray:
        """The conv's output bits (B, PH, PW, O) uint8: what a frozen layer feeds to the next."""
        return (self.counts(conv_w, idx) > self.layer.threshold).astype(np.uint8)

    def pooled(self, conv_w, idx=None) -> np.ndarray:
        """The head's input bits (B, S, O)."""
        return self.layer.seg_bits(self.bits(conv_w, idx))

    def fc(self, fc_w) -> np.ndarray:
        """fc_w in the layer's canonical head shape (classes, S, O)."""
        return self.layer.canon_fc(fc_w)

    def scores(self, conv_w, fc_w, idx=None) -> np.ndarray:
        """(B, classes) score_k = popcount(fc[k] XOR pooled). The loss wants score = all bits for the label and
        0 for the others, so the prediction is the class with the highest score."""
        return hamming(self.pooled(conv_w, idx), self.fc(fc_w))

    def class_scores(self, conv_w, fc_w, idx=None, prototypes: int = 1) -> np.ndarray:
        """(B, classes // prototypes): each class's best prototype score (head class c * prototypes + j is
        prototype j of class c)."""
        s = self.scores(conv_w, fc_w, idx)
        return s.reshape(len(s), -1, prototypes).max(2)

    def predict(self, conv_w, fc_w, idx=None, prototypes: int = 1) -> np.ndarray:
        return self.class_scores(conv_w, fc_w, idx, prototypes).argmax(1)

    def loss(self, conv_w, fc_w, labels, idx=None) -> np.ndarray:
        """Per-example loss (B,) int64, = LossDelta.loss on the same arrays."""
        return self.layer.loss_of_bits(self.pooled(conv_w, idx), np.asarray(labels), self.fc(fc_w))[0]


class MutationOptimizer:
    """Applies the mutations with the most negative loss deltas over a minibatch.

    layer: the cs.layers.LossDelta. deltas: a callable (images, labels, conv_w, fc_w) -> LossDeltas summed
    over the batch: the compiled kernel (cs.compile(layer)), layer.fast_numpy, layer.reference, ...
    flips: mutations per step, an int or a function of the step number (0, 1, ...): an annealing schedule.
    fc_flips: None: `flips` is one budget for conv and FC mutations ranked together; else (int or function)
    `flips` budgets the conv mutations and fc_flips the FC ones (an FC bit moves one class's score by 1, a
    conv flip moves pooled bits of many examples: their deltas are on different scales, and the head has
    more bits to set than a step of conv flips can afford).
    per_channel: at most this many conv mutations per output channel in one step (None: no cap).
    parts: which weights may mutate ("conv", "fc").
    accept: "check" (undo a step that did not lower the minibatch loss and apply the best single mutation
    instead) or "always".
    seed: the random tie-breaking between equal deltas (and init_weights).
    """

    def __init__(self, layer, deltas: Callable, *, flips=8, fc_flips=None, per_channel: int | None = 1,
                 parts=("conv", "fc"), accept: str = "check", seed: int = 0):
        if accept not in ("check", "always"):
            raise ValueError(f"MutationOptimizer: accept must be 'check' or 'always', got {accept!r}")
        if not set(parts) <= {"conv", "fc"} or not parts:
            raise ValueError(f"MutationOptimizer: parts must be a non-empty subset of ('conv', 'fc'), got {parts}")
        if per_channel is not None and per_channel < 1:
            raise ValueError("MutationOptimizer: per_channel must be >= 1 or None")
        self.layer, self.deltas, self.flips, self.fc_flips = layer, deltas, flips, fc_flips
        self.per_channel, self.parts, self.accept = per_channel, tuple(parts), accept
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.delta_seconds = 0.0      # time spent in the delta function: the part a faster kernel speeds up

    def init_weights(self):
        """Random (conv_w, fc_w): uniform bits, or uniform ternary states."""
        L = self.layer
        if L.weights == "ternary":
            cw = self.rng.integers(-1, 2, (L.cout, 3, 3, L.cin)).astype(np.int8)
        else:
            cw = self.rng.integers(0, 2, (L.cout, 3, 3, L.cin), dtype=np.uint8)
        return cw, self.rng.integers(0, 2, L.fc_shape, dtype=np.uint8)

    @staticmethod
    def _count(sched, step) -> int | None:
        if sched is None:
            return None
        return max(1, int(sched(step) if callable(sched) else sched))

    def n_flips(self, step: int | None = None) -> tuple:
        """(conv or joint budget, FC budget or None) at this step."""
        step = self.steps if step is None else step
        return self._count(self.flips, step), self._count(self.fc_flips, step)

    def _candidates(self, part, deltas):
        """(deltas < 0, their flat indices), best first; equal deltas in a random (seeded) order."""
        L = self.layer
        d = np.asarray(deltas.conv if part == "conv" else deltas.fc)
        want = tuple(L.conv_shape if part == "conv" else L.fc_shape)
        if d.shape != want:
            raise ValueError(f"MutationOptimizer: {part} deltas must be batch sums of shape {want}, got {d.shape}")
        flat = np.flatnonzero(d < 0)
        dv = d.reshape(-1)[flat]
        order = np.lexsort((self.rng.random(dv.size), dv))
        return dv[order], flat[order]

    def _pick_conv(self, dv, flat, conv_w, n) -> list:
        """The first n candidates within the per-channel cap and one mutation per weight."""
        L = self.layer
        per_chan = np.zeros(L.cout, np.int64)
        taken = set()
        w = np.asarray(conv_w)
        out = []
        for d, f in zip(dv, flat):
            if len(out) == n:
                break
            idx = tuple(int(i) for i in np.unravel_index(f, L.conv_shape))
            o = idx[0]
            if self.per_channel is not None and per_chan[o] >= self.per_channel:
                continue
            if L.weights == "ternary":
                if idx[:4] in taken:                               # the weight's other mutation is taken
                    continue
                taken.add(idx[:4])
                out.append(Flip("conv", idx[:4], TERNARY_STATES[idx[4]], int(d)))
            else:
                out.append(Flip("conv", idx, 1 - int(w[idx]), int(d)))
            per_chan[o] += 1
        return out

    def _pick_fc(self, dv, flat, fc_w, n) -> list:
        fc = np.asarray(fc_w)
        out = []
        for d, f in zip(dv[:n], flat[:n]):
            idx = tuple(int(i) for i in np.unravel_index(f, self.layer.fc_shape))
            out.append(Flip("fc", idx, 1 - int(fc[idx]), int(d)))
        return out

    def propose(self, deltas, conv_w, fc_w, n: int | None = None, n_fc: int | None = None) -> list:
        """The mutations with the most negative deltas (< 0), best first: with one budget (fc_flips None) the
        best n of conv and FC together, else up to n conv and up to n_fc FC mutations; conv mutations within the
        per-channel cap and one per weight. Equal deltas are ordered by a random key from the seeded generator.
        n / n_fc default to the schedule's values at the current step."""
        dn, dfc = self.n_flips()
        n = dn if n is None else n
        n_fc = dfc if n_fc is None else n_fc
        conv = self._candidates("conv", deltas) if "conv" in self.parts else (np.zeros(0, np.int64),) * 2
        fc = self._candidates("fc", deltas) if "fc" in self.parts else (np.zeros(0, np.int64),) * 2
        # one budget: the best n of both; conv picks come from the conv list in order, so the first n conv picks
        # and the first n FC candidates hold the joint best n
        out = self._pick_conv(*conv, conv_w, n) + self._pick_fc(*fc, fc_w, n if n_fc is None else n_fc)
        out.sort(key=lambda f: f.delta)                         # stable: equal deltas keep their order
        return out[:n] if n_fc is None else out

    def step(self, images, labels, conv_w, fc_w, loss: Callable | None = None) -> Step:
        """One step on a minibatch. loss(conv_w, fc_w) -> the minibatch's total loss; default: the definition
        (LossDelta.loss) on these images; train_layer passes a cached Forward."""
        L = self.layer
        if loss is None:
            def loss(cw, fw):
                return int(L.loss(*L.canon_inputs(images, labels, cw, fw)).sum())
        t0 = time.perf_counter()
        d = self.deltas(images, labels, conv_w, fc_w)
        self.delta_seconds += time.perf_counter() - t0
        flips = self.propose(d, conv_w, fc_w)
        self.steps += 1
        if not flips:                                                     # a local minimum of this minibatch
            return Step(conv_w, fc_w, [], None, None, False)
        cw, fw = apply_flips(flips, conv_w, fc_w)
        if self.accept == "always":
            return Step(cw, fw, flips, None, None, False)
        before = int(loss(conv_w, fc_w))
        after = int(loss(cw, fw))
        if after < before or len(flips) == 1:
            return Step(cw, fw, flips, before, after, False)
        # The flips interfered: the best one alone changes the loss by exactly its (negative) delta.
        cw, fw = apply_flips(flips[:1], conv_w, fc_w)
        return Step(cw, fw, flips[:1], before, before + flips[0].delta, True)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class Trained:
    """A trained layer: its LossDelta, weights, prototypes per class of its head (see with_prototypes), and
    per-epoch history (see train_layer)."""
    layer: object
    conv_w: np.ndarray
    fc_w: np.ndarray
    prototypes: int = 1
    history: list = field(default_factory=list)

    def predict(self, images) -> np.ndarray:
        """The class of the best-scoring head row (argmax popcount(fc XOR pooled bits))."""
        return Forward(self.layer, images).predict(self.conv_w, self.fc_w, prototypes=self.prototypes)

    def with_prototypes(self, images, labels, prototypes: int, iters: int = 10, seed: int = 0) -> "Trained":
        """The same frozen conv with a head of `prototypes` rows per class fitted by fit_prototypes on these
        images' pooled bits: a LossDelta of classes * prototypes head classes (same head semantics)."""
        pooled = Forward(self.layer, images).pooled(self.conv_w)
        fc = fit_prototypes(pooled, labels, prototypes, iters=iters, seed=seed)
        layer = replace(self.layer, classes=len(fc))
        return Trained(layer, self.conv_w, fc.reshape(layer.fc_shape), prototypes)


def fit_prototypes(pooled, labels, prototypes: int = 1, iters: int = 10, seed: int = 0) -> np.ndarray:
    """A head for fixed pooled bits (N, S, O): `prototypes` FC rows per class, (classes * prototypes, S, O),
    row c * prototypes + j = prototype j of class c, fitted by k-means in Hamming space within each class.

    Why: a head's score is popcount(fc XOR bits), highest when bits = NOT fc, so argmax score is the nearest
    prototype (NOT fc) in Hamming space. The FC that the loss trains settles on one sign per bit and class
    (a vote in which weak bits weigh as much as strong ones), one prototype per class; a digit has several
    shapes. The M-step (the FC maximising its examples' summed score) is NOT the majority of their bits; the
    E-step assigns each example to the nearest prototype of its own class. Starts from `prototypes` distinct
    random examples of each class (seeded); a prototype left without examples keeps its bits."""
    P = np.asarray(pooled)
    labels = np.asarray(labels, np.int64)
    flat = P.reshape(len(P), -1).astype(np.uint8)
    classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    out = np.zeros((classes * prototypes, flat.shape[1]), np.uint8)
    for c in range(classes):
        X = flat[labels == c]
        if len(X) < prototypes:
            raise ValueError(f"fit_prototypes: class {c} has {len(X)} examples, fewer than {prototypes} prototypes")
        fc = 1 - X[rng.choice(len(X), prototypes, replace=False)]
        for _ in range(iters):
            near = hamming(X, fc).argmax(1)                              # the prototype scoring highest
            fc_new = fc.copy()
            for j in range(prototypes):
                if (near == j).any():
                    fc_new[j] = (2 * X[near == j].sum(0) <= (near == j).sum())   # NOT majority (ties: 1)
            if (fc_new == fc).all():
                break
            fc = fc_new
        out[c * prototypes:(c + 1) * prototypes] = fc
    return out.reshape((len(out),) + P.shape[1:])


def train_layer(layer, deltas: Callable, images, labels, *, epochs: int = 10, batch: int = 128, flips=8,
                fc_flips=None, per_channel: int | None = 1, accept: str = "check", seed: int = 0, init=None,
                on_epoch: Callable | None = None, stop_after: int | None = None) -> Trained:
    """Train one LossDelta layer (conv + its own head) by mutation: `epochs` passes over the training set in
    shuffled minibatches of `batch` (the last, smaller one included), one optimiser step per minibatch.

    flips, fc_flips, per_channel, accept: as MutationOptimizer's; a function schedule takes the training
    progress f in [0, 1) (e.g. lambda f: 32 * 0.1 ** f anneals 32 -> 3 flips per step).
    stop_after: run only the first stop_after epochs of the `epochs`-long schedule: exactly the start of the
    full run (e.g. to time a slower delta function on the same steps).
    init: (conv_w, fc_w) to start from; default random (seeded). on_epoch(epoch, trained, row) is called after
    each epoch (and once before training, epoch 0) and may return a dict merged into the history row (e.g. a
    test accuracy). A history row has epoch, train_loss (mean per example over the whole training set),
    train_acc, seconds (training time so far, evaluation excluded), delta_seconds (of which in the delta
    function), flips (applied in the epoch), fallbacks (steps that fell back to one flip).
    """
    fwd = Forward(layer, images)
    labels = layer.canon_labels(labels, fwd.n)
    x = np.asarray(images)
    steps_per_epoch = -(-len(x) // batch)
    total = epochs * steps_per_epoch

    def progress(f):             # a schedule of the training progress -> a schedule of the step number
        return (lambda step: f(step / total)) if callable(f) else f
    opt = MutationOptimizer(layer, deltas, flips=progress(flips), fc_flips=progress(fc_flips),
                            per_channel=per_channel, accept=accept, seed=seed)
    conv_w, fc_w = init if init is not None else opt.init_weights()
    res = Trained(layer, conv_w, fc_w)
    rng = np.random.default_rng([seed, 1])
    seconds = 0.0

    def record(epoch, applied, fallbacks):
        pooled, fc = fwd.pooled(res.conv_w), fwd.fc(res.fc_w)
        row = dict(epoch=epoch, train_loss=float(layer.loss_of_bits(pooled, labels, fc)[0].mean()),
                   train_acc=float((hamming(pooled, fc).argmax(1) == labels).mean()),
                   seconds=seconds, delta_seconds=opt.delta_seconds, flips=applied, fallbacks=fallbacks)
        if on_epoch is not None:
            row.update(on_epoch(epoch, res, row) or {})
        res.history.append(row)

    record(0, 0, 0)
    last = epochs if stop_after is None else min(epochs, stop_after)
    for epoch in range(1, last + 1):
        t0 = time.perf_counter()
        applied = fallbacks = 0
        perm = rng.permutation(len(x))
        for s in range(steps_per_epoch):
            idx = np.sort(perm[s * batch:(s + 1) * batch])
            st = opt.step(x[idx], labels[idx], res.conv_w, res.fc_w,
                          loss=lambda cw, fw, idx=idx: int(fwd.loss(cw, fw, labels[idx], idx).sum()))
            res.conv_w, res.fc_w = st.conv_w, st.fc_w
            applied += len(st.flips)
            fallbacks += st.fallback
        seconds += time.perf_counter() - t0
        record(epoch, applied, fallbacks)
    return res


def pad_bits(bits, pad: int = 1, value: int = 0) -> np.ndarray:
    """(N, H, W, C) bits -> (N, H + 2 pad, W + 2 pad, C): a frame of `value` bits, so that the next valid 3x3
    conv keeps the spatial size."""
    return np.pad(np.asarray(bits, np.uint8), ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=value)


class Net:
    """Binary conv layers trained one at a time: each with its own head, then frozen; its output bits (padded
    by `pad`) are the next layer's input. Prediction uses the last layer's head."""

    def __init__(self, pad: int = 1):
        self.pad = pad
        self.layers: list = []          # Trained, in order

    def inputs_of(self, images, depth: int | None = None):
        """The input bits of layer `depth` (default: the next layer to train) for these images."""
        x = np.asarray(images, np.uint8)
        for t in self.layers[:len(self.layers) if depth is None else depth]:
            x = pad_bits(Forward(t.layer, x).bits(t.conv_w), self.pad)
        return x

    def add(self, trained: Trained):
        self.layers.append(trained)

    def predict(self, images) -> np.ndarray:
        return self.layers[-1].predict(self.inputs_of(images, len(self.layers) - 1))
