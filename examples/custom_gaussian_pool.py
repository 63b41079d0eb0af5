"""Seed 002: "how do I add a custom pooling layer without slowing everything down too much?"

    .venv/bin/python examples/custom_gaussian_pool.py [--quick]

The layers are ~100 lines of TE + numpy in examples/gaussian_pool_layers.py (GaussianPool2d: normalized
Gaussian kernels, several per feature map, stride; StochasticPool2d: train-mode sampling and test-mode
weighting); their schedules are files in examples/schedules/. This script checks each against its numpy
reference, tunes the Gaussian pool over its knob space (exhaustive: the space is small), and times it
against the direct algorithm, plain average pooling (what "not too much slower" is measured against),
numpy, and PyTorch (a depthwise conv with the same m Gaussian kernels per channel, the usual way to write
it there). All in one process, same threads; minimum over many calls.
"""
import argparse
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d  # noqa: E402

import convsched as cs  # noqa: E402
from convsched.backend import num_threads  # noqa: E402

warnings.filterwarnings("ignore", message="no tuning record")


def best_ms(fn, calls=30):
    from common import best_time_ms
    return best_time_ms(fn, min_calls=calls, min_seconds=0.3)


def check(layer, k, x):
    got, want = k(*x), layer.reference(*x)
    rtol, atol = layer.tolerance()
    if layer.exact or (isinstance(layer, StochasticPool2d) and layer.mode == "train"):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def tune(layer, template):
    """Exhaustive search of a template's knob space: [(ms, knobs)], best first (each point checked first)."""
    host = cs.target.host()
    tmpl = cs.schedule.get_template(template)
    space = tmpl.knob_space(layer, host)
    x = layer.random_inputs(0)
    out = []
    for vals in itertools.product(*space.values()):
        knobs = dict(zip(space, vals))
        if tmpl.constraint(layer, host, knobs) is not True:
            continue
        k = cs.compile(layer, template=template, knobs=knobs)
        check(layer, k, x)
        args = layer.prepare_inputs(x)
        out.append((best_ms(lambda: k(*args), calls=10), knobs))
    return sorted(out, key=lambda t: t[0])


def torch_gaussian(layer, x, threads):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    g = layer.taps()
    w2 = np.einsum("ja,jb->jab", g, g)                               # (m, k, k)
    # torch's depthwise multiplier layout: output channel ch*m + j
    w = torch.from_numpy(np.tile(w2[None], (layer.c, 1, 1, 1)).reshape(layer.c * layer.m, 1, layer.k, layer.k))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            return F.conv2d(xt, w, stride=layer.stride, padding=layer.pad, groups=layer.c)
    y = run().permute(0, 2, 3, 1).numpy().reshape(layer.n, layer.oh, layer.ow, layer.c, layer.m)
    np.testing.assert_allclose(y.transpose(0, 1, 2, 4, 3).reshape(layer.n, layer.oh, layer.ow, -1),
                               layer.reference(x), rtol=1e-4, atol=1e-5)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    s = 28 if a.quick else 56
    threads = num_threads()
    print(f"host {cs.target.host().key}, {threads} threads")
    gp = GaussianPool2d(h=s, w=s, c=64, k=5, stride=2, pad=2, variances=(1.0, 4.0))
    print(f"\n== {gp}\n   {gp.ops() * 2 / 1e6:.1f} MFLOP by the direct definition")
    x = gp.random_inputs(0)
    rows = {}
    for template in ("gaussian_pool2d/direct", "gaussian_pool2d/separable"):
        k = cs.compile(gp, template=template)
        check(gp, k, x)
        args = gp.prepare_inputs(x)
        rows[f"{template} (default knobs)"] = best_ms(lambda: k(*args))
    ranked = tune(gp, "gaussian_pool2d/separable")
    print(f"   tuned separable over {len(ranked)} knob points; best {ranked[0][1]} ({ranked[0][0]:.3f} ms), "
          f"worst {ranked[-1][0]:.3f} ms")
    rows["gaussian_pool2d/separable (tuned)"] = ranked[0][0]
    avg = cs.layers.Pool2d(h=s, w=s, c=64, kind="avg", k=5, stride=2, pad=2)
    ka = cs.compile(avg)
    xa = avg.random_inputs(0)
    rows["plain avg pool 5x5/2 (1 kernel per map; convsched)"] = best_ms(lambda: ka(*xa))
    rows["numpy reference (float64)"] = best_ms(lambda: gp.reference(*x), calls=3)
    try:
        run = torch_gaussian(gp, x[0], threads)
        rows["PyTorch depthwise conv, m kernels per channel"] = best_ms(run)
    except ImportError:
        print("   (PyTorch not installed: pip install torch==2.13.0)")
    base = rows["gaussian_pool2d/separable (tuned)"]
    for name, ms in rows.items():
        print(f"   {name:55s} {ms:8.3f} ms   {ms / base:6.2f}x the tuned separable time")

    for mode in ("train", "test"):
        sp = StochasticPool2d(h=s, w=s, c=64, k=2, mode=mode)
        xs = sp.random_inputs(0)
        k = cs.compile(sp)
        check(sp, k, xs)
        t = best_ms(lambda: k(*xs))
        mp = cs.layers.Pool2d(h=s, w=s, c=64, kind="max", k=2, stride=2)
        km, xm = cs.compile(mp), mp.random_inputs(0)
        tm = best_ms(lambda: km(*xm))
        tn = best_ms(lambda: sp.reference(*xs), calls=3)
        print(f"\n== {sp}\n   convsched {t:.3f} ms; max pool 2x2 (same shape) {tm:.3f} ms ({t / tm:.2f}x); "
              f"numpy reference {tn:.3f} ms ({tn / t:.1f}x slower)")


if __name__ == "__main__":
    main()
