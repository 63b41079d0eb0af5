"""The sweep: every layer kind, compiled with its default schedule, over channel counts 1, 3, 8, 17, 24, 64, 70
and odd spatial sizes, on every target of the matrix (conftest.MATRIX), against reference() -- exact on the
integer and bit paths. A template may refuse a layer only for an algorithmic reason; a channel count that no
vector width divides must still compile (tail policies), on every target.

Size: 36 layers per channel count x 7 counts x the matrix (2 targets on most hosts) = 504 kernels, all small
(7x5 or 6x7 images) so the sweep costs about a minute and a half.
"""
import sys
from pathlib import Path

import pytest

import convsched as cs
from conftest import check_against_reference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d  # noqa: E402

L = cs.layers
CHANNELS = (1, 3, 8, 17, 24, 64, 70)


def _cblock(c: int) -> int:
    """An NCHWc block that divides c (the layout needs it): the widest of 16, 8, 4, 2, 1."""
    return next(b for b in (16, 8, 4, 2, 1) if c % b == 0)


# kind -> (c -> layer): odd spatial sizes, stride 1 and 2, padding, epilogues
SWEEP = {
    "conv2d-nhwc": lambda c: L.Conv2d(h=7, w=5, cin=c, cout=c, bias=True, act="relu"),
    "conv2d-nhwc-1x1-s2": lambda c: L.Conv2d(h=7, w=9, cin=c, cout=c, kh=1, kw=1, pad=0, stride=2,
                                             residual=True),
    "conv2d-nhwc-3in": lambda c: L.Conv2d(h=9, w=7, cin=3, cout=c, stride=2, pad=1),
    "conv2d-depthwise": lambda c: L.Conv2d(h=7, w=5, cin=c, cout=c, groups=c, stride=2, pad=1, bias=True),
    "conv2d-nchw": lambda c: L.Conv2d(h=7, w=5, cin=c, cout=c, layout="NCHW", bias=True, act="relu"),
    "conv2d-nchw-depthwise": lambda c: L.Conv2d(h=7, w=5, cin=c, cout=c, groups=c, layout="NCHW"),
    "conv2d-nchwc": lambda c: L.Conv2d(h=7, w=5, cin=c, cout=c, layout="NCHWc", cblock=_cblock(c), residual=True),
    "layout_transform": lambda c: L.LayoutTransform(c=c, h=7, w=5, src="NHWC", dst="NCHWc", cblock=_cblock(c)),
    "pool2d-max": lambda c: L.Pool2d(h=7, w=5, c=c, kind="max", k=3, stride=2, pad=1),
    "pool2d-avg": lambda c: L.Pool2d(h=7, w=5, c=c, kind="avg", k=2, stride=2),
    "global_avg_pool2d": lambda c: L.GlobalAvgPool2d(h=7, w=5, c=c),
    "add": lambda c: L.Add(h=7, w=5, c=c, act="relu"),
    "dense": lambda c: L.Dense(n=2, c=c, cout=c, act="relu"),
    "bitpack": lambda c: L.BitPack(h=7, w=5, c=c),
    "binary_conv2d": lambda c: L.BinaryConv2d(h=7, w=5, cin=c, cout=c, pad=1),
    "binary_conv2d-threshold": lambda c: L.BinaryConv2d(h=7, w=5, cin=c, cout=c, stride=2, pad=1, pad_value=1,
                                                        threshold=True),
    "popcount_threshold": lambda c: L.PopcountThreshold(h=7, w=5, c=c),
    "segmented_bit_pool": lambda c: L.SegmentedBitPool(h=7, w=5, c=c, segments=2),
    "bit_max_pool2d": lambda c: L.BitMaxPool2d(h=7, w=5, c=c, k=3, stride=2, pad=1),
    "bit_global_pool": lambda c: L.BitGlobalPool(h=7, w=5, c=c),
    "bit_dense": lambda c: L.BitDense(h=1, w=3, c=c, classes=5),
    "binary_conv_pool": lambda c: L.BinaryConvPool(h=7, w=6, cin=c, cout=c, segments=2),
    "loss_delta": lambda c: L.LossDelta(n=2, h=6, w=7, cin=c, cout=2, classes=3),
    # backward layers (docs/backward.md): strided data gradient (pixel phases), stride-1 (Winograd by default)
    "pool2d_argmax": lambda c: L.Pool2dArgmax(L.Pool2d(h=7, w=5, c=c, kind="max", k=3, stride=2, pad=1)),
    "pool2d_grad": lambda c: L.Pool2dGrad(L.Pool2d(h=7, w=5, c=c, kind="max", k=3, stride=2, pad=1)),
    "global_avg_pool2d_grad": lambda c: L.GlobalAvgPool2dGrad(L.GlobalAvgPool2d(h=7, w=5, c=c)),
    "relu": lambda c: L.ReLU(h=7, w=5, c=c),
    "relu_grad": lambda c: L.ReLUGrad(L.ReLU(h=7, w=5, c=c)),
    "prelu": lambda c: L.PReLU(h=7, w=5, c=c),
    "prelu_grad": lambda c: L.PReLUGrad(L.PReLU(h=7, w=5, c=c)),
    "conv2d_data_grad": lambda c: L.Conv2dDataGrad(L.Conv2d(h=7, w=5, cin=c, cout=c, stride=2, pad=1)),
    "conv2d_data_grad-s1": lambda c: L.Conv2dDataGrad(L.Conv2d(h=7, w=5, cin=c, cout=c)),
    "conv2d_weight_grad": lambda c: L.Conv2dWeightGrad(L.Conv2d(h=7, w=5, cin=c, cout=c, stride=2, pad=1)),
    "bias_grad": lambda c: L.BiasGrad(h=7, w=5, c=c),
    "gaussian_pool2d": lambda c: GaussianPool2d(h=7, w=5, c=c, k=3, stride=2, pad=1),
    "stochastic_pool2d": lambda c: StochasticPool2d(h=6, w=4, c=c, k=2),
}

CASES = [(kind, c) for kind in SWEEP for c in CHANNELS]


@pytest.fixture(scope="module", autouse=True)
def _example_templates():
    cs.schedule.add_template_dir(Path(__file__).resolve().parent.parent / "examples" / "schedules")


@pytest.mark.parametrize("kind,c", CASES, ids=[f"{k}-c{c}" for k, c in CASES])
def test_default_compiles_and_matches_reference(kind, c, target):
    layer = SWEEP[kind](c)
    k = cs.compile(layer, target=target)
    check_against_reference(layer, k, seed=c)


def test_the_sweep_covers_every_layer_kind():
    kinds = {type(SWEEP[k](8)).KIND for k in SWEEP}
    shipped = {d.name for d in cs.schedule.template.BUILTIN_DIR.iterdir() if d.is_dir() and any(d.glob("*.py"))}
    # "fused" layers come from graphs (tests/test_graph.py compiles them)
    assert shipped - {"fused"} <= kinds, shipped - {"fused"} - kinds
    assert {"gaussian_pool2d", "stochastic_pool2d"} <= kinds
