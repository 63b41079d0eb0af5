"""Graphs: validation errors, fusion plans (printable, overridable), fused vs unfused equality, buffer reuse."""
import json
import shutil

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference

L = cs.layers
G = cs.graph


def resnet_block(h=8, c=16):
    g = G.Graph("resnet_block")
    x = g.input("x", (1, h, h, c))
    g.add("c1", L.Conv2d(h=h, w=h, cin=c, cout=c, bias=True, act="relu"), x)
    g.add("c2", L.Conv2d(h=h, w=h, cin=c, cout=c, bias=True), "c1")
    g.add("join", L.Add(h=h, w=h, c=c, act="relu"), "c2", x)
    g.output("join")
    return g


def conv_pool_net(h=8, c=8):
    g = G.Graph("conv_pool")
    x = g.input("x", (1, h, h, c))
    g.add("c1", L.Conv2d(h=h, w=h, cin=c, cout=16, bias=True, act="relu"), x)
    g.add("p1", L.Pool2d(h=h, w=h, c=16, kind="max", k=2, stride=2), "c1")
    g.add("c2", L.Conv2d(h=h // 2, w=h // 2, cin=16, cout=16, bias=True, act="relu"), "p1")
    g.add("p2", L.Pool2d(h=h // 2, w=h // 2, c=16, kind="max", k=3, stride=1, pad=1), "c2")  # overlapping
    g.add("gap", L.GlobalAvgPool2d(h=h // 2, w=h // 2, c=16), "p2")
    g.add("fc", L.Dense(c=16, cout=10), "gap")
    g.output("fc")
    return g


def _run_all(g, plan, seed=0):
    params, xs = g.random_params(seed), g.random_inputs(seed)
    return g.compile(plan)(**xs, params=params), g.reference(xs, params)


# ----------------------------------------------------------------------------------------- validation
def test_shape_mismatch_names_the_edge():
    g = G.Graph()
    x = g.input("x", (1, 8, 8, 16))
    g.add("c1", L.Conv2d(h=8, w=8, cin=16, cout=32), x)
    with pytest.raises(G.GraphError, match=r"edge c1 -> p: argument 'x' of Pool2d 'p' expects \(1, 8, 8, 16\) "
                                           r"float32, but 'c1' gives \(1, 8, 8, 32\)"):
        g.add("p", L.Pool2d(h=8, w=8, c=16), "c1")


def test_dtype_mismatch():
    g = G.Graph()
    x = g.input("x", (1, 8, 8, 16), dtype="int32")
    with pytest.raises(G.GraphError, match="dtype int32 != float32"):
        g.add("c1", L.Conv2d(h=8, w=8, cin=16, cout=16), x)


@pytest.mark.parametrize("build,match", [
    (lambda g: g.add("c", L.Conv2d(h=8, w=8, cin=16, cout=16), "nope"), "input 'nope' is not a node"),
    (lambda g: g.add("x", L.Conv2d(h=8, w=8, cin=16, cout=16), "x"), "'x' is already a node"),
    (lambda g: g.add("c", L.Conv2d(h=8, w=8, cin=16, cout=16), "x", "x", "x"), "takes 2 arguments"),
    (lambda g: g.add("c", L.Conv2d(h=8, w=8, cin=16, cout=16), z="x"), "has no argument 'z'"),
    (lambda g: g.add("c", L.Conv2d(h=8, w=8, cin=16, cout=16)), "no inputs"),
    (lambda g: g.add("c.1", L.Conv2d(h=8, w=8, cin=16, cout=16), "x"), "may not contain"),
    (lambda g: g.add("c", np.zeros(3), "x"), "expected a convsched layer"),
    (lambda g: g.output("zz"), "output 'zz' is not a node"),
])
def test_building_errors(build, match):
    g = G.Graph()
    g.input("x", (1, 8, 8, 16))
    with pytest.raises(G.GraphError, match=match):
        build(g)


def test_graph_level_errors():
    g = G.Graph("g")
    x = g.input("x", (1, 8, 8, 16))
    g.add("a", L.Add(h=8, w=8, c=16), x, x)
    with pytest.raises(G.GraphError, match="no outputs"):
        g.plan()
    g.add("dead", L.Add(h=8, w=8, c=16), x, x)
    g.output("a")
    with pytest.raises(G.GraphError, match="dead feed no output"):
        g.plan()


def test_run_time_errors():
    g = resnet_block()
    net = g.compile(g.plan(fusion=False))
    xs, params = g.random_inputs(), g.random_params()
    with pytest.raises(G.GraphError, match="no parameters"):
        net(**xs)
    bad = dict(params)
    del bad["c1.w"]
    with pytest.raises(G.GraphError, match="missing c1.w"):
        net.set_params(bad)
    with pytest.raises(ValueError, match="shape is"):
        net.set_params({**params, "c1.b": np.zeros(3, np.float32)})
    net.set_params(params)
    with pytest.raises(G.GraphError, match="missing x"):
        net()
    with pytest.raises(ValueError, match="dtype is float64"):
        net(xs["x"].astype(np.float64))


def test_bad_fusion_overrides():
    g = resnet_block()
    with pytest.raises(G.GraphError, match="output of 'c1' is also read by c2, outside the group"):
        g.plan(fuse=[("c1", "join")])   # c1 -> join is not an edge; c1's output leaves the group (to c2)
    with pytest.raises(G.GraphError, match="does not apply"):
        g.plan(fuse=[{"nodes": ("c1", "c2"), "template": "fused/epilogue"}])   # c2 is not elementwise
    with pytest.raises(G.GraphError, match="not a layer node"):
        g.plan(unfuse=["zz"])
    with pytest.raises(G.GraphError, match="only the last member's output"):
        G.FusedLayer((G.Member("a", L.Add(h=2, w=2, c=8)), G.Member("b", L.Add(h=2, w=2, c=8))))


# ----------------------------------------------------------------------------------------- planning
def test_plan_is_visible_and_overridable():
    g = resnet_block()
    plan = g.plan()
    text = str(plan)
    assert [grp.nodes for grp in plan.groups] == [("c1",), ("c2", "join")]
    assert "fused/epilogue" in text and "c1 -> c2: not fused" in text
    assert [grp.nodes for grp in g.plan(unfuse=["join"]).groups] == [("c1",), ("c2",), ("join",)]
    assert [grp.nodes for grp in g.plan(fusion=False).groups] == [("c1",), ("c2",), ("join",)]
    forced = g.plan(fuse=[{"nodes": ("c1", "c2"), "template": "fused/sequential"}])
    assert [(grp.nodes, grp.template) for grp in forced.groups] == [(("c1", "c2"), "fused/sequential"),
                                                                      (("join",), None)]
    seq = g.plan(templates={"c2+join": "fused/sequential"})
    assert seq.groups[1].template == "fused/sequential"


def test_planner_fuses_conv_pool_only_where_windows_do_not_overlap():
    plan = conv_pool_net().plan()
    assert [(grp.nodes, grp.template) for grp in plan.groups][:2] == [(("c1", "p1"), "fused/conv_pool"),
                                                                      (("c2",), None)]
    assert "overlapping or padded windows" in str(plan)


# ------------------------------------------------------------------------------------ fused == unfused
@pytest.mark.parametrize("make", [resnet_block, conv_pool_net], ids=["resnet_block", "conv_pool_net"])
def test_fused_equals_unfused_equals_reference(make):
    g = make()
    fused, want = _run_all(g, g.plan())
    unfused, _ = _run_all(g, g.plan(fusion=False))
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(unfused, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-5)


def test_mobilenet_block_sequential_fusion():
    g = G.Graph("mobilenet_block")
    x = g.input("x", (1, 8, 8, 16))
    g.add("dw", L.Conv2d(h=8, w=8, cin=16, cout=16, groups=16, bias=True, act="relu"), x)
    g.add("pw", L.Conv2d(h=8, w=8, cin=16, cout=32, kh=1, kw=1, pad=0, bias=True, act="relu"), "dw")
    g.output("pw")
    one, want = _run_all(g, g.plan(fuse=[{"nodes": ("dw", "pw"), "template": "fused/sequential"}]))
    np.testing.assert_allclose(one, want, rtol=1e-4, atol=1e-4)


def test_intermediate_buffers_are_reused():
    g = G.Graph("chain")
    v = g.input("x", (1, 8, 8, 16))
    for i in range(5):
        v = g.add(f"a{i}", L.Add(h=8, w=8, c=16, act="relu"), v, "x")
    g.output(v)
    net = g.compile(g.plan(fusion=False))
    # a0..a3 are intermediates; each is dead once the next add has run: two slots suffice
    assert len(net.slot_sizes) == 2 and len(net.slot_of) == 4
    assert "2 slots" in net.memory_plan()
    xs = g.random_inputs()
    np.testing.assert_allclose(net(**xs, params={}), g.reference(xs, {}), rtol=1e-6)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="exporting needs a C compiler (gcc)")
def test_export_whole_network_as_one_library(tmp_path):
    g = resnet_block(h=6, c=8)
    net = g.compile()
    out = net.export(tmp_path / "resnet_block")
    assert (out / "libresnet_block.so").is_file()
    wiring = json.loads((out / "graph.json").read_text())
    assert [k["entry"] for k in wiring["kernels"]] == ["c1", "c2__join"]
    assert wiring["kernels"][1]["arguments"][0] == "value:c1"
    # unfused, the residual Add is a kernel of its own (arguments a, b): exported and called through C
    flat = g.compile(g.plan(fusion=False)).export(tmp_path / "flat")
    loaded = cs.load_all(flat)
    assert "join" in loaded
    for k in loaded.values():
        check_against_reference(k.layer, k)


def test_binary_net_rewrites_and_matches_reference():
    g = G.binary_net(h=12, c=64, c2=64, classes=5)
    plan = g.plan()
    assert [grp.nodes for grp in plan.groups] == [("pack",), ("bconv1", "thr1"), ("mpool",), ("bconv2", "seg"),
                                                  ("fc",)]
    assert "BinaryConvPool" in str(plan)
    fused, want = _run_all(g, plan, seed=2)
    unfused, _ = _run_all(g, g.plan(fusion=False), seed=2)
    np.testing.assert_array_equal(fused, want)
    np.testing.assert_array_equal(unfused, want)


@pytest.mark.parametrize("make", [lambda: G.resnet_basic_block(h=6, c=16), lambda: G.mobilenet_block(h=6, cin=8, cout=16, stride=2)],
                         ids=["resnet", "mobilenet"])
def test_example_networks_match_reference(make):
    g = make()
    out, want = _run_all(g, g.plan(), seed=4)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
