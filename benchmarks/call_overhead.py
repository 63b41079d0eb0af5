"""Python call overhead per layer kind: what `k(x, ...)` costs on top of the compiled code, for every built-in
layer kind and for custom layers (the shipped Gaussian and stochastic pooling, the README's p-norm pooling).

    taskset -c 1 env TVM_NUM_THREADS=1 .venv/bin/python benchmarks/call_overhead.py [--rounds 7] [--json PATH]

Each layer is small, so that the overhead shows next to its kernel. Per layer: the kernel time (the compiled
function in TVM's time_evaluator, no Python) and the time of whole Python calls `k(*arrays)` (argument checks,
output allocation, the call, the result) on the same 64-byte aligned inputs, both from k.benchmark(); and the
call on inputs as numpy makes them (misaligned ones are copied per call). Every layer is measured once per
round, in interleaved rounds; the table shows medians over rounds and the p10-p90 of the overhead. The goal:
<= 10 us of overhead for every layer kind. A multi-part kernel (loss deltas) is timed as whole calls only: its
numpy glue is part of the algorithm.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))
from common import StdoutCopy, add_json_option, save_run, table  # noqa: E402
from gaussian_pool_layers import GaussianPool2d, StochasticPool2d  # noqa: E402
from pnorm_pool import PNormPool2d, rows  # noqa: E402

import convsched as cs  # noqa: E402
from convsched.backend import num_threads  # noqa: E402
from convsched.kernel.timing import time_calls  # noqa: E402
from convsched.layers import registry  # noqa: E402

GOAL_US = 10.0
L = cs.layers


def _fused():
    g = cs.graph.Graph("conv_pool")
    x = g.input("x", (1, 8, 8, 16))
    g.add("c", L.Conv2d(h=8, cin=16, cout=16, bias=True, act="relu"), x)
    g.add("p", L.Pool2d(h=8, c=16, kind="max", k=2, stride=2), "c")
    g.output("p")
    return g.fused_layer(["c", "p"])


# small forward layers with a backward() (timed themselves, and their gradient layers)
POOL, GAP, RELU, PRELU = (L.Pool2d(h=16, c=16, kind="max", k=2, stride=2), L.GlobalAvgPool2d(h=7, c=64),
                          L.ReLU(h=8, c=16), L.PReLU(h=8, c=16))


def _gradient_layers():
    """The layers of small forward layers' backward passes (as layer.backward() lists them): each its own kind."""
    out = []
    for f in (POOL, GAP, RELU, PRELU, L.Conv2d(h=8, cin=16, cout=32, bias=True)):
        bw = f.backward()
        out += [] if bw.forward == f else [bw.forward]
        out += [st.layer for st in bw.steps if st.layer is not None]
    return out


def layers():
    """[(row name, layer, compile keyword arguments)]: one small layer per kind, then the custom ones."""
    built_in = [
        L.Conv2d(h=8, cin=16, cout=32), L.LayoutTransform(c=16, h=8, src="NHWC", dst="NCHWc"),
        POOL, GAP, L.Add(h=8, c=16),
        L.Dense(c=64, cout=10), L.BitPack(h=4, c=64), L.BinaryConv2d(h=8, cin=64, cout=32, pad=1),
        L.PopcountThreshold(h=4, c=64), L.SegmentedBitPool(h=8, c=64, segments=2), L.BitMaxPool2d(h=8, c=64),
        L.BitGlobalPool(h=4, c=64), L.BinaryConvPool(h=8, cin=64, cout=64, segments=2),
        L.BitDense(h=2, c=64, classes=10), _fused(), L.LossDelta(h=6, cin=16, cout=4, classes=3),
        RELU, PRELU, *_gradient_layers()]
    out = [(layer.KIND, layer, {}) for layer in built_in]
    out += [("custom: gaussian_pool2d", GaussianPool2d(h=8, c=16, k=3, stride=2, pad=1), {}),
            ("custom: stochastic_pool2d train", StochasticPool2d(h=8, c=16, mode="train"), {}),
            ("custom: stochastic_pool2d test", StochasticPool2d(h=8, c=16, mode="test"), {}),
            ("custom: pnorm_pool2d (README)", PNormPool2d(h=8, c=16), {"schedule": rows})]
    kinds = {cls.KIND for cls in registry.layer_classes() if cls.__module__.startswith("convsched.")}
    missing = kinds - {"layer", "custom"} - {layer.KIND for _, layer, _ in out}
    if missing:
        print(f"warning: layer kinds without a row: {', '.join(sorted(missing))}")
    return out


def _percentile(v, q):
    return float(np.percentile(v, q)) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (every layer once per round)")
    ap.add_argument("--repeat", type=int, default=5, help="measurements per layer and round")
    ap.add_argument("--min-repeat-ms", type=float, default=5, help="each measurement lasts at least this long")
    add_json_option(ap)
    args = ap.parse_args()
    printed = StdoutCopy()
    warnings.filterwarnings("ignore", message="no tuning record")
    print(f"host {cs.target.host().key}, {num_threads()} thread(s); {args.rounds} interleaved rounds")
    cases = []
    for name, layer, kw in layers():
        k = cs.compile(layer, **kw)
        plain = layer.random_inputs(0)
        why = layer.mismatch(k(*plain), layer.reference(*plain))
        if why:
            raise SystemExit(f"{name}: {layer} disagrees with its reference: {why}")
        aligned_inputs = [cs.aligned(a) if isinstance(a, np.ndarray) else a for a in plain]
        cases.append({"name": name, "layer": str(layer), "kernel": k, "aligned": aligned_inputs, "plain": plain,
                      "multi_part": not isinstance(k, cs.Kernel), "kernel_us": [], "call_us": [], "plain_us": []})
    for _ in range(args.rounds):
        for c in cases:
            t = c["kernel"].benchmark(repeat=args.repeat, min_repeat_ms=args.min_repeat_ms, arrays=c["aligned"])
            c["kernel_us"].append(1e3 * t.median_ms)
            c["call_us"].append(1e3 * t.call_median_ms)
            c["plain_us"].append(1e3 * float(np.median(time_calls(c["kernel"], c["plain"], args.repeat,
                                                                   args.min_repeat_ms))))
    rows_, results = [], []
    for c in cases:
        kernel, call, plain = (float(np.median(c[k])) for k in ("kernel_us", "call_us", "plain_us"))
        over = [b - a for a, b in zip(c["kernel_us"], c["call_us"])]
        r = {"name": c["name"], "layer": c["layer"], "kernel_us": kernel, "call_us": call, "plain_call_us": plain,
             "overhead_us": None if c["multi_part"] else float(np.median(over)),
             "overhead_p10_us": None if c["multi_part"] else _percentile(over, 10),
             "overhead_p90_us": None if c["multi_part"] else _percentile(over, 90)}
        results.append(r)
        spread = "-" if c["multi_part"] else f"{r['overhead_p10_us']:.1f}..{r['overhead_p90_us']:.1f}"
        rows_.append([c["name"], "-" if c["multi_part"] else f"{kernel:.1f}", f"{call:.1f}",
                      "(glue)" if c["multi_part"] else f"{r['overhead_us']:.1f}", spread, f"{plain:.1f}"])
    print(table(rows_, ["layer kind", "kernel us", "call us", "overhead us", "p10..p90", "plain-numpy call us"]))
    single = [r for r in results if r["overhead_us"] is not None]
    worst = max(single, key=lambda r: r["overhead_us"])
    met = all(r["overhead_us"] <= GOAL_US for r in single)
    print(f"largest overhead: {worst['name']} {worst['overhead_us']:.1f} us; goal <= {GOAL_US:.0f} us for every "
          f"single-function kind: {'met' if met else 'NOT met'}")
    save_run(args.json, "call_overhead", printed.text(), results,
             notes="kernel: TVM time_evaluator; call: whole k(*arrays) on aligned inputs; plain: numpy's arrays")


if __name__ == "__main__":
    main()
