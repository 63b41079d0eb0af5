"""The fast fp32 conv schedules: their defaults are legal on the ResNet-18 shapes, and the code paths those
defaults take (loop orders "row" / "ci", packed slices, fused epilogue) compute the right answer.
Speed itself is measured by benchmarks/resnet18_conv.py, never asserted here."""
import sys
from pathlib import Path

import pytest

import convsched as cs
from conftest import check_against_reference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from resnet18_conv import LAYERS  # noqa: E402


@pytest.mark.parametrize("name,args", LAYERS, ids=[n for n, _ in LAYERS])
def test_nhwc_direct_defaults_are_legal_on_resnet18(name, args, target):
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    layer = cs.layers.Conv2d(**args)
    knobs = tmpl.check_knobs(layer, target, None)      # raises if a default is outside its space or illegal
    lanes = target.lanes("float32")
    pixels = knobs["px_tile"] or knobs["oh_tile"] * knobs["ow_tile"]     # px_tile: fused (oh, ow) pixel tile
    accumulators = pixels * max(1, knobs["co_tile"] // lanes)
    # the FMA pipes x latency of the target's model (8 on Zen 3 and Sapphire Rapids); a 7x7 image allows 7
    # pixels a row, one short of 8 with one vector of channels
    need = target.accumulators_for_fma_peak - 1
    assert accumulators >= need, f"{name}: {accumulators} accumulators cannot hide the FMA latency ({need})"


def _deep(target, **kw):
    """Weights past half of the target's L2 (nhwc_direct's rule for the "ci" order): 256 input channels and
    cout grown from 32 until 9 * 256 * cout * 4 bytes > L2 / 2."""
    cout = 32
    while 9 * 256 * cout * 4 <= target.l2_bytes // 2:
        cout += 32
    return cs.layers.Conv2d(cin=256, cout=cout, **kw)


@pytest.mark.parametrize("case", ["ci-order", "ci-order-s2-epilogue", "row-order-residual"])
def test_nhwc_direct_default_paths_are_correct(case, target):
    layer = {"ci-order": lambda: _deep(target, h=7, w=7),
             "ci-order-s2-epilogue": lambda: _deep(target, h=14, w=14, stride=2, bias=True, act="relu"),
             # small weights: the "row" order with padded rows built per output row
             "row-order-residual": lambda: cs.layers.Conv2d(h=12, w=12, cin=16, cout=32, bias=True,
                                                            residual=True, act="relu")}[case]()
    k = cs.compile(layer, template="conv2d/nhwc_direct", target=target)
    assert k.schedule.knob_dict["order"] == ("row" if case.startswith("row") else "ci"), k.schedule.knob_dict
    check_against_reference(layer, k, seed=3)


def test_resnet18_benchmark_helpers_agree_with_reference():
    import numpy as np
    from common import geomean, numpy_conv_nhwc, table
    layer = cs.layers.Conv2d(h=9, w=9, cin=8, cout=16, stride=2)
    x, w = layer.random_inputs(seed=1)
    np.testing.assert_allclose(numpy_conv_nhwc(x, w, layer.strides, layer.pads), layer.reference(x, w),
                               rtol=1e-4, atol=1e-4)
    assert abs(geomean([2.0, 0.5, None]) - 1.0) < 1e-12
    assert "a" in table([["a", "1"]], ["x", "y"])
