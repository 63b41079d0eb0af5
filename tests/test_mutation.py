"""convsched.mutation: the optimiser picks exactly the most negative deltas (within its caps), its steps lower
the minibatch loss of the definition (LossDelta.loss / reference), it is deterministic given a seed, Forward
equals the layer's definition, and a short training run learns (compiled kernel and fast_numpy alike)."""
import numpy as np
import pytest

import convsched as cs
from convsched.layers import LossDelta, LossDeltas
from convsched.mutation import (Flip, Forward, MutationOptimizer, Net, apply_flips, fit_prototypes, hamming,
                                pad_bits, train_layer)

SMALL = dict(h=6, w=7, cin=3, cout=4, classes=3)


def _random_deltas(layer, seed, lo=-20, hi=20):
    """Deltas with many ties (a small range), as real integer deltas have."""
    rng = np.random.default_rng(seed)
    return LossDeltas(rng.integers(lo, hi, layer.conv_shape), rng.integers(lo, hi, layer.fc_shape))


def _definition_loss(layer, x, labels, cw, fw):
    return int(layer.loss(*layer.canon_inputs(x, labels, cw, fw)).sum())


# ------------------------------------------------------------------------------------------- propose
@pytest.mark.parametrize("per_channel", [None, 1, 2])
def test_propose_takes_the_most_negative_deltas(per_channel):
    layer = LossDelta(**SMALL, head="segmented", segments=(2, 2))
    opt = MutationOptimizer(layer, None, flips=7, per_channel=per_channel, seed=3)
    cw, fw = opt.init_weights()
    for seed in range(5):
        d = _random_deltas(layer, seed)
        flips = opt.propose(d, cw, fw)
        # brute force: walk all mutations by delta; a conv one is eligible while its channel is under the cap
        allm = [(int(v), "conv", idx) for idx, v in np.ndenumerate(d.conv) if v < 0]
        allm += [(int(v), "fc", idx) for idx, v in np.ndenumerate(d.fc) if v < 0]
        allm.sort(key=lambda m: m[0])
        # the chosen deltas are the first 7 eligible deltas of that order (the order within ties may differ,
        # so compare the multiset of values and check every chosen mutation is eligible)
        assert len(flips) == 7
        assert [f.delta for f in flips] == sorted(f.delta for f in flips), "best first"
        per = {}
        for f in flips:
            src = d.conv if f.part == "conv" else d.fc
            assert src[f.index] == f.delta
            if f.part == "conv":
                per[f.index[0]] = per.get(f.index[0], 0) + 1
                assert f.value == 1 - cw[f.index]
            else:
                assert f.value == 1 - fw[f.index]
        if per_channel is not None:
            assert max(per.values(), default=0) <= per_channel
        # no eligible mutation left out has a more negative delta than the worst chosen one
        worst = flips[-1].delta
        chosen = {(f.part, f.index) for f in flips}
        for v, part, idx in allm:
            if v >= worst or (part, idx) in chosen:
                continue
            assert part == "conv" and per_channel is not None and per[idx[0]] == per_channel, (v, part, idx)


def test_propose_separate_budgets_and_no_improving_mutation():
    layer = LossDelta(**SMALL)
    opt = MutationOptimizer(layer, None, flips=2, fc_flips=5, per_channel=None, seed=0)
    cw, fw = opt.init_weights()
    d = _random_deltas(layer, 1)
    flips = opt.propose(d, cw, fw)
    conv = [f.delta for f in flips if f.part == "conv"]
    fc = [f.delta for f in flips if f.part == "fc"]
    assert conv == sorted(d.conv[d.conv < 0])[:2]
    assert fc == sorted(d.fc[d.fc < 0])[:5]
    # only "fc" may mutate
    opt_fc = MutationOptimizer(layer, None, flips=4, parts=("fc",), seed=0)
    assert all(f.part == "fc" for f in opt_fc.propose(d, cw, fw))
    # no negative delta: nothing to do
    assert opt.propose(LossDeltas(np.abs(d.conv), np.abs(d.fc)), cw, fw) == []


def test_propose_ternary_one_mutation_per_weight():
    layer = LossDelta(**SMALL, weights="ternary")
    opt = MutationOptimizer(layer, None, flips=40, per_channel=None, seed=0)
    cw, fw = opt.init_weights()
    assert set(np.unique(cw)) <= {-1, 0, 1}
    d = _random_deltas(layer, 2)
    flips = opt.propose(d, cw, fw)
    conv = [f for f in flips if f.part == "conv"]
    assert len({f.index for f in conv}) == len(conv), "two mutations of one weight in a step"
    for f in conv:
        t = (1, 0, -1).index(f.value)
        assert d.conv[f.index + (t,)] == f.delta


def test_propose_is_deterministic_given_the_seed():
    layer = LossDelta(**SMALL)
    d = _random_deltas(layer, 0, -3, 3)        # very many ties: only the random key orders them
    runs = {}
    for seed in (0, 0, 1):
        opt = MutationOptimizer(layer, None, flips=10, per_channel=None, seed=seed)
        cw, fw = np.zeros(layer.conv_shape, np.uint8), np.zeros(layer.fc_shape, np.uint8)
        runs.setdefault(seed, []).append([opt.propose(d, cw, fw) for _ in range(3)])
    assert runs[0][0] == runs[0][1]
    assert runs[0][0] != runs[1][0], "the seed should decide the order of tied deltas"


# ------------------------------------------------------------------------------------------- steps
@pytest.mark.parametrize("kw", [dict(), dict(head="segmented", segments=(2, 2)), dict(weights="ternary")],
                         ids=["global", "seg2x2", "ternary"])
def test_steps_lower_the_definition_loss(kw):
    layer = LossDelta(**SMALL, n=6, **kw)
    x, labels, cw, fw = layer.random_inputs(4)
    # the single best mutation changes the loss by exactly its delta (the delta function is the definition)
    one = MutationOptimizer(layer, layer.reference, flips=1, seed=0)
    base = _definition_loss(layer, x, labels, cw, fw)
    st = one.step(x, labels, cw, fw)
    assert len(st.flips) == 1 and st.flips[0].delta < 0
    assert st.loss_before == base
    assert _definition_loss(layer, x, labels, st.conv_w, st.fc_w) == base + st.flips[0].delta == st.loss_after
    # checked steps of many flips never raise it; cw is untouched (steps return new arrays)
    cw0 = cw.copy()
    opt = MutationOptimizer(layer, layer.reference, flips=6, per_channel=2, seed=0)
    cur = base
    for _ in range(4):
        st = opt.step(x, labels, cw, fw)
        if not st.flips:
            break
        new = _definition_loss(layer, x, labels, st.conv_w, st.fc_w)
        assert new == st.loss_after < cur
        cw, fw, cur = st.conv_w, st.fc_w, new
    np.testing.assert_array_equal(cw0, layer.random_inputs(4)[2])


def test_check_falls_back_to_the_best_single_flip():
    # a delta function that lies about all but one mutation: the combined step raises the loss, the check
    # must undo it and apply only the best (true) one
    layer = LossDelta(**SMALL, n=5)
    x, labels, cw, fw = layer.random_inputs(1)
    true = layer.reference(x, labels, cw, fw)
    best = np.unravel_index(int(np.argmin(true.conv)), true.conv.shape)
    assert true.conv[best] < 0
    fake_conv = np.where(true.conv > 0, -1, 0)          # every loss-raising flip claims -1
    fake_conv[best] = true.conv[best] - 1000               # and the best one stays first
    fake = LossDeltas(fake_conv, np.where(true.fc > 0, -1, 0))
    opt = MutationOptimizer(layer, lambda *a: fake, flips=30, per_channel=None, seed=0)
    st = opt.step(x, labels, cw, fw)
    assert st.fallback and len(st.flips) == 1 and st.flips[0].index == tuple(int(i) for i in best)
    cw2, _ = apply_flips([Flip("conv", best, 1 - int(cw[best]), 0)], cw, fw)
    np.testing.assert_array_equal(st.conv_w, cw2)
    assert _definition_loss(layer, x, labels, st.conv_w, st.fc_w) == st.loss_before + int(true.conv[best])


def test_bad_arguments():
    layer = LossDelta(**SMALL)
    with pytest.raises(ValueError, match="accept"):
        MutationOptimizer(layer, None, accept="maybe")
    with pytest.raises(ValueError, match="parts"):
        MutationOptimizer(layer, None, parts=("bias",))
    with pytest.raises(ValueError, match="shape"):
        MutationOptimizer(layer, None).propose(LossDeltas(np.zeros((2, 2)), np.zeros(layer.fc_shape)),
                                               *MutationOptimizer(layer, None).init_weights())
    x = np.zeros((2, 6, 7, 3), np.uint8)
    with pytest.raises(ValueError, match="labels"):
        train_layer(layer, layer.fast_numpy, x, np.array([0, 3]))
    with pytest.raises(ValueError, match="bits"):
        Forward(layer, x + 2)


# ------------------------------------------------------------------------------------------- Forward
@pytest.mark.parametrize("kw", [dict(), dict(head="segmented", segments=(2, 3)), dict(weights="ternary"),
                                dict(weights="ternary", head="segmented", segments=(2, 2))],
                         ids=["global", "seg2x3", "ternary", "ternary-seg"])
def test_forward_equals_the_definition(kw):
    layer = LossDelta(**SMALL, n=7, **kw)
    x, labels, cw, fw = layer.random_inputs(0)
    f = Forward(layer, x)
    cx, clab, ccw, cfc = layer.canon_inputs(x, labels, cw, fw)
    np.testing.assert_array_equal(f.counts(cw), layer.counts(cx, ccw))
    np.testing.assert_array_equal(f.loss(cw, fw, labels), layer.loss(cx, clab, ccw, cfc))
    idx = np.array([1, 4, 5])
    np.testing.assert_array_equal(f.loss(cw, fw, labels[idx], idx), layer.loss(cx[idx], clab[idx], ccw, cfc))
    # the same rows again with two channels changed: Forward recomputes only those (its cache), exactly
    cw2 = layer.random_inputs(1)[2]
    cw2[[0, 2, 3]] = cw[[0, 2, 3]]
    for w_ in (cw2, cw, cw):
        np.testing.assert_array_equal(f.counts(w_, idx), layer.counts(cx[idx], layer.canon_inputs(x, labels, w_,
                                                                                                   fw)[2]))
    np.testing.assert_array_equal(f.counts(cw2, idx[::-1]), layer.counts(cx[idx[::-1]], cw2.astype(ccw.dtype)))
    # scores: the loss of each hypothetical label falls as its score rises (argmax score = argmin loss)
    s = f.scores(cw, fw)
    for k in range(layer.classes):
        lk = layer.loss(cx, np.full(len(x), k), ccw, cfc)
        np.testing.assert_array_equal(lk, (s ** 2).sum(1) - 2 * layer.nseg * layer.cout * s[:, k]
                                      + (layer.nseg * layer.cout) ** 2)


def test_hamming_and_class_scores():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (5, 3, 4)), rng.integers(0, 2, (7, 3, 4))
    np.testing.assert_array_equal(hamming(a, b), (a[:, None] != b[None]).sum((2, 3)))
    layer = LossDelta(**dict(SMALL, classes=4), n=3)
    x, _, cw, fw = layer.random_inputs(0)
    f = Forward(layer, x)
    s = f.scores(cw, fw)
    np.testing.assert_array_equal(f.class_scores(cw, fw, prototypes=2), np.maximum(s[:, 0::2], s[:, 1::2]))
    np.testing.assert_array_equal(f.predict(cw, fw, prototypes=2), f.class_scores(cw, fw, prototypes=2).argmax(1))


def test_fit_prototypes_finds_the_clusters():
    # two classes, each made of two well separated bit patterns with noise: two prototypes per class recover
    # the four patterns (as NOT fc), one prototype per class cannot separate them
    rng = np.random.default_rng(1)
    pats = rng.integers(0, 2, (4, 2, 16))
    which = rng.integers(0, 4, 200)
    bits = pats[which] ^ (rng.random((200, 2, 16)) < 0.05)
    labels = which // 2
    fc = fit_prototypes(bits, labels, prototypes=2, seed=0)
    assert fc.shape == (4, 2, 16)
    protos = 1 - fc
    for c in range(2):
        got = {tuple(p.ravel()) for p in protos[2 * c:2 * c + 2]}
        assert got == {tuple(pats[2 * c].ravel()), tuple(pats[2 * c + 1].ravel())}
    pred = hamming(bits, fc).argmax(1) // 2
    assert (pred == labels).mean() > 0.95
    np.testing.assert_array_equal(fc, fit_prototypes(bits, labels, prototypes=2, seed=0))
    with pytest.raises(ValueError, match="fewer than"):
        fit_prototypes(bits[:3], np.array([0, 1, 1]), prototypes=2)


# ------------------------------------------------------------------------------------------- training
def _toy(seed, n=96, classes=3, h=7, w=7, c=4, noise=0.1):
    """Each class is a random bit image; examples are noisy copies."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (classes, h, w, c), dtype=np.uint8)
    y = rng.integers(0, classes, n)
    return protos[y] ^ (rng.random((n, h, w, c)) < noise).astype(np.uint8), y


def test_train_layer_learns_and_kernel_equals_fast_numpy():
    layer = LossDelta(h=7, w=7, cin=4, cout=8, classes=3, head="segmented", segments=(2, 2))
    x, y = _toy(0)
    kw = dict(epochs=4, batch=32, flips=lambda f: 8 if f < 0.5 else 2, fc_flips=8, seed=5)
    by_kernel = train_layer(layer, cs.compile(layer), x, y, **kw)
    by_numpy = train_layer(layer, layer.fast_numpy, x, y, **kw)
    h = by_kernel.history
    assert [r["epoch"] for r in h] == list(range(5))
    assert h[-1]["train_loss"] < 0.7 * h[0]["train_loss"]
    assert h[-1]["train_acc"] >= 0.9 > h[0]["train_acc"]
    # exact deltas + seeded ties: the same trajectory whichever implementation computes the deltas
    np.testing.assert_array_equal(by_kernel.conv_w, by_numpy.conv_w)
    np.testing.assert_array_equal(by_kernel.fc_w, by_numpy.fc_w)
    assert [r["train_loss"] for r in by_numpy.history] == [r["train_loss"] for r in h]
    again = train_layer(layer, layer.fast_numpy, x, y, **kw)
    np.testing.assert_array_equal(again.conv_w, by_numpy.conv_w)


def test_net_feeds_frozen_bits_to_the_next_layer():
    l1 = LossDelta(h=7, w=7, cin=4, cout=6, classes=3, head="segmented", segments=(2, 2))
    x, y = _toy(1, n=64)
    net = Net(pad=1)
    t1 = train_layer(l1, l1.fast_numpy, x, y, epochs=2, batch=32, flips=4, seed=0)
    net.add(t1)
    x2 = net.inputs_of(x)
    assert x2.shape == (64, 7, 7, 6)
    np.testing.assert_array_equal(x2, pad_bits(Forward(l1, x).bits(t1.conv_w), 1))
    assert (x2[:, 0] == 0).all() and (x2[:, :, -1] == 0).all()
    l2 = LossDelta(h=7, w=7, cin=6, cout=6, classes=3)
    t2 = train_layer(l2, l2.fast_numpy, x2, y, epochs=2, batch=32, flips=4, seed=1)
    net.add(t2)
    np.testing.assert_array_equal(net.predict(x), t2.predict(x2))
    np.testing.assert_array_equal(net.inputs_of(x, 1), x2)
