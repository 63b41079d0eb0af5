"""Kernel calls: what a call does once (argument specs, a custom layer's declaration, constants) and what it
does every time (checks, aligned outputs), and the call time k.benchmark() reports next to the kernel time."""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import convsched as cs
from convsched.kernel import arrays
from convsched.layers.custom import CustomLayer, TensorSpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from gaussian_pool_layers import GaussianPool2d  # noqa: E402

DECLARED = []


@dataclass(frozen=True)
class CountedScale(CustomLayer):
    """y = 2 x, counting its declarations. Stages: "scale" (n, c)."""
    n: int = 4
    c: int = 16
    KIND: ClassVar[str] = "counted_scale"

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.c), "float32")]

    def compute(self, te, expr, x):
        DECLARED.append(self)
        return te.compute(x.shape, lambda n, c: x[n, c] * 2.0, name="scale")

    def reference(self, x):
        return 2 * x


def _inline(s, layer):
    s["scale"].vectorize("c")


def test_a_custom_layer_declares_once_per_layer_not_per_call():
    layer = CountedScale()
    k = cs.compile(layer, schedule=_inline)
    before = len(DECLARED)
    x = cs.aligned(np.arange(64, dtype=np.float32).reshape(4, 16))
    for _ in range(20):
        np.testing.assert_array_equal(k(x), 2 * x)
    assert layer.ops() == 64 and layer.output_specs() == [TensorSpec("y", (4, 16), "float32")]
    assert len(DECLARED) == before                       # neither calls nor specs nor ops declared again
    # the memo is not part of the layer's identity, and does not travel to tuning workers
    assert layer == CountedScale() and hash(layer) == hash(CountedScale())
    import pickle
    assert "_memo" not in pickle.loads(pickle.dumps(layer)).__dict__


def test_constant_tensors_are_made_once_and_passed_without_a_copy():
    layer = GaussianPool2d(h=8, w=8, c=16, k=3, stride=2, pad=1)
    taps = layer.taps()
    assert layer.taps() is taps and arrays.is_aligned(taps)
    assert layer.prepare_inputs([np.zeros(1)])[1] is taps
    assert arrays.as_kernel_arg(taps, layer.input_specs()[1], "input") is taps


def test_checks_stay_on_the_fast_path():
    k = cs.compile(cs.layers.Add(h=2, w=3, c=8))
    a, b = (cs.aligned(np.ones((1, 2, 3, 8), np.float32)) for _ in range(2))
    np.testing.assert_array_equal(k(a, b), 2.0)
    with pytest.raises(ValueError, match="dtype is float64"):
        k(a.astype(np.float64), b)
    with pytest.raises(ValueError, match=r"shape is \(1, 3, 2, 8\)"):
        k(a.reshape(1, 3, 2, 8), b)
    with pytest.raises(ValueError, match="takes 2 arrays"):
        k(a)
    odd = np.empty(a.size + 1, np.float32)[1:].reshape(a.shape)     # 4 bytes off any 64-byte boundary
    odd[...] = 1
    assert not arrays.is_aligned(odd)
    np.testing.assert_array_equal(k(odd, b[:, :, ::-1]), 2.0)        # misaligned and strided: copied, right


@pytest.mark.parametrize("shape,dtype", [((3, 5, 7), "float32"), ((1,), "int8"), ((0, 4), "uint64"),
                                         ((2, 33), np.dtype("int64"))])
def test_aligned_outputs_and_addresses(shape, dtype):
    for _ in range(8):
        a = arrays.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % 64 == 0
    base = np.arange(100, dtype=np.float64)
    for v in (base, base[1:], base.reshape(10, 10)[2:, 3:], base[::3]):
        assert arrays.address(v) == v.ctypes.data


def test_benchmark_reports_the_kernel_and_the_python_call():
    layer = cs.layers.Add(h=4, w=4, c=16)
    k = cs.compile(layer)
    t = k.benchmark(repeat=3, min_repeat_ms=2, arrays=[cs.aligned(a) for a in layer.random_inputs()])
    assert t.median_ms > 0 and t.call_median_ms > 0 and t.call_p10_ms <= t.call_median_ms <= t.call_p90_ms
    assert t.overhead_us == pytest.approx(1e3 * (t.call_median_ms - t.median_ms))
    assert "Python call" in str(t)
    assert k.benchmark(repeat=3, min_repeat_ms=2, call_time=False).call_median_ms is None
    # a bound kernel's call time is of its own calls (with the bound arrays passed straight through)
    x, y = layer.random_inputs()
    bt = k.bind(b=y).benchmark(repeat=3, min_repeat_ms=2)
    assert bt.call_median_ms > 0
