"""Bad input, numerics: NaN and inf go where reference() (numpy, as PyTorch) puts them: through fused ReLUs, max
pooling and every layer with an activation. Winograd's code cannot (inf in, NaN out): its kernels check their
inputs and run an exact algorithm on non-finite ones, so the tuner may pick it and no input sees the difference."""
import warnings

import numpy as np
import pytest

import convsched as cs
from convsched.graph import Graph
from convsched.kernel.kernel import FiniteOnly

L = cs.layers
WITH_ACTIVATION = [
    L.Conv2d(h=8, w=8, cin=8, cout=16, bias=True, act="relu"),
    L.Conv2d(h=8, w=8, cin=8, cout=16, layout="NCHW", act="relu"),
    L.Conv2d(h=8, w=8, cin=8, cout=16, layout="NCHWc", bias=True, act="relu"),
    L.Conv2d(h=8, w=8, cin=16, cout=16, groups=16, bias=True, act="relu"),
    L.Conv2d(h=8, w=8, cin=8, cout=16, residual=True, act="relu"),
    L.Add(h=4, w=4, c=16, act="relu"),
    L.Dense(h=2, w=2, c=8, cout=16, act="relu"),
    L.Pool2d(h=8, w=8, c=16, kind="max", k=3, stride=2, pad=1),
    L.Pool2d(h=8, w=8, c=16, kind="avg", k=3, stride=2, pad=1),
    L.GlobalAvgPool2d(h=4, w=4, c=16),
]


def same_specials(got, want):
    """NaN exactly where the reference has NaN, +-inf exactly where it has +-inf."""
    got, want = np.asarray(got), np.asarray(want)
    return (np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isposinf(got), np.isposinf(want))
            and np.array_equal(np.isneginf(got), np.isneginf(want)))


@pytest.mark.parametrize("layer", WITH_ACTIVATION, ids=str)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_follow_the_reference(layer, value):
    k = cs.compile(layer, template=layer.default_template())
    xs = layer.random_inputs(1)
    xs[0] = np.array(xs[0])
    xs[0].reshape(-1)[[5, xs[0].size // 2]] = value
    with np.errstate(invalid="ignore"):
        want = layer.reference(*xs)
    got = k(*xs)
    assert value == -np.inf or not np.isfinite(want).all()     # it reached the output (-inf: ReLU, max stop it)
    assert same_specials(got, want)
    assert layer.mismatch(got, want) is None


def test_relu_of_nan_is_nan_in_a_fused_graph_epilogue():
    g = Graph("resnet_block")
    x = g.input("x", (1, 8, 8, 8))
    g.add("c1", L.Conv2d(h=8, w=8, cin=8, cout=8, bias=True, act="relu"), x)
    g.add("c2", L.Conv2d(h=8, w=8, cin=8, cout=8, bias=True), "c1")
    g.add("join", L.Add(h=8, w=8, c=8, act="relu"), "c2", x)
    g.output("join")
    plan = g.plan()
    assert any(len(grp.nodes) > 1 for grp in plan.groups), plan       # the join is fused into c2's epilogue
    params, xs = g.random_params(0), g.random_inputs(0)
    xs["x"][0, 3, 3, 2] = np.nan
    got, want = g.compile(plan)(**xs, params=params), g.reference(xs, params)
    assert np.isnan(want).any() and same_specials(got, want)


def test_max_pool_of_nan_and_of_all_minus_inf_windows():
    layer = L.Pool2d(h=4, w=4, c=8, kind="max", k=2, stride=2, pad=1)
    k = cs.compile(layer)
    x = np.full((1, 4, 4, 8), -np.inf, np.float32)         # every window, padding included, is -inf
    x[0, 2, 2, 3] = np.nan
    y = k(x)
    assert np.isneginf(y[0, 0, 0]).all()                    # was the lowest finite float
    assert np.isnan(y[0, 1, 1, 3]) and np.isneginf(y[0, 1, 1, 2])
    assert same_specials(y, layer.reference(x))


def test_bitpack_of_nan_is_the_reference_bit():
    layer = L.BitPack(h=2, w=2, c=64)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 2, 2, 64)).astype(np.float32)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    assert np.array_equal(cs.compile(layer)(x), layer.reference(x))


def test_mismatch_knows_nan_and_inf():
    layer = L.Add(h=1, w=1, c=4)
    want = np.array([[[[np.nan, np.inf, -np.inf, 1.0]]]], np.float32)
    assert layer.mismatch(want.copy(), want) is None
    for i, v in ((0, 0.0), (1, -np.inf), (2, np.nan), (3, np.nan), (3, np.inf)):
        got = want.copy()
        got.reshape(-1)[i] = v
        assert "NaN or inf" in layer.mismatch(got, want)
    exact = L.LayoutTransform(n=1, c=8, h=1, w=1, src="NHWC", dst="NCHW")
    y = np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1)
    y[0, 2] = np.nan
    assert exact.mismatch(y.copy(), y) is None


def test_nonfinite_inputs_plant_inf_and_nan_in_float_arguments_only():
    xs = L.Conv2d(h=4, w=4, cin=8, cout=8).nonfinite_inputs(3)
    x = xs[0]
    assert np.isposinf(x).sum() == 1 and np.isneginf(x).sum() == 1 and np.isnan(x).sum() == 1
    assert np.isfinite(xs[1]).all()
    assert L.BinaryConv2d(h=4, w=4).nonfinite_inputs() is None
    assert L.LossDelta(h=5, w=5, cin=2, cout=2).nonfinite_inputs() is None


def test_winograd_kernels_run_an_exact_algorithm_on_inf_and_nan(tmp_path):
    layer = L.Conv2d(h=8, w=8, cin=8, cout=8)
    assert "winograd2x2" in layer.FINITE_ONLY_ALGORITHMS
    k = cs.compile(layer, template="conv2d/nhwc_winograd")
    guard = k._built
    assert isinstance(guard, FiniteOnly)
    xs, odd = layer.random_inputs(0), layer.nonfinite_inputs(0)
    assert layer.mismatch(k(*xs), layer.reference(*xs)) is None          # finite inputs: Winograd's own code
    assert guard._fallback_built is None
    with np.errstate(invalid="ignore"):
        want = layer.reference(*odd)
        # Winograd's code itself: inf in, NaN over the tile (the limitation the guard is for)
        raw = cs.aligned_empty(want.shape, "float32")
        guard.built(*[cs.aligned(a) for a in odd], raw)
        assert "NaN or inf" in layer.mismatch(raw, want)
        assert layer.mismatch(k(*odd), want) is None                     # the kernel: the exact fallback
    assert guard._fallback_built is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.tune(layer, trials=1, templates=["conv2d/nhwc_winograd"], log=tmp_path / "w.jsonl", workers=1,
                      timeout=60, progress=False, confirm=0)
    (rec,) = res.records
    assert rec["status"] == "ok" and res.best["template"] == "conv2d/nhwc_winograd"


def test_records_of_a_finite_only_algorithm_are_used(tmp_path):
    layer, host = L.Conv2d(h=8, w=8, cin=8, cout=8), cs.target.host()
    log = tmp_path / "t.jsonl"
    for name, ms in (("conv2d/nhwc_direct", 2.0), ("conv2d/nhwc_winograd", 0.5)):
        knobs = cs.schedule.get_template(name).defaults(layer, host)
        cs.records.append(log, cs.records.make_record(
            layer, host, name, knobs, "ok", timing={"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 3},
            rate=1 / ms, unit="GFLOP/s"))
    assert cs.records.best_record(layer, host, log)[0] == "conv2d/nhwc_winograd"
    k = cs.compile(layer, log=log)
    odd = layer.nonfinite_inputs(1)
    with np.errstate(invalid="ignore"):
        assert k.schedule.template == "conv2d/nhwc_winograd" and layer.mismatch(k(*odd), layer.reference(*odd)) is None
