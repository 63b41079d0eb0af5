"""The convolution family: algorithms x layouts x templates against reference(), the residual
epilogue, the blocked NCHWc layout with pre-packed weights, layout transforms, and clear errors.

(tests/test_templates.py also runs every template over sampled knobs on tests/layer_samples.py.)
"""
import dataclasses
import warnings

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference

L = cs.layers
conv_mod = __import__("convsched.layers.conv", fromlist=["x"])

# (template, layer): every algorithm x layout x template on odd sizes, stride 1 and 2, padding, dilation,
# 3 or 5 input channels, batch > 1, with and without the fused epilogue.
CASES = [
    ("conv2d/nhwc_im2col_gemm", L.Conv2d(n=2, h=17, w=23, cin=3, cout=16, stride=2, pad=1, bias=True)),
    ("conv2d/nhwc_im2col_gemm", L.Conv2d(h=9, w=14, cin=5, cout=8, pad=2, dilation=2, residual=True, act="relu")),
    ("conv2d/nhwc_im2col_gemm", L.Conv2d(h=7, w=7, cin=16, cout=24, kh=1, kw=1, pad=0)),
    ("conv2d/nhwc_winograd", L.Conv2d(n=2, h=17, w=23, cin=3, cout=16, bias=True, residual=True, act="relu")),
    ("conv2d/nhwc_winograd", L.Conv2d(h=7, w=7, cin=16, cout=8, pad=0)),
    ("conv2d/nhwc_winograd", L.Conv2d(h=6, w=5, cin=5, cout=5, pad=2)),
    # 14 tiles a row: the defaults take 5-tile register tiles, the last one predicated (14 = 5 + 5 + 4)
    ("conv2d/nhwc_winograd", L.Conv2d(h=6, w=28, cin=8, cout=16, bias=True, act="relu")),
    ("conv2d/nhwc_depthwise", L.Conv2d(n=2, h=17, w=23, cin=16, cout=16, groups=16, stride=2, residual=True)),
    ("conv2d/nhwc_depthwise", L.Conv2d(h=9, w=14, cin=5, cout=5, groups=5, pad=2, dilation=2, bias=True,
                                       act="relu")),
    ("conv2d/nhwc_gemm", L.Conv2d(n=2, h=17, w=23, cin=3, cout=16, stride=2, pad=1, bias=True, residual=True)),
    ("conv2d/nhwc_gemm", L.Conv2d(h=9, w=14, cin=5, cout=8, pad=2, dilation=2, act="relu")),
    ("conv2d/nhwc_gemm", L.Conv2d(h=14, w=14, cin=16, cout=32, kh=1, kw=1, pad=0, stride=2, wpack=16)),
    ("conv2d/nhwc_winograd", L.Conv2d(h=9, w=7, cin=8, cout=16, wpack=8, bias=True)),
    ("conv2d/nhwc_im2col_gemm", L.Conv2d(h=9, w=7, cin=5, cout=16, wpack=16, stride=2)),
    ("conv2d/nchw_depthwise", L.Conv2d(h=17, w=23, cin=3, cout=3, groups=3, stride=2, bias=True, act="relu",
                                       layout="NCHW")),
    ("conv2d/nchw_depthwise", L.Conv2d(n=2, h=16, w=16, cin=8, cout=8, groups=8, kh=5, kw=5, pad=2,
                                       layout="NCHW")),
    ("conv2d/nchwc_direct", L.Conv2d(n=2, h=17, w=23, cin=8, cout=16, stride=2, pad=1, layout="NCHWc")),
    ("conv2d/nchwc_direct", L.Conv2d(h=9, w=14, cin=16, cout=8, pad=2, dilation=2, layout="NCHWc", bias=True,
                                     residual=True, act="relu")),
    ("conv2d/nhwc_direct", L.Conv2d(n=2, h=9, w=11, cin=5, cout=8, groups=1, bias=True, residual=True, act="relu")),
    ("conv2d/nhwc_direct", L.Conv2d(n=2, h=9, w=11, cin=5, cout=8, residual=True, act="relu")),
    ("conv2d/nchw_direct", L.Conv2d(h=9, w=11, cin=3, cout=8, stride=2, residual=True, bias=True,
                                                   layout="NCHW")),
]


def _case_id(i, case):
    name = case.values[0] if hasattr(case, "values") else case[0]
    return f"{name.split('/')[1]}-{i}"


@pytest.mark.parametrize("name,layer", CASES, ids=[_case_id(i, c) for i, c in enumerate(CASES)])
def test_template_defaults_match_reference(name, layer, target):
    k = cs.compile(layer, template=name, target=target)
    check_against_reference(layer, k, seed=3)


def test_algorithms_share_inputs_and_outputs():
    layer = L.Conv2d(h=10, w=12, cin=8, cout=16, bias=True, residual=True, act="relu")
    xs = layer.random_inputs(1)
    outs = [cs.compile(layer, template=t)(*xs) for t in
            ("conv2d/nhwc_direct", "conv2d/nhwc_im2col_gemm", "conv2d/nhwc_winograd")]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-4, atol=1e-4)
    assert {cs.compile(layer, template=t).schedule.algorithm for t in
            ("conv2d/nhwc_im2col_gemm", "conv2d/nhwc_winograd")} == {"im2col", "winograd2x2"}


def test_residual_is_added_before_relu():
    layer = L.Conv2d(h=4, w=4, cin=8, cout=8, kh=1, kw=1, pad=0, residual=True, act="relu")
    x = np.zeros((1, 4, 4, 8), np.float32)
    w = np.zeros((1, 1, 8, 8), np.float32)
    r = np.linspace(-1, 1, 128, dtype=np.float32).reshape(1, 4, 4, 8)
    y = cs.compile(layer, template="conv2d/nhwc_im2col_gemm")(x, w, r)
    np.testing.assert_array_equal(y, np.maximum(r, 0))
    assert [s.name for s in layer.input_specs()] == ["x", "w", "r"]


def test_nchwc_pack_roundtrip_and_prepacked_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 5, 7)).astype(np.float32)
    xb = conv_mod.nchwc_pack(x, 8)
    assert xb.shape == (2, 2, 5, 7, 8)
    np.testing.assert_array_equal(conv_mod.nchwc_unpack(xb), x)
    np.testing.assert_array_equal(conv_mod.nchwc_unpack(conv_mod.nchwc_pack(x.transpose(0, 2, 3, 1), 8, "NHWC"),
                                                        "NHWC"), x.transpose(0, 2, 3, 1))
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(conv_mod.unpack_weights_nchwc(conv_mod.pack_weights_nchwc(w, 8)), w)
    # the NCHWc kernel on blocked data == the NCHW kernel on plain data
    blocked = L.Conv2d(h=5, w=7, cin=16, cout=24, n=2, layout="NCHWc")
    plain = L.Conv2d(h=5, w=7, cin=16, cout=24, n=2, layout="NCHW")
    yb = cs.compile(blocked)(xb, blocked.pack_weights(w))
    y = cs.compile(plain)(x, w)
    np.testing.assert_allclose(conv_mod.nchwc_unpack(yb), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("src,dst", [("NHWC", "NCHWc"), ("NCHWc", "NHWC"), ("NCHW", "NCHWc"),
                                     ("NCHWc", "NCHW"), ("NHWC", "NCHW"), ("NCHW", "NHWC")])
def test_layout_transforms_exact(src, dst, target):
    for c, cb in ((16, 8), (24, target.lanes("float32") if 24 % target.lanes("float32") == 0 else 4)):
        t = L.LayoutTransform(n=2, c=c, h=5, w=9, src=src, dst=dst, cblock=cb)
        check_against_reference(t, cs.compile(t, target=target), seed=2)


def test_bind_prepacks_weights_once():
    layer = L.Conv2d(h=6, w=6, cin=8, cout=16, layout="NCHWc", bias=True)
    x, w, b = layer.random_inputs(4)
    k = cs.compile(layer)
    bound = k.bind(w=w, b=b)
    np.testing.assert_array_equal(bound(x), k(x, w, b))
    assert [s.name for s in bound.input_specs()] == ["x"]
    with pytest.raises(ValueError, match="takes 1 array"):
        bound(x, w)
    with pytest.raises(ValueError, match="no input named 'q'"):
        k.bind(q=w)


def test_workload_key_unchanged_for_old_fields():
    key = L.Conv2d(h=8, w=8, cin=16, cout=32).workload_key
    assert "residual" not in key and "cblock" not in key
    assert '"residual":true' in L.Conv2d(h=8, w=8, cin=16, cout=32, residual=True).workload_key


def test_clear_errors():
    with pytest.raises(ValueError, match="NCHWc supports groups=1"):
        L.Conv2d(cin=16, cout=16, groups=16, layout="NCHWc")
    with pytest.raises(ValueError, match="multiples of cblock"):
        L.Conv2d(cin=3, cout=16, layout="NCHWc")
    with pytest.raises(ValueError, match="not a multiple of cblock"):
        L.LayoutTransform(c=12, src="NHWC", dst="NCHWc")
    with pytest.raises(cs.ScheduleError, match="winograd2x2 needs a 3x3 kernel, stride 1"):
        cs.compile(L.Conv2d(h=9, w=9, cin=4, cout=8, stride=2), template="conv2d/nhwc_winograd")
    with pytest.raises(cs.ScheduleError, match="needs layout NHWC and groups"):
        cs.compile(L.Conv2d(h=9, w=9, cin=4, cout=8, layout="NCHW"), template="conv2d/nhwc_im2col_gemm")
    with pytest.raises(ValueError, match="shape is"):
        cs.compile(L.Conv2d(h=6, w=6, cin=8, cout=8, layout="NCHWc"))(
            np.zeros((1, 8, 6, 6), np.float32), np.zeros((1, 1, 3, 3, 8, 8), np.float32))


def test_prepacked_panels_equal_hwio():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3, 8, 32)).astype(np.float32)
    np.testing.assert_array_equal(conv_mod.unpack_weights_panels(conv_mod.pack_weights_panels(w, 16)), w)
    plain = L.Conv2d(h=9, w=11, cin=8, cout=32, bias=True)
    packed = L.Conv2d(h=9, w=11, cin=8, cout=32, bias=True, wpack=16)
    x, _, b = plain.random_inputs(0)
    want = cs.compile(plain)(x, w, b)
    got = cs.compile(packed, template="conv2d/nhwc_gemm").bind(w=packed.pack_weights(w), b=b)(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="wpack=12 needs layout NHWC and must divide"):
        L.Conv2d(cout=32, wpack=12)


def _deep_layer(target, h, **kw):
    """A layer whose weights pass half of the target's L2 (nhwc_direct's "deep" rule): cin x cout grown from
    96 x 192 (663 KB) until 9 * cin * cout * 4 bytes > L2 / 2, whatever the L2 of the target."""
    cin, cout = 96, 192
    while 9 * cin * cout * 4 <= target.l2_bytes // 2:
        cin, cout = cin + 32, cout + 64
    return L.Conv2d(h=h, w=h, cin=cin, cout=cout, **kw)


def test_nhwc_direct_prepacked_deep_layer_copies_no_weights(target):
    # weights > L2/2 (of this target's model) with pre-packed panels: never a per-call weight copy; the register
    # tile lies inside one panel or covers whole panels: "ci" order with the input slab packed (pack="x"), or a
    # pixel tile of the fused (oh, ow) axis in "co" order reading the panels in place. Plain weights: the "ci"
    # order copies input and weight slabs (pack="xw").
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    for h in (14, 7):
        for P in (8, 16):
            layer = _deep_layer(target, h, bias=True, act="relu", wpack=P)
            d = tmpl.defaults(layer, target)
            assert (d["order"], d["pack"]) in (("ci", "x"), ("co", "none")), d
            assert d["order"] == "ci" or d["px_tile"] > 0, d
            assert P % d["co_tile"] == 0 or d["co_tile"] % P == 0, d
            k = cs.compile(layer, template="conv2d/nhwc_direct", target=target)
            assert "cache_read(w" not in k.schedule.text()
            check_against_reference(layer, k, seed=4)
        plain = _deep_layer(target, h)
        assert (tmpl.defaults(plain, target)["order"], tmpl.defaults(plain, target)["pack"]) == ("ci", "xw")


def test_nhwc_direct_pixel_tiles_with_partial_last_tile():
    # px_tile not dividing oh*ow (TVM predicates the last tile): both orders, stride 2, residual epilogue
    for layer, knobs in (
            (L.Conv2d(h=13, w=13, cin=24, cout=32, stride=2, residual=True, act="relu"),      # 7x7 = 49 pixels
             dict(order="ci", pack="xw", pad_at="inline", ci_tile=24)),
            (L.Conv2d(n=2, h=7, w=5, cin=16, cout=32, bias=True, wpack=16),                   # 35 pixels
             dict(order="co", pack="none", pad_at="root", ci_tile=16))):
        for px in (4, 6):
            k = cs.compile(layer, template="conv2d/nhwc_direct",
                           knobs=dict(knobs, px_tile=px, oh_tile=1, ow_tile=1, co_tile=16))
            check_against_reference(layer, k, seed=6)


def test_nhwc_direct_defaults_balance_rows_over_cores(target):
    # 7 output rows (oh_tile 1 or 7) on 2 cores would run 4 + 3: when the channel blocks split evenly, the 2-core
    # defaults put them in parallel instead; with 1 core rows stay outermost. cout is 4 vectors of the target,
    # so that its register tiles (1 or 2 vectors wide) leave an even number of blocks; the kernel built for 2
    # cores still runs (and is checked) here.
    two = dataclasses.replace(target, cores=2)
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    lanes = target.lanes("float32")
    for layer in (L.Conv2d(h=14, w=14, cin=32, cout=4 * lanes, kh=1, kw=1, stride=2, pad=0),
                  L.Conv2d(h=7, w=7, cin=16, cout=4 * lanes, bias=True)):
        d1, d2 = tmpl.defaults(layer, dataclasses.replace(two, cores=1)), tmpl.defaults(layer, two)
        rows = layer.n * layer.oh // d2["oh_tile"]
        assert rows % 2 == 0 or d2["order"] == "co", d2
        assert d1["order"] == "row"
        k = cs.compile(layer, template="conv2d/nhwc_direct", target=two)
        check_against_reference(layer, k, seed=5)


@pytest.mark.parametrize("pad_at", ["row", "inline", "root"])
@pytest.mark.parametrize("order", ["co", "ow"])
def test_nhwc_depthwise_every_pad_and_order(pad_at, order):
    # every pad placement x loop order (the sampled-knob test draws only 3 points per layer): stride 2 with a
    # residual + bias + relu epilogue (computed at the outer loop of either order), and 5 channels (no vector)
    for layer in (L.Conv2d(n=2, h=17, w=23, cin=16, cout=16, groups=16, stride=2, bias=True, residual=True,
                           act="relu"),
                  L.Conv2d(h=9, w=14, cin=5, cout=5, groups=5, pad=2, dilation=2, bias=True)):
        k = cs.compile(layer, template="conv2d/nhwc_depthwise", knobs={"pad_at": pad_at, "order": order})
        check_against_reference(layer, k, seed=5)
