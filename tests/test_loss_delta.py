"""LossDelta: the fast path (TE kernels + numpy glue) equals the definition (mutate, recompute, subtract)
exactly, on random cases: both heads, segments 1x1..4x4 (with leftover rows/columns), binary and ternary
weights, C not a multiple of 64, H != W, several classes and labels, batch sums and per-example outputs."""
import numpy as np
import pytest

import convsched as cs
from convsched.layers import LossDelta

CASES = [
    dict(h=6, w=7, cin=3, cout=4),                                                  # global, H != W
    dict(h=5, w=6, cin=70, cout=3, classes=3),                                      # C = 70: two words, pad bits
    dict(h=7, w=6, cin=4, cout=3, head="segmented", segments=(1, 1), classes=4),
    dict(h=8, w=9, cin=5, cout=3, head="segmented", segments=(2, 2), classes=7),    # leftover column (7 = 2*3+1)
    dict(h=9, w=8, cin=3, cout=2, head="segmented", segments=(3, 2)),               # leftover row
    dict(h=10, w=7, cin=2, cout=3, head="segmented", segments=(4, 1), classes=3),
    dict(h=11, w=12, cin=2, cout=2, head="segmented", segments=(4, 4), classes=5),  # 16 segments: mask path
    dict(h=6, w=6, cin=5, cout=3, weights="ternary", classes=4),
    dict(h=8, w=9, cin=66, cout=2, weights="ternary", classes=3),
    dict(h=8, w=8, cin=3, cout=2, weights="ternary", head="segmented", segments=(2, 3), classes=6),
    dict(h=11, w=11, cin=2, cout=2, weights="ternary", head="segmented", segments=(3, 3), classes=3),
]


def _id(kw):
    return "-".join(f"{k}{v}" for k, v in kw.items())


@pytest.fixture(scope="module")
def kernels():
    cache = {}

    def get(layer):
        if layer not in cache:
            cache[layer] = cs.compile(layer)
        return cache[layer]
    return get


def _equal(got, want):
    assert got.conv.shape == want.conv.shape and got.fc.shape == want.fc.shape
    np.testing.assert_array_equal(got.conv, want.conv)
    np.testing.assert_array_equal(got.fc, want.fc)


@pytest.mark.parametrize("kw", CASES, ids=[_id(c) for c in CASES])
def test_fast_path_equals_definition(kw, kernels):
    layer = LossDelta(n=3, **kw)
    k = kernels(layer)
    nonzero = 0
    for seed in range(3):
        xs = layer.random_inputs(seed)
        want = layer.reference(*xs, reduce="none")
        nonzero += np.count_nonzero(want.conv)
        _equal(k(*xs, reduce="none"), want)
        _equal(k(*xs), type(want)(want.conv.sum(0), want.fc.sum(0)))
        _equal(layer.fast_numpy(*xs, reduce="none"), want)
    assert nonzero > 0, "a case whose conv deltas are all zero tests nothing"


def test_biased_inputs_many_sensitive_patches(kernels):
    # Images and weights mostly agreeing: counts pile up near the threshold, lists get long.
    layer = LossDelta(n=4, h=7, w=9, cin=6, cout=3, classes=3, head="segmented", segments=(2, 2))
    rng = np.random.default_rng(5)
    x = (rng.random((4, 7, 9, 6)) < 0.5).astype(np.uint8)
    w = np.repeat(x[0, 2:5, 3:6][None], 3, axis=0).copy()
    w[1] = 1 - w[1]
    labels = np.array([0, 2, 1, 2])
    fc = rng.integers(0, 2, layer.fc_shape, dtype=np.uint8)
    _equal(kernels(layer)(x, labels, w, fc, reduce="none"), layer.reference(x, labels, w, fc, reduce="none"))


def test_constant_inputs(kernels):
    layer = LossDelta(n=2, h=5, w=5, cin=3, cout=2, classes=2)
    x = np.ones((2, 5, 5, 3), np.uint8)
    w = np.ones((2, 3, 3, 3), np.uint8)
    fc = np.array([[1, 0], [0, 1]], np.uint8)
    _equal(kernels(layer)(x, np.array([0, 1]), w, fc), layer.reference(x, np.array([0, 1]), w, fc))


def test_packed_inputs_and_any_batch(kernels):
    layer = LossDelta(n=2, h=6, w=6, cin=70, cout=2, classes=3, head="segmented", segments=(2, 2))
    k = kernels(layer)
    x, lab, w, fc = LossDelta(n=5, **{f: getattr(layer, f) for f in ("h", "w", "cin", "cout", "classes", "head",
                                                                        "segments")}).random_inputs(3)
    packed = k(cs.bits.pack(x), lab, cs.bits.pack(w), cs.bits.pack(fc))
    plain = k(x.astype(bool), lab, w, fc)
    _equal(packed, plain)
    _equal(plain, layer.reference(x, lab, w, fc))


def test_sparse_helper_matches_definition():
    layer = LossDelta(n=2, h=6, w=6, cin=3, cout=2, classes=3)
    x, lab, w, fc = layer.random_inputs(1)
    d = layer.reference(x, lab, w, fc)
    items = layer.sparse(d, w, fc, threshold=0)
    assert len(items) == np.count_nonzero(d.conv) + np.count_nonzero(d.fc)
    base = layer.loss(*layer.canon_inputs(x, lab, w, fc)).sum()
    for part, idx, new, delta in items[:5] + items[-5:]:
        w2, fc2 = w.copy(), fc.copy()
        (w2 if part == "conv" else fc2)[idx] = (new + 1) // 2          # +1 -> bit 1, -1 -> bit 0
        assert layer.loss(*layer.canon_inputs(x, lab, w2, fc2)).sum() - base == delta
    big = layer.sparse(d, w, fc, threshold=10)
    assert all(abs(it[3]) > 10 for it in big)


def test_bad_inputs_raise_clear_errors(kernels):
    layer = LossDelta(n=1, h=5, w=5, cin=3, cout=2, classes=2)
    k = kernels(layer)
    x, lab, w, fc = layer.random_inputs(0)
    with pytest.raises(ValueError, match="images"):
        k(x[:, :4], lab, w, fc)
    with pytest.raises(ValueError, match="labels"):
        k(x, np.array([5]), w, fc)
    with pytest.raises(ValueError, match="conv_w"):
        k(x, lab, w * 2, fc)
    with pytest.raises(ValueError, match="reduce"):
        k(x, lab, w, fc, reduce="mean")
    with pytest.raises(ValueError, match="segments"):
        LossDelta(h=5, w=5, head="segmented", segments=(4, 2))
    with pytest.raises(ValueError, match="ternary"):
        LossDelta(h=5, w=5, cin=3, cout=2, weights="ternary").canon_inputs(x, lab, np.full((2, 3, 3, 3), 2), fc)
