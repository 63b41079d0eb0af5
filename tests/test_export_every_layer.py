"""Every layer kind of the catalogue, and custom layers, exported into one C library and called through it
(cs.load_all: the C entry points through ctypes), compared with reference(). Argument names never meet the
generated C's own names; a custom layer comes back with cs.load(dir, layers=[ItsClass])."""
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import convsched as cs
from conftest import check_against_reference
from convsched.errors import ExportError
from convsched.layers import registry
from convsched.layers.custom import CustomLayer, TensorSpec
from layer_samples import SAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="exporting needs a C compiler (gcc)")

# Layer kinds whose kernel is several compiled functions plus numpy glue: no single C entry point to export.
MULTI_PART = {"loss_delta"}


@dataclass(frozen=True)
class NameClash(CustomLayer):
    """ret = a * t + NULL: arguments named like the generated C's locals (a, t, ret), a C macro and a reserved
    prefix. Stages: "ret" (i, j)."""
    n: int = 3
    c: int = 16
    KIND: ClassVar[str] = "name_clash"
    OUTPUT_NAMES: ClassVar[tuple] = ("ret",)

    def input_specs(self):
        return [TensorSpec(nm, (self.n, self.c), "float32") for nm in ("a", "t", "NULL", "cs_t")]

    def compute(self, te, expr, a, t, null, cs_t):
        return te.compute(a.shape, lambda i, j: a[i, j] * t[i, j] + null[i, j] - cs_t[i, j], name="ret")

    def reference(self, a, t, null, cs_t):
        return a * t + null - cs_t


def _vectorized(s, layer):
    s["ret"].vectorize("j")


@pytest.fixture(scope="module")
def kernels():
    ks = {}
    for kind, samples in SAMPLES.items():
        if kind not in MULTI_PART:
            ks[kind] = cs.compile(samples[0])
    lanes = cs.target.host().lanes("float32")
    ks["gaussian_pool2d"] = cs.compile(GaussianPool2d(h=9, c=lanes, k=3, stride=2, pad=1))
    ks["stochastic_pool2d"] = cs.compile(StochasticPool2d(h=6, w=8, c=lanes))
    ks["name_clash"] = cs.compile(NameClash(), schedule=_vectorized)
    return ks


@pytest.fixture(scope="module")
def exported(kernels, tmp_path_factory):
    return cs.export.export(kernels, tmp_path_factory.mktemp("every") / "every")


def test_every_layer_kind_is_exported(kernels):
    kinds = {cls.KIND for cls in registry.layer_classes() if cls.__module__.startswith("convsched.")}
    kinds -= {"layer", "custom"} | MULTI_PART
    assert kinds <= set(kernels), f"kinds without an export test: {kinds - set(kernels)}"


def test_every_exported_kernel_matches_its_reference(kernels, exported):
    loaded = cs.load_all(exported, layers=[NameClash])
    assert set(loaded) == set(kernels)
    for name, k in loaded.items():
        assert k.source.startswith("loaded from") and k.layer == kernels[name].layer
        check_against_reference(k.layer, k, seed=7)


def test_generated_c_keeps_argument_names_for_the_reader(exported):
    h = (exported / "every.h").read_text()
    assert "int every_add(const float* a, const float* b, float* y);" in h
    assert "int every_name_clash(const float* a, const float* t, const float* NULL_, const float* cs_t_, " \
           "float* ret);" in h
    assert "#define EVERY_NAME_CLASH_NULL__SHAPE {3, 16}" in h and "#define EVERY_ADD_B_SIZE 480" in h
    entries = sorted(p.name for p in exported.iterdir())
    assert entries == ["every.h", "libevery.so", "manifest.json"]


def test_a_custom_layer_class_is_given_never_imported(exported, monkeypatch):
    # this process defined NameClash (so the registry has it); a process that did not must pass the class
    monkeypatch.setattr(registry, "_classes", [c for c in registry._classes if c is not NameClash])
    with pytest.raises(ExportError, match=r"layers=\[NameClash\]"):
        cs.load(exported, name="name_clash")
    k = cs.load(exported, name="name_clash", layers=[NameClash])
    xs = k.layer.random_inputs(3)
    np.testing.assert_allclose(k(*xs), k.layer.reference(*xs), rtol=1e-5, atol=1e-6)   # FMA rounding
