"""LossDelta: the compiled kernel (forward conv with its classification, the sparse delta stage in TIR, the host
glue) equals the definition (mutate, recompute, subtract) exactly, on every target of the matrix: both heads,
segments 1x1..4x4 with leftover rows and columns, binary and ternary weights, channel counts below 8, 9..32
(narrow words), not a multiple of 64 and the widths the compiled packing takes, H != W, batch sums and
per-example outputs; segments with many sensitive patches (the carry-save adder tree, the planes above it),
int32 sums flushed inside a batch and int64 lanes; the arguments' checks on the compiled packing path; result
arrays never overwritten while the caller holds them; the instructions a target's build uses."""
import re

import numpy as np
import pytest

import convsched as cs
from conftest import NOT_EXECUTABLE
from convsched.backend.loss_delta import packable
from convsched.layers import LossDelta

CASES = [
    dict(h=6, w=7, cin=3, cout=4),                                                  # global, H != W, C < 8
    dict(h=5, w=6, cin=70, cout=3, classes=3),                                      # C = 70: two words, pad bits
    dict(h=7, w=6, cin=4, cout=3, head="segmented", segments=(1, 1), classes=4),
    dict(h=8, w=9, cin=5, cout=3, head="segmented", segments=(2, 2), classes=7),    # leftover column (7 = 2*3+1)
    dict(h=9, w=8, cin=3, cout=2, head="segmented", segments=(3, 2)),               # leftover row
    dict(h=10, w=7, cin=2, cout=3, head="segmented", segments=(4, 1), classes=3),
    dict(h=11, w=12, cin=2, cout=2, head="segmented", segments=(4, 4), classes=5),  # 16 segments: pair terms
    dict(h=6, w=6, cin=5, cout=3, weights="ternary", classes=4),
    dict(h=8, w=9, cin=66, cout=2, weights="ternary", classes=3),
    dict(h=8, w=8, cin=3, cout=2, weights="ternary", head="segmented", segments=(2, 3), classes=6),
    dict(h=11, w=11, cin=2, cout=2, weights="ternary", head="segmented", segments=(3, 3), classes=3),
    # the widths packed by the compiled pass (whole words per pixel), the narrow and the uint32 words
    dict(h=7, w=9, cin=8, cout=5, head="segmented", segments=(2, 2), classes=4),
    dict(h=6, w=8, cin=16, cout=3, classes=3),
    dict(h=9, w=6, cin=32, cout=4, head="segmented", segments=(2, 3), classes=5),
    dict(h=5, w=5, cin=64, cout=2, weights="ternary", classes=3),
    dict(h=7, w=6, cin=12, cout=3, weights="ternary", head="segmented", segments=(2, 2), classes=3),
    dict(h=6, w=7, cin=24, cout=2, head="segmented", segments=(4, 5), classes=2),   # 1x1-patch segments
]


def _id(kw):
    return "-".join(f"{k}{v}" for k, v in kw.items())


@pytest.fixture(scope="module")
def kernels():
    cache = {}

    def get(layer, target="host"):
        key = (layer, getattr(target, "name", target))
        if key not in cache:
            cache[key] = cs.compile(layer, target=target)
        return cache[key]
    return get


def _equal(got, want):
    assert got.conv.shape == want.conv.shape and got.fc.shape == want.fc.shape
    np.testing.assert_array_equal(got.conv, want.conv)
    np.testing.assert_array_equal(got.fc, want.fc)


@pytest.mark.parametrize("kw", CASES, ids=[_id(c) for c in CASES])
def test_fast_path_equals_definition(kw, kernels, target):
    layer = LossDelta(n=3, **kw)
    k = kernels(layer, target)
    nonzero = 0
    for seed in range(2):
        xs = layer.random_inputs(seed)
        want = layer.reference(*xs, reduce="none")
        nonzero += np.count_nonzero(want.conv)
        _equal(k(*xs, reduce="none"), want)
        _equal(k(*xs), type(want)(want.conv.sum(0), want.fc.sum(0)))
        if target.name == "host":
            _equal(layer.fast_numpy(*xs, reduce="none"), want)
    assert nonzero > 0, "a case whose conv deltas are all zero tests nothing"


@pytest.mark.parametrize("kw", [dict(h=16, w=15, cin=8, cout=3, classes=4),
                                dict(h=18, w=14, cin=8, cout=2, head="segmented", segments=(2, 1), classes=3),
                                dict(h=14, w=14, cin=6, cout=2, weights="ternary", classes=3)],
                         ids=["global", "segmented", "ternary"])
def test_segments_with_many_sensitive_patches(kw, kernels, target):
    # ~20% of the patches of 9*8-bit windows are sensitive: lists of 15-50 patches go through the tree of
    # carry-save adders 16 at a time, the remainder one by one
    layer = LossDelta(n=3, **kw)
    xs = layer.random_inputs(7)
    x, lab, w, fc = layer.canon_inputs(*xs)
    stats, _ = layer.stats_of_counts(layer.counts(x, w))
    assert stats[:, :, 2].max() >= 24 and (stats[:, :, 2] >= 16).mean() > 0.5
    _equal(kernels(layer, target)(*xs, reduce="none"), layer.reference(*xs, reduce="none"))


def test_biased_inputs_many_sensitive_patches(kernels, target):
    # Sparse images and weights with exactly T one bits: almost every patch's count sits at T or T + 1, over
    # 255 sensitive patches a segment (planes above the four in registers) ...
    layer = LossDelta(n=3, h=24, w=24, cin=4, cout=2, classes=3)
    rng = np.random.default_rng(5)
    x = (rng.random((3, 24, 24, 4)) < 0.04).astype(np.uint8)
    w = np.zeros((2, 3, 3, 4), np.uint8)
    for o in range(2):
        w[o].reshape(-1)[rng.permutation(36)[:18]] = 1
    labels = np.array([0, 2, 1])
    fc = rng.integers(0, 2, layer.fc_shape, dtype=np.uint8)
    stats, _ = layer.stats_of_counts(layer.counts(*layer.canon_inputs(x, labels, w, fc)[::2]))
    assert stats[:, :, 2].min() > 255
    want = layer.reference(x, labels, w, fc, reduce="none")
    assert np.count_nonzero(want.conv)
    _equal(kernels(layer, target)(x, labels, w, fc, reduce="none"), want)
    # ... and images agreeing with a weight: long lists in small segments
    small = LossDelta(n=4, h=7, w=9, cin=6, cout=3, classes=3, head="segmented", segments=(2, 2))
    x = (rng.random((4, 7, 9, 6)) < 0.5).astype(np.uint8)
    w = np.repeat(x[0, 2:5, 3:6][None], 3, axis=0).copy()
    w[1] = 1 - w[1]
    labels = np.array([0, 2, 1, 2])
    fc = rng.integers(0, 2, small.fc_shape, dtype=np.uint8)
    _equal(kernels(small, target)(x, labels, w, fc, reduce="none"), small.reference(x, labels, w, fc, reduce="none"))


@pytest.mark.parametrize("bound", [2 ** 30, 2 ** 31], ids=["int32-flush-every-example", "int64-lanes"])
def test_sums_past_int32(bound, monkeypatch, target):
    # LossDelta.max_delta decides the lanes of the per-channel sums: int32 flushed into the int64 output
    # before they could overflow (every example at this bound), or int64 lanes when one example may not fit
    monkeypatch.setattr(LossDelta, "max_delta", property(lambda self: bound))
    layer = LossDelta(n=5, h=9, w=8, cin=5, cout=3, classes=4, head="segmented", segments=(2, 2))
    xs = layer.random_inputs(3)
    want = layer.reference(*xs, reduce="none")
    k = cs.compile(layer, target=target)
    _equal(k(*xs), type(want)(want.conv.sum(0), want.fc.sum(0)))
    _equal(k(*xs, reduce="none"), want)


def test_32x32_benchmark_shapes_equal_the_fast_numpy_oracle(kernels):
    # fast_numpy equals the definition (above); at the benchmark's shapes the definition takes minutes
    for kw in (dict(cin=32, cout=16), dict(cin=32, cout=8, head="segmented", segments=(4, 4)),
               dict(cin=128, cout=4, head="segmented", segments=(2, 2))):
        layer = LossDelta(n=3, h=32, w=32, classes=10, **kw)
        xs = layer.random_inputs(1)
        for reduce in ("sum", "none"):
            _equal(kernels(layer)(*xs, reduce=reduce), layer.fast_numpy(*xs, reduce=reduce))


def test_constant_inputs(kernels):
    layer = LossDelta(n=2, h=5, w=5, cin=3, cout=2, classes=2)
    x = np.ones((2, 5, 5, 3), np.uint8)
    w = np.ones((2, 3, 3, 3), np.uint8)
    fc = np.array([[1, 0], [0, 1]], np.uint8)
    _equal(kernels(layer)(x, np.array([0, 1]), w, fc), layer.reference(x, np.array([0, 1]), w, fc))


@pytest.mark.parametrize("cin", [70, 32])
def test_packed_bool_strided_and_misaligned_inputs(cin, kernels):
    layer = LossDelta(n=2, h=6, w=6, cin=cin, cout=2, classes=3, head="segmented", segments=(2, 2))
    assert packable(cin) == (cin == 32)          # both the compiled packing and numpy's
    k = kernels(layer)
    x, lab, w, fc = LossDelta(n=5, **{f: getattr(layer, f) for f in ("h", "w", "cin", "cout", "classes", "head",
                                                                        "segments")}).random_inputs(3)
    want = layer.reference(x, lab, w, fc)
    _equal(k(cs.bits.pack(x), lab, cs.bits.pack(w), cs.bits.pack(fc)), want)
    _equal(k(x.astype(bool), lab, w.astype(bool), fc), want)
    raw = np.zeros(x.size + 3, np.uint8)
    shifted = raw[3:].reshape(x.shape)           # 3 bytes past an aligned address
    shifted[...] = x
    _equal(k(shifted, lab, w, fc), want)
    wide = np.zeros(x.shape[:3] + (2 * cin,), np.uint8)
    wide[..., ::2] = x                           # a strided view
    _equal(k(wide[..., ::2], lab, w, fc), want)


def test_results_are_new_arrays_while_the_caller_holds_them(kernels):
    layer = LossDelta(n=3, h=8, w=8, cin=32, cout=4, classes=3)
    k = kernels(layer)
    a, b = layer.random_inputs(1), layer.random_inputs(2)
    d1 = k(*a)
    keep = d1.conv.copy()
    view = d1.conv[0]
    d2 = k(*b)                                   # d1 is held: d2 must not be written into it
    np.testing.assert_array_equal(d1.conv, keep)
    _equal(d2, layer.reference(*b))
    addr = d2.conv.__array_interface__["data"][0]
    del d1
    d3 = k(*a)                                   # d1's array is held by `view` still
    np.testing.assert_array_equal(view, keep[0])
    assert d3.conv.__array_interface__["data"][0] != addr
    np.testing.assert_array_equal(d3.conv, keep)
    del view, d3
    _equal(k(*b), layer.reference(*b))           # a dropped array may be reused: the result is still right


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


@pytest.mark.parametrize("cin", [3, 32])
def test_bad_inputs_raise_clear_errors(cin, kernels):
    layer = LossDelta(n=1, h=5, w=5, cin=cin, cout=2, classes=2)
    k = kernels(layer)
    x, lab, w, fc = layer.random_inputs(0)
    with pytest.raises(ValueError, match="images"):
        k(x[:, :4], lab, w, fc)
    bad = x.copy()
    bad[0, 1, 2, 0] = 2
    with pytest.raises(ValueError, match="'images': values must be 0 or 1"):
        k(bad, lab, w, fc)
    with pytest.raises(ValueError, match="labels"):
        k(x, np.array([5]), w, fc)
    with pytest.raises(ValueError, match="conv_w"):
        k(x, lab, w * 2, fc)
    with pytest.raises(ValueError, match="reduce"):
        k(x, lab, w, fc, reduce="mean")
    with pytest.raises(ValueError, match="empty"):
        k(x[:0], lab[:0], w, fc)
    with pytest.raises(ValueError, match="segments"):
        LossDelta(h=5, w=5, head="segmented", segments=(4, 2))
    with pytest.raises(ValueError, match="ternary"):
        LossDelta(h=5, w=5, cin=3, cout=2, weights="ternary").canon_inputs(x[..., :3], lab, np.full((2, 3, 3, 3), 2),
                                                                          fc)


@pytest.mark.parametrize("name", ["znver4", "znver5", "x86-64-v3"])
def test_a_targets_build_uses_its_instructions(name):
    # the instructions follow the target model: a native vector popcount of 32-bit lanes (uint32 words for
    # 17..32 channels), AVX-512's vpcompressd for the patch lists and vpternlogq for the carry-save adders;
    # without AVX-512 none of them and no zmm register. Targets the host cannot run are compiled only.
    t = cs.target.get(name)
    layer = LossDelta(h=12, w=12, cin=32, cout=16, head="segmented", segments=(2, 2))
    k = cs.compile(layer, target=t)
    fwd, dl = k.assembly("forward"), k.assembly("deltas")
    avx512 = t.has("avx512f")
    assert bool(re.search(r"\bvpopcntd\b", fwd)) == (t.popcount_kind(32) == "vpopcntq")
    assert bool(re.search(r"\bvpcompressd\b", dl)) == avx512
    assert bool(re.search(r"\bvpternlogq\b", dl)) == avx512
    assert bool(re.search(r"%zmm", fwd + dl)) == avx512
    if name in NOT_EXECUTABLE:
        with pytest.raises(cs.TargetError):
            k(*layer.random_inputs(0))


def test_result_pool_reuses_only_arrays_nobody_holds():
    from convsched.kernel.loss_delta import _Results
    pool = _Results()
    a = pool.get((4, 5), "int64")
    b = pool.get((4, 5), "int64")
    assert not np.shares_memory(a, b)
    addr = a.__array_interface__["data"][0]
    del a
    c = pool.get((4, 5), "int64")
    assert c.__array_interface__["data"][0] == addr         # dropped: its memory is taken again
    row = c[1]
    del c
    assert not np.shares_memory(pool.get((4, 5), "int64"), row)   # a view keeps it
