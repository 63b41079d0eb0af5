"""Backward passes: gradients against finite differences, argument orders, the compiled pass end to end, max
pooling's tie-breaking (and PyTorch's, when installed), the custom-layer hook (Gaussian and stochastic pooling,
a user's own gradient), export and tuning of a backward layer.

(tests/test_templates.py runs every backward template over sampled knobs on tests/layer_samples.py's samples,
on the target matrix; tests/test_sweep.py every backward kind's defaults over odd channel counts.)
"""
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference
from convsched.layers.backward.check import analytic_gradients, gradient_check
from convsched.layers.custom import CustomGrad, CustomLayer, TensorSpec
from layer_samples import SAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d, StochasticPool2dGrad  # noqa: E402

warnings.filterwarnings("ignore", message="no tuning record")
L = cs.layers

def named_inputs(layer, seed=0):
    arrays = layer.prepare_inputs(layer.random_inputs(seed))
    return dict(zip((s.name for s in layer.input_specs()), arrays))


# ------------------------------------------------------------------------------------ finite differences
FORWARDS = [
    L.Pool2d(h=5, w=6, c=3, kind="max", k=3, stride=2, pad=1),          # overlapping windows, padding
    L.Pool2d(n=2, h=5, w=5, c=2, kind="max", k=2, stride=1),
    L.Pool2d(h=6, w=5, c=3, kind="avg", k=3, stride=2, pad=1),          # border windows count fewer elements
    L.Pool2d(h=5, w=7, c=2, kind="avg", k=(2, 3), stride=(1, 2), pad=(1, 1)),
    L.GlobalAvgPool2d(n=2, h=3, w=4, c=3),
    L.ReLU(h=3, w=4, c=5),
    L.PReLU(n=2, h=3, w=2, c=5),
    L.Conv2d(h=5, w=6, cin=3, cout=4, stride=2, pad=1, bias=True, act="relu"),
    L.Conv2d(h=6, w=5, cin=4, cout=4, groups=2, dilation=2, pad=2, residual=True),
    L.Conv2d(h=5, w=5, cin=3, cout=3, groups=3, kh=3, kw=2, stride=(1, 2), pad=(1, 0)),   # depthwise
    L.Conv2d(n=2, h=4, w=4, cin=2, cout=3, kh=1, kw=1, pad=0, stride=2),
    GaussianPool2d(h=7, w=6, c=2, k=3, stride=2, pad=1, variances=(0.7, 3.0)),
]


@pytest.mark.parametrize("layer", FORWARDS, ids=str)
def test_gradients_match_finite_differences(layer):
    """Every gradient of the pass (the backward layers' numpy references, float64) against central differences
    of the forward's reference: all input elements, eps 1e-6. Random float inputs have no ties and no element
    within eps of a kink (max, ReLU), where the two would rightly differ."""
    errors = gradient_check(layer.backward(), named_inputs(layer))
    assert set(errors) == {g for g in layer.backward().gradients}
    assert max(errors.values()) < 1e-7, errors


# ------------------------------------------------------------------------------------ compiled passes
@pytest.mark.parametrize("layer", [L.Pool2d(n=2, h=9, w=9, c=24, kind="max", k=3, stride=2, pad=1),
                                   L.Conv2d(h=9, w=8, cin=8, cout=16, stride=2, pad=1, bias=True, act="relu",
                                            residual=True),
                                   L.PReLU(n=2, h=5, w=6, c=20)], ids=str)
def test_compiled_backward_pass_matches_the_references(layer):
    """cs.compile_backward: the training forward and every step compiled, run in order, against the numpy pass."""
    train = cs.compile_backward(layer)
    inputs = named_inputs(layer, seed=3)
    y = train.forward(*inputs.values())
    y = y[0] if isinstance(y, tuple) else y
    dy = np.random.default_rng(4).uniform(-1, 1, y.shape).astype(np.float32)
    got = train.backward(dy)
    want = analytic_gradients(layer.backward(), train._inputs, {"y": dy})
    assert set(got) == set(want) == set(layer.backward().gradients)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=2e-6 * 9 * 16, err_msg=name)


def test_argument_orders_are_inputs_then_saved_then_output_gradient():
    """The documented argument order of every step (docs/backward.md)."""
    def orders(layer):
        return [(s.outputs, tuple(str(a) for a in s.args), s.wrt) for s in layer.backward().steps]

    mp = L.Pool2d(h=8, w=8, c=16, kind="max", k=3, stride=2, pad=1)
    assert type(mp.backward().forward).__name__ == "Pool2dArgmax"       # max pooling records its argmax
    assert [s.name for s in mp.backward().forward.output_specs()] == ["y", "argmax"]
    assert orders(mp) == [(("dx",), ("saved argmax", "grad dy"), ("x",))]
    assert orders(L.Pool2d(kind="avg")) == [(("dx",), ("grad dy",), ("x",))]
    assert orders(L.GlobalAvgPool2d()) == [(("dx",), ("grad dy",), ("x",))]
    assert orders(L.ReLU()) == [(("dx",), ("saved y", "grad dy"), ("x",))]
    assert orders(L.PReLU()) == [(("dx", "dslope"), ("input x", "input slope", "grad dy"), ("x", "slope"))]
    assert orders(L.Conv2d()) == [(("dx",), ("input w", "grad dy"), ("x",)),
                                  (("dw",), ("input x", "grad dy"), ("w",))]
    conv = L.Conv2d(bias=True, act="relu", residual=True)
    assert orders(conv) == [(("dz",), ("saved y", "grad dy"), (None,)),
                            (("dx",), ("input w", "step dz"), ("x",)),
                            (("dw",), ("input x", "step dz"), ("w",)),
                            (("db",), ("step dz",), ("b",)),
                            (("dr",), ("step dz",), ("r",))]
    with pytest.raises(ValueError, match="NHWC"):
        L.Conv2d(layout="NCHW").backward()


# ------------------------------------------------------------------------------------ max pooling ties
def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order():
    pool = L.Pool2d(h=4, w=4, c=3, kind="max", k=3, stride=1, pad=1)
    x = np.zeros((1, 4, 4, 3), np.float32)
    x[0, 1, 2, 1] = x[0, 2, 1, 1] = 5.0           # channel 1: two maxima, (1, 2) comes first in row-major order
    x[0, :, :, 2] = -1.0                          # channel 2: every element ties (padding must never win)
    y, am = cs.compile(L.Pool2dArgmax(pool))(x)
    ref_y, ref_am = L.Pool2dArgmax(pool).reference(x)
    np.testing.assert_array_equal(am, ref_am)
    np.testing.assert_array_equal(y, ref_y)
    assert am[0, 1, 1, 1] == 1 * 4 + 2            # window (0..2, 0..2) holds both: the earlier row wins
    assert am[0, 0, 0, 2] == 0 and am[0, 2, 2, 2] == 1 * 4 + 1   # all equal: the window's first inside element
    assert am[0, 3, 3, 0] == 2 * 4 + 2


def test_max_pool_gradient_equals_pytorch_exactly_on_ties():
    torch = pytest.importorskip("torch")
    pool = L.Pool2d(n=2, h=15, w=13, c=8, kind="max", k=3, stride=2, pad=1)
    x = np.random.default_rng(0).integers(-2, 3, (2, 15, 13, 8)).astype(np.float32)     # ties everywhere
    x[0, 4, 4, :3] = x[0, 4, 5, :3] = x[1, 0, 0, 5] = np.nan                               # NaN wins: the last one
    dy = np.random.default_rng(1).integers(-4, 5, (2, pool.oh, pool.ow, 8)).astype(np.float32)  # exact sums
    train = cs.compile_backward(pool)
    train.forward(x)
    dx = train.backward(dy)["x"]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    yt.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(dx, xt.grad.permute(0, 2, 3, 1).numpy())


def test_data_gradient_reference_is_the_scatter_definition():
    """reference() gathers as the kernels do (padding zeros included, for inf/NaN weights); on finite numbers it
    is exactly the scatter that defines the transposed convolution."""
    for layer in SAMPLES["conv2d_data_grad"]:
        w, dy = layer.random_inputs(2)
        np.testing.assert_array_equal(layer.reference(w, dy), layer.scatter_reference(w, dy))


# ------------------------------------------------------------------------------------ custom layers
def test_gaussian_pool_gradient_templates_match_the_reference(target):
    layer = GaussianPool2d(n=2, h=11, w=10, c=8, k=5, stride=2, pad=2, variances=(1.0, 4.0, 0.5))
    grad = layer.backward()["x"][0].layer
    for template in cs.schedule.list_templates("gaussian_pool2d_grad"):
        check_against_reference(grad, cs.compile(grad, template=template, target=target), seed=1)


def test_stochastic_pool_gradient_routes_dy_to_the_sampled_positions():
    layer = StochasticPool2d(n=2, h=9, w=8, c=16, k=2)          # odd height: the last row is in no window
    bw = layer.backward()
    assert type(bw.forward).__name__ == "StochasticPool2dSampled"
    assert [str(a) for a in bw.steps[0].args] == ["saved pos", "grad dy"]
    x, u = layer.random_inputs(7)
    train = cs.compile_backward(layer)
    y, pos = train.forward(x, u)
    np.testing.assert_array_equal(y, layer.reference(x, u))          # the same forward, plus the positions
    np.testing.assert_array_equal(pos, bw.forward.reference(x, u)[1])
    dy = np.random.default_rng(8).uniform(-1, 1, y.shape).astype(np.float32)
    dx = train.backward(dy)["x"]
    np.testing.assert_array_equal(dx, StochasticPool2dGrad(layer).reference(pos, dy))
    win = dx[:, :8].reshape(2, 4, 2, 4, 2, 16).transpose(0, 1, 3, 5, 2, 4).reshape(2, 4, 4, 16, 4)
    taken = pos >= 0
    np.testing.assert_array_equal(win.sum(-1), np.where(taken, dy, 0))          # all of dy, at one place
    np.testing.assert_array_equal(np.take_along_axis(win, np.maximum(pos, 0)[..., None], -1)[..., 0],
                                  np.where(taken, dy, 0))
    assert np.all(x[:, :8][dx[:, :8] != 0] > 0) and not dx[:, 8].any()
    with pytest.raises(ValueError, match="test mode"):
        StochasticPool2d(mode="test").backward()


def test_user_gradient_declared_with_the_hook(tmp_path):
    (tmp_path / "shift_grad").mkdir()
    (tmp_path / "shift_grad" / "rows.py").write_text(textwrap.dedent('''
        """Shift gradient: rows in parallel, channels vectorized."""
        LAYER = "shift_grad"
        KNOBS = {"lanes": [4, 8]}

        def schedule(s, layer, lanes):
            dx = s["dx"]
            dx.parallel("h")
            dx.vectorize(dx.split("c", lanes)[1])
    '''))

    @dataclass(frozen=True)
    class Shift(CustomLayer):
        """y[h, c] = x[h, c] * a + x[h - 1, c] (x[-1] = 0): a row shift. Stages: "y" (h, c)."""
        h: int = 6
        c: int = 16
        a: float = 0.5
        KIND: ClassVar[str] = "shift"

        def input_specs(self):
            return [TensorSpec("x", (self.h, self.c), "float32")]

        def compute(self, te, expr, x):
            return te.compute((self.h, self.c), lambda h, c: x[h, c] * self.a + expr.if_then_else(
                h > 0, x[expr.max(h - 1, 0), c], expr.const(0.0, "float32")), name="y")

        def reference(self, x):
            y = x * self.a
            y[1:] += x[:-1]
            return y

    @dataclass(frozen=True)
    class ShiftGrad(CustomGrad):
        """dx[h, c] = dy[h, c] * a + dy[h + 1, c]: the transposed shift, a gather. Stages: "dx" (h, c)."""
        KIND: ClassVar[str] = "shift_grad"
        TEMPLATES: ClassVar[str] = str(tmp_path)
        ARGS: ClassVar[tuple] = ("grad:y",)
        WRT: ClassVar[tuple] = ("x",)

        def compute(self, te, expr, dy):
            f = self.forward
            return te.compute((f.h, f.c), lambda h, c: dy[h, c] * f.a + expr.if_then_else(
                h < f.h - 1, dy[expr.min(h + 1, f.h - 1), c], expr.const(0.0, "float32")), name="dx")

        def reference(self, dy):
            dx = dy * self.forward.a
            dx[:-1] += dy[1:]
            return dx

    with pytest.raises(NotImplementedError, match="GRADIENTS"):
        Shift().backward()
    Shift.GRADIENTS = (ShiftGrad,)
    layer = Shift()
    bw = layer.backward()
    grad = bw["x"][0].layer
    assert grad.input_specs() == [TensorSpec("dy", (6, 16), "float32")]
    assert grad.output_specs() == [TensorSpec("dx", (6, 16), "float32")]
    assert grad.default_template() == "shift_grad/rows"
    for lanes in (4, 8):
        check_against_reference(grad, cs.compile(grad, knobs={"lanes": lanes}))
    assert max(gradient_check(bw, {"x": np.random.default_rng(0).uniform(-1, 1, (6, 16))}).values()) < 1e-8

    class BadArgs(ShiftGrad):
        ARGS: ClassVar[tuple] = ("saved:nope",)
    with pytest.raises(ValueError, match="no saved value named 'nope'"):
        BadArgs(layer).input_specs()


# ------------------------------------------------------------------------------------ export, tuning
def test_backward_kernel_exports_and_loads(tmp_path):
    pytest.importorskip("ctypes")
    import shutil
    if shutil.which("gcc") is None:
        pytest.skip("exporting needs a C compiler (gcc)")
    layer = SAMPLES["pool2d_grad"][0]
    k = cs.compile(layer)
    loaded = cs.load(k.export(tmp_path / "pool_grad"))
    assert loaded.layer == layer and loaded.layer.workload_key == layer.workload_key
    am, dy = layer.random_inputs(5)
    np.testing.assert_array_equal(loaded(am, dy), k(am, dy))


def test_backward_layer_tunes_and_compile_picks_the_record(tmp_path):
    layer = SAMPLES["conv2d_weight_grad"][1]
    res = cs.tune(layer, trials=3, strategy="random", log=tmp_path, workers=1, timeout=60, progress=False)
    assert res.best is not None and res.best["verified"]
    k = cs.compile(layer, log=tmp_path)
    assert k.schedule.template == res.best["template"] and dict(k.schedule.knobs) == res.best["knobs"]
    check_against_reference(layer, k)
