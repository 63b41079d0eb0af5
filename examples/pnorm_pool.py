"""A p-norm pooling layer, written from the README's custom-layer recipe (the README shows this same class and
schedule; tests/test_docs.py keeps the two equal). benchmarks/call_overhead.py times it among the layer kinds.

    .venv/bin/python examples/pnorm_pool.py        # compile, check against numpy, time against numpy
"""
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import convsched as cs
from convsched.layers.custom import CustomLayer, TensorSpec


@dataclass(frozen=True)
class PNormPool2d(CustomLayer):
    """y = (sum of |x|^p over each k x k window, stride k)^(1/p), NHWC float32, p a positive integer.
    Stages: "pool" (axes n, oh, ow, c; reduction kh, kw), "out" (axes n, oh, ow, c)."""
    n: int = 1
    h: int = 56
    w: int = None                               # None: follows h
    c: int = 64
    k: int = 2
    p: int = 2
    KIND: ClassVar[str] = "pnorm_pool2d"        # TEMPLATES = "a/dir" would name template files for this kind

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

    def compute(self, te, expr, x):
        k, oh, ow = self.k, self.h // self.k, self.w // self.k
        kh, kw = te.reduce_axis((0, k), "kh"), te.reduce_axis((0, k), "kw")
        pool = te.compute((self.n, oh, ow, self.c), lambda n, oh, ow, c: te.sum(   # |x|^p as products: they
            math.prod([expr.abs(x[n, oh * k + kh, ow * k + kw, c])] * self.p), axis=[kh, kw]), name="pool")
        root = expr.sqrt if self.p == 2 else (lambda s: expr.pow(s, 1.0 / self.p))   # vectorize, pow() not
        return te.compute(pool.shape, lambda n, oh, ow, c: root(pool[n, oh, ow, c]), name="out")

    def reference(self, x):
        k, oh, ow = self.k, self.h // self.k, self.w // self.k
        win = np.abs(x[:, :oh * k, :ow * k].astype(np.float64)).reshape(self.n, oh, k, ow, k, self.c)
        return ((win ** self.p).sum(axis=(2, 4)) ** (1 / self.p)).astype(np.float32)


def rows(s, layer):                             # a schedule written inline (a template file holds the same)
    for stage, reduction in ((s["pool"], ["kh", "kw"]), (s["out"], [])):
        c_o, c_i = stage.split("c", s.target.lanes("float32"))
        stage.reorder("n", "oh", "ow", c_o, *reduction, c_i)
        stage.vectorize(c_i)
        stage.parallel("oh")


if __name__ == "__main__":
    import time
    layer = PNormPool2d(h=56, c=64)
    k = cs.compile(layer, schedule=rows)
    (x,) = layer.random_inputs()
    np.testing.assert_allclose(k(x), layer.reference(x), rtol=1e-4, atol=1e-5)
    t = k.benchmark(arrays=[cs.aligned(x)])
    t0 = time.perf_counter()
    layer.reference(x)
    print(f"{layer}\n  convsched {t}\n  numpy reference {1e3 * (time.perf_counter() - t0):.3f} ms")
