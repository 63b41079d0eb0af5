"""Custom layers: CustomLayer + user template directories; seed 002's Gaussian and stochastic pooling."""
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference
from convsched.layers.custom import CustomLayer, TensorSpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d  # noqa: E402

GAUSS = [GaussianPool2d(h=16, w=16, c=16),                                           # k 5, stride 2, 2 kernels
         GaussianPool2d(n=2, h=13, w=11, c=8, k=3, stride=1, pad=1, variances=(0.5, 1.0, 9.0))]


@pytest.mark.parametrize("layer", GAUSS, ids=str)
@pytest.mark.parametrize("template", ["gaussian_pool2d/direct", "gaussian_pool2d/separable"])
def test_gaussian_pool_matches_reference(layer, template, target):
    tmpl = cs.schedule.get_template(template)
    space = tmpl.knob_space(layer, target)
    other = {k: v[-1] for k, v in space.items()}        # the default point and the last point of each space
    for knobs in (None, other):
        if knobs and tmpl.constraint(layer, target, {**tmpl.defaults(layer, target), **knobs}) is not True:
            continue
        check_against_reference(layer, cs.compile(layer, template=template, knobs=knobs, target=target), seed=3)


def test_gaussian_kernels_are_normalized_and_stacked():
    layer = GaussianPool2d(h=12, w=12, c=8, k=5, stride=2, pad=2, variances=(1.0, 100.0))
    np.testing.assert_allclose(layer.taps().sum(axis=1), 1.0, rtol=1e-6)
    k = cs.compile(layer)
    y = k(np.full((1, 12, 12, 8), 3.0, np.float32))
    assert y.shape == (1, 6, 6, 16)                      # two kernels per map: 2 * c output channels
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], 3.0, rtol=1e-5)   # interior: a normalized kernel keeps constants
    assert y[0, 0, 0, 0] < 3.0                           # the border sees zero padding


@pytest.mark.parametrize("mode", ["train", "test"])
def test_stochastic_pool_matches_reference(mode, target):
    for c in (16, 5):
        layer = StochasticPool2d(n=2, h=12, w=10, c=c, k=2, mode=mode)
        check_against_reference(layer, cs.compile(layer, target=target), seed=5)   # train mode: exact equality


def test_stochastic_pool_picks_window_values():
    layer = StochasticPool2d(h=8, w=8, c=8, k=2)
    x, u = layer.random_inputs(1)
    y = cs.compile(layer)(x, u)
    a = np.maximum(x, 0).reshape(1, 4, 2, 4, 2, 8).transpose(0, 1, 3, 5, 2, 4).reshape(1, 4, 4, 8, 4)
    assert np.all((y[..., None] == a).any(-1))


def test_user_layer_with_its_own_template_dir(tmp_path):
    (tmp_path / "scale").mkdir()
    (tmp_path / "scale" / "flat.py").write_text(textwrap.dedent('''
        """Scale: one flat vectorized loop."""
        LAYER = "scale"
        KNOBS = {"lanes": [8]}

        def schedule(s, layer, lanes):
            st = s["scale"]
            st.split("c", lanes)
            st.vectorize("c_i")
    '''))

    @dataclass(frozen=True)
    class Scale(CustomLayer):
        """y = x * factor. Stages: "scale" (axes n, h, w, c)."""
        n: int = 1
        h: int = 4
        w: int = 4
        c: int = 16
        factor: float = 2.5
        KIND: ClassVar[str] = "scale"
        TEMPLATES: ClassVar[str] = str(tmp_path)

        def input_specs(self):
            return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

        def compute(self, te, expr, x):
            return te.compute(x.shape, lambda n, h, w, c: x[n, h, w, c] * self.factor, name="scale")

        def reference(self, x):
            return (x * self.factor).astype(np.float32)

    layer = Scale()
    assert layer.output_specs() == [TensorSpec("y", (1, 4, 4, 16), "float32")]
    assert layer.default_template() == "scale/flat"
    check_against_reference(layer, cs.compile(layer))

    @dataclass(frozen=True)
    class Orphan(Scale):
        KIND: ClassVar[str] = "orphan_kind_without_templates"
        TEMPLATES: ClassVar[str] = None

    with pytest.raises(LookupError, match="no templates for kind 'orphan_kind_without_templates'"):
        Orphan().default_template()


def test_custom_layer_inside_a_graph():
    """A conv feeding seed 002's Gaussian pooling, as one graph; the pool keeps its own template."""
    G, L = cs.graph, cs.layers
    g = G.Graph("conv_gauss")
    x = g.input("x", (1, 8, 8, 8))
    g.add("c", L.Conv2d(h=8, w=8, cin=8, cout=8, bias=True, act="relu"), x)
    g.add("gp", GaussianPool2d(h=8, w=8, c=8, k=3, stride=2, pad=1), "c")
    g.output("gp")
    params, xs = g.random_params(), g.random_inputs()
    # the taps are a parameter of the graph node (the layer's prepare_inputs fills them in for direct calls)
    params["gp.taps"] = g.layer("gp").taps()
    y = g.compile()(**xs, params=params)
    np.testing.assert_allclose(y, g.reference(xs, params), rtol=1e-4, atol=1e-4)
