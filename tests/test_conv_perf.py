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
def test_nhwc_direct_defaults_are_legal_on_resnet18(name, args, host):
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    layer = cs.layers.Conv2d(**args)
    knobs = tmpl.check_knobs(layer, host, None)        # raises if a default is outside its space or illegal
    lanes = host.lanes("float32")
    pixels = knobs["px_tile"] or knobs["oh_tile"] * knobs["ow_tile"]     # px_tile: fused (oh, ow) pixel tile
    accumulators = pixels * max(1, knobs["co_tile"] // lanes)
    assert accumulators >= 7, f"{name}: only {accumulators} accumulators cannot hide the FMA latency"


@pytest.mark.parametrize("layer", [
    # weights 590 KB > L2/2: the "ci" order with packed input and weight slices
    cs.layers.Conv2d(h=7, w=7, cin=256, cout=64),
    cs.layers.Conv2d(h=14, w=14, cin=256, cout=32, stride=2, bias=True, act="relu"),
    # small weights: the "row" order with padded rows built per output row
    cs.layers.Conv2d(h=12, w=12, cin=16, cout=32, bias=True, residual=True, act="relu"),
], ids=["ci-order", "ci-order-s2-epilogue", "row-order-residual"])
def test_nhwc_direct_default_paths_are_correct(layer, host):
    k = cs.compile(layer, template="conv2d/nhwc_direct")
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
