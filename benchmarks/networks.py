"""Whole small networks, end to end: fused vs unfused (same kernels, same run) and vs PyTorch (fp32 nets).

    .venv/bin/python benchmarks/networks.py            # threads: TVM_NUM_THREADS (default: all cores)
    .venv/bin/python benchmarks/networks.py --quick    # smaller shapes

Networks (convsched.graph builders): ResNet-18 basic block 56x56x64, MobileNet(v1) block 56x56x64->128,
VGG-style conv3x3+ReLU -> maxpool 2x2 at 56x56x64->64 (the fused/conv_pool case), and the small binary net
(bitpack -> bconv -> threshold -> bit max pool -> bconv -> segmented pool -> FC scores) at 32x32x64.
Every variant is checked against the numpy reference (graph.reference) before it is timed.
Times: the minimum over many whole forward passes (Python dispatch of each kernel included), PyTorch timed
the same way in the same process with the same thread count, channels_last (NHWC) tensors.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, StdoutCopy, add_json_option, best_time_ms, save_run, torch_available  # noqa: E402

import convsched as cs  # noqa: E402
from convsched.backend import num_threads  # noqa: E402

warnings.filterwarnings("ignore", message="no tuning record")
G, L = cs.graph, cs.layers


def conv_pool_net(h=56, c=64):
    g = G.Graph(f"conv_pool_{h}x{h}x{c}")
    x = g.input("x", (1, h, h, c))
    g.add("conv", L.Conv2d(h=h, w=h, cin=c, cout=c, bias=True, act="relu"), x)
    g.add("pool", L.Pool2d(h=h, w=h, c=c, kind="max", k=2, stride=2), "conv")
    g.output("pool")
    return g


def torch_forward(name, xs, params, threads):
    """A callable running the same network in PyTorch (channels_last) and its result as NHWC numpy."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    cl = torch.channels_last

    def W(node):  # HWIO -> OIHW, channels_last
        return torch.from_numpy(params[f"{node}.w"]).permute(3, 2, 0, 1).contiguous(memory_format=cl)

    def B(node):
        return torch.from_numpy(params[f"{node}.b"])

    x0 = torch.from_numpy(xs["x"]).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    if name.startswith("resnet"):
        w1, b1, w2, b2 = W("c1"), B("c1"), W("c2"), B("c2")
        def f():
            y = F.relu(F.conv2d(x0, w1, b1, padding=1))
            return F.relu(F.conv2d(y, w2, b2, padding=1) + x0)
    elif name.startswith("mobilenet"):
        wd, bd, wp, bp = W("dw"), B("dw"), W("pw"), B("pw")
        groups = wd.shape[0]
        def f():
            y = F.relu(F.conv2d(x0, wd, bd, padding=1, groups=groups))
            return F.relu(F.conv2d(y, wp, bp))
    else:
        w, b = W("conv"), B("conv")
        def f():
            return F.max_pool2d(F.relu(F.conv2d(x0, w, b, padding=1)), 2)

    def run():
        with torch.no_grad():
            return f()
    return run, lambda: run().permute(0, 2, 3, 1).contiguous().numpy()


def measure(name, g, threads, with_torch):
    xs, params = g.random_inputs(1), g.random_params(1)
    want = g.reference(xs, params)
    row = {"network": name, "threads": threads}
    plans = {"fused": g.plan(), "unfused": g.plan(fusion=False)}
    nets = {}
    for variant, plan in plans.items():
        net = g.compile(plan)
        net.set_params(params)
        got = net(**xs)
        if np.dtype(got.dtype).kind in "iu":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        nets[variant] = net
        row[f"{variant}_kernels"] = len(net.kernels)
    # interleave the variants so that a burst of load on the shared machine hits all of them
    for _ in range(3):
        for variant, net in nets.items():
            t = best_time_ms(lambda: net(**xs), min_calls=20, min_seconds=0.4)
            row[f"{variant}_ms"] = min(row.get(f"{variant}_ms", 1e9), t)
        if with_torch and not name.startswith("binary"):
            run, result = torch_forward(name, xs, params, threads)
            np.testing.assert_allclose(result(), want, rtol=1e-3, atol=1e-3)
            row["torch_ms"] = min(row.get("torch_ms", 1e9), best_time_ms(run, min_calls=20, min_seconds=0.4))
    row["plan"] = str(plans["fused"])
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    add_json_option(ap)
    a = ap.parse_args()
    printed = StdoutCopy()
    s = 28 if a.quick else 56
    threads = num_threads()
    host = cs.target.host()
    with_torch = torch_available()
    nets = {
        "resnet_block": G.resnet_basic_block(h=s, c=64),
        "mobilenet_block": G.mobilenet_block(h=s, cin=64, cout=128),
        "conv_relu_maxpool": conv_pool_net(h=s, c=64),
        "binary_net": G.binary_net(h=32 if not a.quick else 16, c=64, c2=128),
    }
    print(f"host {host.key} ({host.mcpu}, {host.vector_bits}-bit vectors), {threads} threads; "
          f"PyTorch {'yes' if with_torch else 'not installed'}")
    rows = []
    print(f"{'network':20s} {'fused ms':>9s} {'unfused ms':>10s} {'unf/fused':>9s} {'torch ms':>9s} {'torch/fused':>11s}")
    for name, g in nets.items():
        r = measure(name, g, threads, with_torch)
        rows.append(r)
        tm = r.get("torch_ms")
        print(f"{name:20s} {r['fused_ms']:9.3f} {r['unfused_ms']:10.3f} {r['unfused_ms'] / r['fused_ms']:9.2f} "
              + (f"{tm:9.3f} {tm / r['fused_ms']:11.2f}" if tm else f"{'-':>9s} {'-':>11s}"))
    for r in rows:
        print(f"\n{r['network']}: {r['fused_kernels']} kernels fused, {r['unfused_kernels']} unfused\n{r['plan']}")
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "networks.json").write_text(json.dumps({"host": host.key, "threads": threads, "rows": rows}, indent=1))
    save_run(a.json, "networks", printed.text(), {"threads": threads, "rows": rows})


if __name__ == "__main__":
    main()
