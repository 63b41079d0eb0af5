"""A custom pooling layer with its gradient, end to end: declare, schedule, check the gradient, time it.

    .venv/bin/python examples/custom_pool_backward.py [--quick]

The layer is L2 pooling, y = sqrt(sum of x^2 over each k x k window) (PyTorch's LPPool2d with norm 2). Its
gradient needs the forward's input and output: dx = x * (sum over the windows containing x of dy / y), a
gather over windows, declared in TE like any layer. Both have their schedules as files in examples/schedules/
(l2_pool2d/rows.py, l2_pool2d_grad/rows.py). The script:
  1. declares the pair (below) and prints the backward pass that layer.backward() builds;
  2. checks the compiled kernels against the numpy references, and the references' gradient against finite
     differences of the forward (float64, every input element of a small layer);
  3. times forward + backward against PyTorch autograd (lp_pool2d forward, .backward()) on 112x112x64, k3 s2.
See docs/backward.md for the walk-through.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

import convsched as cs
from convsched.backend import num_threads
from convsched.layers.backward.check import gradient_check
from convsched.layers.base import check_positive
from convsched.layers.custom import CustomGrad, CustomLayer, TensorSpec, out_dtype, window_of

warnings.filterwarnings("ignore", message="no tuning record")


# ------------------------------------------------------------------------------------------- 1. declare
@dataclass(frozen=True)
class L2Pool2d(CustomLayer):
    """y[n, oh, ow, c] = sqrt(sum over the k x k window at (oh*stride, ow*stride) of x^2), NHWC, no padding.

    Arguments: x (n, h, w, c). Output: y (n, oh, ow, c).
    Stages: "sumsq" (spatial n, oh, ow, c; reduction kh, kw), "y" (sqrt; n, oh, ow, c).
    """
    n: int = 1
    h: int = 112
    w: int = None       # None: follows h
    c: int = 64
    k: int = 3
    stride: int = 2

    KIND: ClassVar[str] = "l2_pool2d"
    TEMPLATES: ClassVar[str] = "schedules"
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def __post_init__(self):
        check_positive(self, n=self.n, h=self.h, w=self.w, c=self.c, k=self.k, stride=self.stride)
        super().__post_init__()

    @property
    def oh(self):
        return (self.h - self.k) // self.stride + 1

    @property
    def ow(self):
        return (self.w - self.k) // self.stride + 1

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

    def ops(self):
        return self.n * self.oh * self.ow * self.c * self.k * self.k

    def compute(self, te, expr, x):
        s = self.stride
        kh, kw = te.reduce_axis((0, self.k), "kh"), te.reduce_axis((0, self.k), "kw")
        shape = (self.n, self.oh, self.ow, self.c)
        sumsq = te.compute(shape, lambda n, oh, ow, c: te.sum(
            x[n, oh * s + kh, ow * s + kw, c] * x[n, oh * s + kh, ow * s + kw, c], axis=[kh, kw]), name="sumsq")
        return te.compute(shape, lambda n, oh, ow, c: expr.sqrt(sumsq[n, oh, ow, c]), name="y")

    def reference(self, x):
        s, k = self.stride, self.k
        x64 = x.astype(np.float64)
        acc = sum(x64[:, i: i + s * (self.oh - 1) + 1: s, j: j + s * (self.ow - 1) + 1: s] ** 2
                  for i in range(k) for j in range(k))
        return np.sqrt(acc).astype(out_dtype(x))


@dataclass(frozen=True)
class L2Pool2dGrad(CustomGrad):
    """dx[n, h, w, c] = x[n, h, w, c] * sum over the windows o containing (h, w) of dy[o] / y[o]  (0 where y = 0).

    A gather: every input sums its ceil(k/stride)^2 candidate windows (window_of), no scatter, no atomics.
    Arguments: x (the forward's input), y (its saved output), dy. Output: dx (n, h, w, c).
    Stages: "ratio" (dy / y; n, oh, ow, c), "gather" (spatial n, h, w, c; reduction rh, rw), "dx" (x * gather).
    """
    KIND: ClassVar[str] = "l2_pool2d_grad"
    TEMPLATES: ClassVar[str] = "schedules"
    ARGS: ClassVar[tuple] = ("input:x", "saved:y", "grad:y")
    WRT: ClassVar[tuple] = ("x",)
    op_unit: ClassVar[str] = "OP"
    flops_per_op: ClassVar[int] = 1

    def ops(self):
        f = self.forward
        return f.n * f.h * f.w * f.c

    def tolerance(self):
        return (1e-5, 1e-6)

    def random_inputs(self, seed=0):
        x = self.forward.random_inputs(seed)[0]
        dy = np.random.default_rng(seed + 1).uniform(-1, 1, self.forward.output_specs()[0].shape)
        return [x, self.forward.reference(x), dy.astype(np.float32)]

    def compute(self, te, expr, x, y, dy):
        f = self.forward
        zero = expr.const(0.0, "float32")
        ratio = te.compute(y.shape, lambda *i: expr.Select(y(*i) > 0, dy(*i) / y(*i), zero), name="ratio")
        R = -(-f.k // f.stride)
        rh, rw = te.reduce_axis((0, R), "rh"), te.reduce_axis((0, R), "rw")

        def gather(n, h, w, c):
            oh, _, okh = window_of(expr, h, rh, f.oh, f.k, f.stride, 0)
            ow, _, okw = window_of(expr, w, rw, f.ow, f.k, f.stride, 0)
            return te.sum(expr.Select(expr.all(okh, okw), ratio[n, oh, ow, c], zero), axis=[rh, rw])

        g = te.compute(x.shape, gather, name="gather")
        return te.compute(x.shape, lambda n, h, w, c: x[n, h, w, c] * g[n, h, w, c], name="dx")

    def reference(self, x, y, dy):
        f = self.forward
        s, k = f.stride, f.k
        r = np.where(y > 0, dy.astype(np.float64) / np.where(y > 0, y, 1), 0)
        acc = np.zeros(x.shape)
        for i in range(k):                       # the definition, scattered window tap by window tap
            for j in range(k):
                acc[:, i: i + s * (f.oh - 1) + 1: s, j: j + s * (f.ow - 1) + 1: s] += r
        return (x * acc).astype(out_dtype(x, dy))


L2Pool2d.GRADIENTS = (L2Pool2dGrad,)


# ------------------------------------------------------------------------------------------- 3. time it
def torch_step(layer, x, dy, threads):
    """PyTorch's forward + autograd backward of the same layer: lp_pool2d(x, 2, k, stride)."""
    import torch
    torch.set_num_threads(threads)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).requires_grad_()
    dyt = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def step():
        xt.grad = None
        y = torch.nn.functional.lp_pool2d(xt, 2, layer.k, layer.stride)
        y.backward(dyt)
        return y, xt.grad
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from common import best_time_ms

    # 1. the backward pass of the layer
    layer = L2Pool2d(h=56, w=56, c=64) if a.quick else L2Pool2d()
    bw = layer.backward()
    print(f"{bw}\n")

    # 2. check: kernels against the references, then the references' gradient against finite differences
    small = L2Pool2d(h=7, w=6, c=3, k=3, stride=2)
    x_small = small.random_inputs(0)[0]
    err = gradient_check(small.backward(), {"x": x_small})
    print(f"finite differences (float64, all {x_small.size} inputs of {small}): max relative error {err['x']:.1e}")
    assert err["x"] < 1e-7
    train = cs.compile_backward(layer)
    x = cs.aligned(layer.random_inputs(0)[0])
    y = train.forward(x)
    dy = cs.aligned(np.random.default_rng(1).uniform(-1, 1, y.shape).astype(np.float32))
    dx = train.backward(dy)["x"]
    np.testing.assert_allclose(y, layer.reference(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, bw["x"][0].layer.reference(x, layer.reference(x), dy), rtol=1e-5, atol=1e-5)
    print("compiled forward and gradient match the numpy references")
    for name, k in train.kernels.items():
        print(f"  {name}: {k.schedule.template} {dict(k.schedule.knobs)}")

    # 3. time forward + backward against PyTorch autograd, same threads, interleaved rounds
    threads = num_threads()
    ours = lambda: (train.forward(x), train.backward(dy))          # noqa: E731
    try:
        peer = torch_step(layer, np.asarray(x), np.asarray(dy), threads)
        yt, gt = peer()
        np.testing.assert_allclose(gt.permute(0, 2, 3, 1).numpy(), dx, rtol=1e-4, atol=1e-5)
    except ImportError:
        peer = None
        print("(PyTorch not installed: pip install torch==2.13.0 to time the peer)")
    best = {"convsched": float("inf"), "pytorch": float("inf")}
    for _ in range(1 if a.quick else 5):
        best["convsched"] = min(best["convsched"], best_time_ms(ours, min_seconds=0.1))
        if peer:
            best["pytorch"] = min(best["pytorch"], best_time_ms(peer, min_seconds=0.1))
    print(f"\nforward + backward of {layer}, {threads} thread(s), best of interleaved rounds:")
    print(f"  convsched {best['convsched']:.3f} ms")
    if peer:
        print(f"  PyTorch   {best['pytorch']:.3f} ms (lp_pool2d + autograd)  -> {best['pytorch'] / best['convsched']:.2f}x")


if __name__ == "__main__":
    main()
