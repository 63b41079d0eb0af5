"""Core: targets, layers vs references, kernels' argument checks, schedules as data."""
import json

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference

L = cs.layers


# ------------------------------------------------------------------------------------------- targets
def test_host_target(host):
    assert host.cores >= 1
    assert host.key.startswith("x86_64-unknown-linux-gnu_" + host.mcpu + "_")
    assert host.key.endswith(f"_{host.cores}c")
    assert host.lanes("float32") in (4, 8, 16)
    d = host.to_tvm()
    assert d["kind"] == "llvm" and d["mcpu"] == host.mcpu


def test_named_targets_and_keys():
    a, b = cs.target.get("znver4"), cs.target.get("x86-64-v3")
    assert a.has("avx512f", "avx512vpopcntdq") and a.lanes("float32") == 16
    assert b.has("avx2", "fma") and not b.has("avx512f") and b.lanes("float32") == 8
    assert a.key != b.key and a.key == cs.target.get("znver4").key
    assert cs.target.get("generic").lanes("float32") == 4


def test_unknown_target():
    with pytest.raises(cs.TargetError, match="unknown target 'pentium9'"):
        cs.target.get("pentium9")


def test_kernel_for_missing_cpu_features_refuses_to_run(host):
    lacking = [n for n in cs.target.NAMED if cs.target.get(n).missing_on(host)]
    if not lacking:
        pytest.skip("this host has every feature of every named target")
    layer = L.Conv2d(h=8, w=8, cin=16, cout=16)
    k = cs.compile(layer, target=lacking[0])
    with pytest.raises(cs.TargetError, match="lacks"):
        k(*layer.random_inputs())


# -------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("layer", [
    L.Conv2d(h=12, w=12, cin=16, cout=16),
    L.Conv2d(n=2, h=17, w=23, cin=3, cout=5, stride=2, pad=1, bias=True, act="relu"),
    L.Conv2d(h=11, w=9, cin=8, cout=8, kh=5, kw=3, stride=(2, 1), pad=(2, 1), dilation=(1, 2)),
    L.Conv2d(h=10, w=10, cin=12, cout=6, groups=3, layout="NCHW", bias=True),
    L.Conv2d(n=2, h=17, w=23, cin=3, cout=8, stride=2, pad=0, layout="NCHW", act="relu"),
    L.Pool2d(h=112, w=112, c=8, kind="max", k=3, stride=2, pad=1),
    L.Pool2d(h=17, w=23, c=5, kind="avg", k=3, stride=2, pad=1),
    L.GlobalAvgPool2d(n=2, h=7, w=5, c=16),
], ids=str)
def test_default_schedule_matches_reference(layer, target):
    check_against_reference(layer, cs.compile(layer, target=target))


def test_reference_conv_is_the_definition():
    """The oracle itself, checked against a literal loop on a tiny case."""
    layer = L.Conv2d(h=5, w=6, cin=2, cout=3, kh=3, kw=2, stride=(2, 1), pad=(1, 0), dilation=(1, 2))
    x, w = layer.random_inputs(3)
    y = layer.reference(x, w)
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0))).astype(np.float64)
    for oh in range(layer.oh):
        for ow in range(layer.ow):
            for co in range(3):
                s = sum(xp[0, oh * 2 + i, ow + 2 * j, c] * w[i, j, c, co]
                        for i in range(3) for j in range(2) for c in range(2))
                assert abs(y[0, oh, ow, co] - s) < 1e-5


def test_layer_parameter_errors():
    with pytest.raises(ValueError, match="layout"):
        L.Conv2d(layout="HWCN")
    with pytest.raises(ValueError, match="groups"):
        L.Conv2d(cin=6, cout=4, groups=4)
    with pytest.raises(ValueError, match="does not fit"):
        L.Conv2d(h=2, w=2, kh=5, kw=5, pad=0)
    with pytest.raises(ValueError, match="positive"):
        L.Conv2d(cin=0)
    with pytest.raises(ValueError, match="kind"):
        L.Pool2d(kind="median")


def test_workload_key_is_canonical():
    a = L.Conv2d(stride=(1, 1), pad=[1, 1])
    b = L.Conv2d(stride=1, pad=1)
    assert a == b and a.workload_key == b.workload_key
    assert json.loads(a.workload_key)["layer"] == "conv2d"


# --------------------------------------------------------------------------------- kernel arguments
@pytest.fixture(scope="module")
def conv_kernel():
    layer = L.Conv2d(h=8, w=8, cin=16, cout=16)
    return layer, cs.compile(layer)


def test_wrong_shape(conv_kernel):
    layer, k = conv_kernel
    x, w = layer.random_inputs()
    with pytest.raises(ValueError, match=r"input 'x': shape is \(1, 8, 9, 16\), expected \(1, 8, 8, 16\)"):
        k(np.zeros((1, 8, 9, 16), np.float32), w)


def test_wrong_dtype(conv_kernel):
    layer, k = conv_kernel
    x, w = layer.random_inputs()
    with pytest.raises(ValueError, match=r"input 'w': dtype is float64, expected float32"):
        k(x, w.astype(np.float64))


def test_wrong_arity(conv_kernel):
    layer, k = conv_kernel
    x, w = layer.random_inputs()
    with pytest.raises(ValueError, match=r"takes 2 arrays \(x, w\), got 1"):
        k(x)


def test_misaligned_and_strided_inputs_are_copied(conv_kernel):
    layer, k = conv_kernel
    x, w = layer.random_inputs()
    want = layer.reference(x, w)
    raw = np.empty(x.size * 4 + 4, np.uint8)
    mis = raw[4: 4 + x.size * 4].view(np.float32).reshape(x.shape)  # 4 bytes off: vmovaps would fault
    if mis.ctypes.data % 64 == 0:
        mis = raw[:x.size * 4].view(np.float32).reshape(x.shape)
    mis[...] = x
    assert mis.ctypes.data % 64 != 0
    np.testing.assert_allclose(k(mis, w), want, rtol=1e-4, atol=1e-4)
    big = np.zeros((1, 8, 16, 16), np.float32)
    big[:, :, ::2] = x
    strided = big[:, :, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(k(strided, w), want, rtol=1e-4, atol=1e-4)
    fortran = np.asfortranarray(w)
    np.testing.assert_allclose(k(x, fortran), want, rtol=1e-4, atol=1e-4)


def test_aligned_helpers(conv_kernel):
    layer, k = conv_kernel
    x, w = layer.random_inputs()
    raw = np.empty(x.size * 4 + 68, np.uint8)
    off = 4 + (-raw.ctypes.data) % 64                       # exactly 4 bytes past a 64-byte boundary
    mis = raw[off: off + x.size * 4].view(np.float32).reshape(x.shape)
    mis[...] = x
    xa = cs.aligned(mis)
    assert xa.ctypes.data % 64 == 0 and xa.flags.c_contiguous and np.array_equal(xa, x)
    assert cs.aligned(xa) is xa                               # already aligned: no copy
    wa = cs.aligned_empty(w.shape, w.dtype)
    assert wa.ctypes.data % 64 == 0 and wa.shape == w.shape and wa.dtype == w.dtype
    wa[...] = w
    np.testing.assert_allclose(k(xa, wa), layer.reference(x, w), rtol=1e-4, atol=1e-4)


def test_benchmark_and_describe(conv_kernel):
    layer, k = conv_kernel
    t = k.benchmark(repeat=3, min_repeat_ms=1)
    assert t.median_ms > 0 and t.p10_ms <= t.median_ms <= t.p90_ms and t.runs == 3
    assert t.unit == "GFLOP/s" and t.rate > 0 and t.pct_of_peak > 0
    text = k.describe()
    assert "conv.split(co" in text and "T.parallel" in text and "T.vectorized" in text


# ------------------------------------------------------------------------------------------ schedules
def test_schedule_is_data(conv_kernel):
    layer, k = conv_kernel
    sch = k.schedule
    blob = json.dumps(sch.to_json())
    back = cs.schedule.Schedule.from_json(json.loads(blob))
    assert back == sch and back.hash == sch.hash and hash(back) == hash(sch)
    assert back.text() == sch.text() and sch.text().startswith("# template conv2d/nhwc_direct")
    k2 = cs.compile(layer, schedule=back)        # replayed from data, no template run
    check_against_reference(layer, k2)


def test_different_knobs_different_hash():
    layer = L.Conv2d(h=8, w=8, cin=16, cout=16)
    a = cs.compile(layer, knobs={"ow_tile": 2}).schedule
    b = cs.compile(layer, knobs={"ow_tile": 4}).schedule
    assert a != b and a.hash != b.hash


def test_inline_schedule_function():
    layer = L.Pool2d(h=8, w=8, c=8, kind="max", k=2, stride=2)

    def my_schedule(s, layer):
        pool = s["pool"]
        pool.vectorize("c")
        pool.parallel("oh")
        s["pad"].compute_inline()

    k = cs.compile(layer, schedule=my_schedule)
    assert k.schedule.template == "(inline)" and len(k.schedule.steps) == 3
    check_against_reference(layer, k)


def test_list_templates():
    assert "conv2d/nhwc_direct" in cs.schedule.list_templates("conv2d")
    assert "conv2d/nchw_direct" in cs.schedule.list_templates("conv2d")
    assert cs.schedule.list_templates("pool2d") == ["pool2d/nhwc"]
