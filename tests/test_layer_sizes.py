"""Sizes that follow another size: w follows h, kw follows kh, in every layer that has them, without moving the
workload key of a layer whose sizes are given explicitly (shipped tuning records are filed under those keys)."""
import dataclasses

import pytest

import convsched as cs
from convsched.cli import make_layer
from convsched.layers import registry
from layer_samples import SAMPLES

SIZED = sorted({cls for cls in registry.by_name().values()
                if {"h", "w"} <= {f.name for f in dataclasses.fields(cls)}}, key=lambda c: c.__name__)


def test_every_layer_with_h_and_w_lets_w_follow_h():
    assert len(SIZED) >= 15                       # the catalogue: conv, pooling, glue, binary, loss deltas
    for cls in SIZED:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert fields["w"].default is None and fields["w"].type in ("int", int), cls
        default = cls()
        assert default.w == default.h, cls        # the defaults are square, as they always were
        h = 9 if cls is not cs.layers.LossDelta else 8
        assert cls(h=h).w == h, cls
        if "kw" in fields:
            assert fields["kw"].default is None and cls(kh=1).kw == 1 and cls(kh=1, kw=3).kw == 3, cls


def test_explicit_sizes_keep_their_workload_keys():
    for samples in SAMPLES.values():
        for layer in samples:
            if "w" not in {f.name for f in dataclasses.fields(layer)}:
                continue
            again = type(layer)(**layer.params())              # every field given: the key is unchanged
            assert again.workload_key == layer.workload_key
            assert isinstance(layer.w, int) and '"w":null' not in layer.workload_key
    conv = cs.layers.Conv2d(h=28, w=56)
    assert (conv.h, conv.w) == (28, 56)                        # an explicit w wins
    assert cs.layers.Conv2d(h=56).workload_key == cs.layers.Conv2d(h=56, w=56, kh=3, kw=3).workload_key


def test_the_cli_builds_the_same_layers():
    assert make_layer("conv2d", ["h=28", "cin=32", "kh=1"]) == cs.layers.Conv2d(h=28, w=28, cin=32, kh=1, kw=1)
    assert make_layer("pool2d", ["h=14"]).w == 14


@pytest.mark.parametrize("bad", [dict(h=0), dict(h=-3, w=4)])
def test_checks_see_the_resolved_sizes(bad):
    with pytest.raises(ValueError, match="positive"):
        cs.layers.Conv2d(**bad)
