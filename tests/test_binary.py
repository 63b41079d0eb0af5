"""Binary layers: exact equality with numpy references on random bits.

Odd channel counts (1, 3, 63, 65, 100), odd image sizes, stride 2, both pad values, both outputs, both
comparisons; both input forms (logical 0/1 and pre-packed words); kernels run on every target of the matrix
(conftest.MATRIX: the host and x86-64-v3), the portable paths (x86-64-v3, generic) always; a named target's
build uses vpopcntq exactly when its model says so (test_targets.py checks the assembly of every named target).
"""
import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference
from convsched import bits
from convsched.layers import binary as bn

L = cs.layers


def brute_force_conv(x_bits, w_bits, stride, pad, pad_value):
    """Loops over every output and every weight bit, in +-1 values: an oracle for reference() itself."""
    n, h, w, c = x_bits.shape
    o, kh, kw, _ = w_bits.shape
    xs = x_bits.astype(np.int64) * 2 - 1
    ws = w_bits.astype(np.int64) * 2 - 1
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, o), np.int64)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for co in range(o):
                    acc = 0
                    for a in range(kh):
                        for d in range(kw):
                            y, x = i * stride + a - pad, j * stride + d - pad
                            px = xs[b, y, x] if 0 <= y < h and 0 <= x < w else np.full(c, pad_value)
                            acc += int((px * ws[co, a, d]).sum())
                    out[b, i, j, co] = acc
    return out


@pytest.mark.parametrize("pad_value", [-1, 1])
@pytest.mark.parametrize("stride", [1, 2])
def test_reference_matches_brute_force(pad_value, stride):
    layer = L.BinaryConv2d(h=5, w=6, cin=65, cout=3, stride=stride, pad=1, pad_value=pad_value)
    rng = np.random.default_rng(stride)
    xb = rng.integers(0, 2, (1, 5, 6, 65), dtype=np.uint8)
    wb = rng.integers(0, 2, (3, 3, 3, 65), dtype=np.uint8)
    dot = brute_force_conv(xb, wb, stride, 1, pad_value)
    np.testing.assert_array_equal(layer.reference(xb, wb), dot)
    mism = L.BinaryConv2d(h=5, w=6, cin=65, cout=3, stride=stride, pad=1, pad_value=pad_value, output="mismatch")
    np.testing.assert_array_equal(mism.reference(xb, wb), (layer.k_bits - dot) // 2)


CONV_CASES = [
    # cin, cout, h, w, stride, pad, pad_value, output
    (1, 3, 7, 9, 1, 1, 1, "dot"),
    (3, 1, 9, 7, 2, 1, -1, "mismatch"),
    (63, 65, 11, 5, 1, 0, -1, "dot"),
    (65, 100, 6, 13, 2, 2, 1, "dot"),
    (100, 63, 9, 9, 1, 1, -1, "mismatch"),
    (128, 64, 8, 8, 1, 1, 1, "dot"),
]


@pytest.mark.parametrize("cin,cout,h,w,stride,pad,pad_value,output", CONV_CASES)
def test_binary_conv_default_template(cin, cout, h, w, stride, pad, pad_value, output, target):
    layer = L.BinaryConv2d(h=h, w=w, cin=cin, cout=cout, stride=stride, pad=pad, pad_value=pad_value,
                           output=output)
    k = cs.compile(layer, target=target)
    for seed in range(2):
        check_against_reference(layer, k, seed)


@pytest.mark.parametrize("compare", [">", "<="])
@pytest.mark.parametrize("cin,cout,stride,pad_value", [(65, 3, 1, 1), (63, 100, 2, -1)])
def test_binary_conv_threshold_epilogue(compare, cin, cout, stride, pad_value, target):
    layer = L.BinaryConv2d(h=9, w=7, cin=cin, cout=cout, stride=stride, pad=1, pad_value=pad_value,
                           threshold=True, compare=compare)
    k = cs.compile(layer, target=target)
    xs = layer.random_inputs(5)
    got = k(*xs)
    assert got.dtype == np.uint64 and got.shape[-1] == -(-cout // 64)
    # the fused epilogue equals the unfused value followed by the PopcountThreshold reference
    values = L.BinaryConv2d(h=9, w=7, cin=cin, cout=cout, stride=stride, pad=1, pad_value=pad_value).reference(*xs[:2])
    thr = L.PopcountThreshold(h=values.shape[1], w=values.shape[2], c=cout, compare=compare)
    np.testing.assert_array_equal(got, thr.reference(values, xs[2]))
    np.testing.assert_array_equal(got, layer.reference(*xs))


def test_logical_and_packed_inputs_agree(target):
    layer = L.BinaryConv2d(h=6, w=6, cin=65, cout=8, pad=1)
    k = cs.compile(layer, target=target)
    rng = np.random.default_rng(1)
    xb = rng.integers(0, 2, (1, 6, 6, 65)).astype(bool)
    wb = rng.integers(0, 2, (8, 3, 3, 65), dtype=np.uint8)
    a = k(xb, wb)
    b = k(bits.pack(xb), bits.pack(wb))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, layer.reference(xb, wb))


def test_bad_bit_inputs_are_clear_errors():
    layer = L.BinaryConv2d(h=6, w=6, cin=65, cout=8)
    k = cs.compile(layer)
    x, w = layer.random_inputs(0)
    dirty = x.copy()
    dirty[..., -1] |= np.uint64(1) << np.uint64(63)           # a pad bit set
    with pytest.raises(ValueError, match="pad bits"):
        k(dirty, w)
    with pytest.raises(ValueError, match="shape"):
        k(x[:, :5], w)
    with pytest.raises(ValueError, match="0 or 1"):
        k(np.full((1, 6, 6, 65), 2, np.uint8), w)
    with pytest.raises(ValueError, match="dtype"):
        k(np.zeros((1, 6, 6, 65), np.float32), w)
    with pytest.raises(ValueError, match="pad_value"):
        L.BinaryConv2d(pad_value=0)
    with pytest.raises(ValueError, match="compare"):
        L.PopcountThreshold(compare=">=")


@pytest.mark.parametrize("c,compare", [(1, ">"), (65, "<="), (100, ">")])
def test_popcount_threshold(c, compare, target):
    layer = L.PopcountThreshold(h=3, w=5, c=c, compare=compare)
    check_against_reference(layer, cs.compile(layer, target=target), seed=c)


@pytest.mark.parametrize("c", [1, 3, 63, 65, 100])
def test_bitpack_sign(c, target):
    layer = L.BitPack(h=3, w=3, c=c)
    k = cs.compile(layer, target=target)
    x = layer.random_inputs(c)[0]
    x[0, 0, 0, 0] = 0.0                                   # sign(0) -> +1 (bit 1), as bits.from_sign
    got = k(x)
    np.testing.assert_array_equal(got, layer.reference(x))
    np.testing.assert_array_equal(bits.unpack(got, c), (x >= 0).astype(np.uint8))


@pytest.mark.parametrize("h,w,c,segments", [(7, 9, 65, (2, 3)), (6, 6, 3, 1), (10, 5, 100, (3, 2)), (5, 5, 1, 2)])
def test_segmented_bit_pool(h, w, c, segments, target):
    layer = L.SegmentedBitPool(h=h, w=w, c=c, segments=segments)
    check_against_reference(layer, cs.compile(layer, target=target), seed=h)


@pytest.mark.parametrize("c,k,stride,pad", [(63, 3, 2, 1), (65, 2, 2, 0), (1, 3, 1, 1)])
def test_bit_max_pool(c, k, stride, pad, target):
    layer = L.BitMaxPool2d(h=7, w=9, c=c, k=k, stride=stride, pad=pad)
    check_against_reference(layer, cs.compile(layer, target=target), seed=c)


@pytest.mark.parametrize("mode", ["majority", "or"])
@pytest.mark.parametrize("c", [3, 100])
def test_bit_global_pool(mode, c, target):
    layer = L.BitGlobalPool(h=5, w=4, c=c, mode=mode)
    check_against_reference(layer, cs.compile(layer, target=target), seed=c)


@pytest.mark.parametrize("cin,cout,stride,pad,pad_value,output,compare,segments", [
    (64, 65, 1, 0, -1, "mismatch", ">", (2, 2)),
    (3, 100, 2, 1, 1, "dot", "<=", (3, 2)),
    (63, 1, 1, 1, -1, "dot", ">", 1),
])
def test_fused_conv_threshold_segmented_pool(cin, cout, stride, pad, pad_value, output, compare, segments, target):
    layer = L.BinaryConvPool(h=11, w=10, cin=cin, cout=cout, stride=stride, pad=pad, pad_value=pad_value,
                             output=output, compare=compare, segments=segments)
    k = cs.compile(layer, target=target)
    xs = layer.random_inputs(cout)
    got = k(*xs)
    # equals the unfused pipeline: conv values -> threshold -> segmented pool
    conv = L.BinaryConv2d(h=11, w=10, cin=cin, cout=cout, stride=stride, pad=pad, pad_value=pad_value,
                          output=output, threshold=True, compare=compare)
    act = conv.reference(*xs)
    pool = L.SegmentedBitPool(h=conv.oh, w=conv.ow, c=cout, segments=segments)
    np.testing.assert_array_equal(got, pool.reference(act))
    np.testing.assert_array_equal(got, layer.reference(*xs))


def test_ops_of_the_issue_shapes():
    for hw, c in [(56, 64), (28, 128), (14, 256), (7, 512)]:
        assert L.BinaryConv2d(h=hw, w=hw, cin=c, cout=c, pad=1).ops() == 115_605_504
    assert L.BinaryConv2d.op_unit == "bit-MAC" and L.BinaryConv2d.exact


@pytest.mark.parametrize("target", ["x86-64-v3", "generic"])
def test_portable_paths_run_without_vpopcntdq(target):
    """The targets without VPOPCNTDQ build and run correctly here (popcount emulated or scalar)."""
    layer = L.BinaryConv2d(h=7, w=8, cin=100, cout=20, stride=2, pad=1, pad_value=1)
    tgt = cs.target.get(target)
    assert not tgt.fast_popcount
    for name in ("binary_conv2d/blocked", "binary_conv2d/naive"):
        check_against_reference(layer, cs.compile(layer, template=name, target=target), seed=3)


def test_znver4_build_emits_vpopcntq():
    from convsched.kernel import layer_assembly
    layer = L.BinaryConv2d(h=8, w=8, cin=128, cout=64, pad=1)
    tgt = cs.target.get("znver4")
    assert tgt.fast_popcount and tgt.vector_bits == 512
    asm = layer_assembly(layer, "znver4")
    assert "vpopcntq" in asm and "zmm" in asm
    assert "vpopcntq" not in layer_assembly(layer, "x86-64-v3")
    k = cs.compile(layer, target="znver4")
    host = cs.target.host()
    if not tgt.missing_on(host):
        assert "vpopcntq" in k.assembly()
        check_against_reference(layer, k)
    else:
        with pytest.raises(cs.TargetError, match="lacks"):
            k(*layer.random_inputs())


@pytest.mark.skipif(not cs.target.host().fast_popcount, reason="host CPU lacks AVX-512 VPOPCNTDQ")
def test_vpopcntdq_path_runs_on_host():
    layer = L.BinaryConv2d(h=9, w=9, cin=65, cout=100, pad=1, pad_value=1)
    check_against_reference(layer, cs.compile(layer), seed=1)


def test_bit_gemm_microbenchmark_checks_its_answer(target):
    from convsched.backend.peaks import bit_tiles, measure_bit
    for mt, nv in bit_tiles(target)[:2]:
        r = measure_bit(target, m_tile=mt, n_vecs=nv, k_words=8, seconds=0)   # raises on a wrong answer
        assert r["gops"] > 0 and r["popcount"] == target.popcount
