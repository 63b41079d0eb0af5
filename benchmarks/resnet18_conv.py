"""ResNet-18 conv layers (batch 1, NHWC, fp32): convsched's best hand schedule vs numpy and PyTorch.

    python benchmarks/resnet18_conv.py                     # 1 and 2 threads, all layers
    python benchmarks/resnet18_conv.py --threads 1 --layers 56x56 7x7 --quick

For every layer, every conv2d template that applies (cs.schedule.list_templates("conv2d"), so templates
added later join by themselves) is compiled with its default knobs and timed, once on the layer with HWIO
weights and once per panel width P in WPACK on the layer with pre-packed weights (Conv2d(wpack=P), reported
as "template+wpackP"; the weights are packed once, outside the timed call, as a network packs them when
it loads them). Inputs are 64-byte aligned, as a convsched network's buffers are. The fastest is reported
with GFLOP/s, % of the fp32 FMA peak measured in the same process (benchmarks/common.py), and speedups
(peer time / our time, > 1 means convsched is faster) against numpy im2col + matmul (OpenBLAS) and
PyTorch's conv2d (oneDNN) in NCHW and channels_last memory formats, when torch imports. Every result is
checked against the numpy im2col output first. Each thread count runs in its own process, with every
library's thread pool sized before it starts. Times are the minimum over many calls in 5 interleaved rounds
(a shared machine); read the ratios, which are measured in the same run. JSON goes to bench_out/resnet18_conv.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_json_option, best_time_ms, fmt, geomean, measure_fp32_peak, numpy_conv_nhwc,  # noqa: E402
                    run_per_thread_count, save_run, table, torch_available, torch_conv, write_json)

# Pre-packed weight variants timed beside every template (Conv2d.wpack = panel width in output channels).
WPACK = (8, 16)

# (name, Conv2d arguments): the distinct conv shapes of ResNet-18 after the stem, in network order.
LAYERS = [
    ("56x56 64->64 3x3", dict(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)),
    ("56->28 64->128 3x3 s2", dict(h=56, w=56, cin=64, cout=128, kh=3, kw=3, stride=2, pad=1)),
    ("56->28 64->128 1x1 s2", dict(h=56, w=56, cin=64, cout=128, kh=1, kw=1, stride=2, pad=0)),
    ("28x28 128->128 3x3", dict(h=28, w=28, cin=128, cout=128, kh=3, kw=3, stride=1, pad=1)),
    ("28->14 128->256 3x3 s2", dict(h=28, w=28, cin=128, cout=256, kh=3, kw=3, stride=2, pad=1)),
    ("28->14 128->256 1x1 s2", dict(h=28, w=28, cin=128, cout=256, kh=1, kw=1, stride=2, pad=0)),
    ("14x14 256->256 3x3", dict(h=14, w=14, cin=256, cout=256, kh=3, kw=3, stride=1, pad=1)),
    ("14->7 256->512 3x3 s2", dict(h=14, w=14, cin=256, cout=512, kh=3, kw=3, stride=2, pad=1)),
    ("14->7 256->512 1x1 s2", dict(h=14, w=14, cin=256, cout=512, kh=1, kw=1, stride=2, pad=0)),
    ("7x7 512->512 3x3", dict(h=7, w=7, cin=512, cout=512, kh=3, kw=3, stride=1, pad=1)),
]


def _selected(patterns):
    if not patterns:
        return LAYERS
    chosen = [(n, a) for n, a in LAYERS if any(p in n for p in patterns)]
    if not chosen:
        raise SystemExit(f"--layers {patterns} matches none of: {', '.join(n for n, _ in LAYERS)}")
    return chosen


# ------------------------------------------------------------------------------------------------ worker

def _aligned(a):
    from convsched.kernel import aligned_empty
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def worker(threads: int, patterns, quick: bool) -> dict:
    import numpy as np
    import convsched as cs
    log = lambda *a: print(*a, file=sys.stdout, flush=True)     # progress lines (not JSON) go to the parent
    # Every candidate and peer of a layer is timed in each of `rounds` interleaved rounds and keeps its best:
    # a burst of load from other jobs then hurts one round, not one candidate.
    rounds, timing = (1, dict(min_calls=5, min_seconds=0.05)) if quick else (5, dict(min_calls=8, min_seconds=0.1))
    peak = measure_fp32_peak(threads)
    have_torch = torch_available()
    target = cs.target.host()
    rows = []
    for name, args in _selected(patterns):
        layer = cs.layers.Conv2d(**args)
        # Inputs 64-byte aligned, as the buffers of a convsched network are (cs.graph plans them): a misaligned
        # numpy array is copied into an aligned one on every call (kernel.as_kernel_arg), which on the small
        # layers was a third of the time (56->28 1x1 s2: 68 us of 0.22 ms for the 802 KB input).
        x, w = (_aligned(a) for a in layer.random_inputs(seed=0))
        gflop = 2 * layer.ops() / 1e9
        expect = numpy_conv_nhwc(x, w, layer.strides, layer.pads)
        rtol, atol = layer.tolerance()
        row = {"layer": name, "args": args, "gflop": gflop, "templates": {}}
        runs = {}                                       # key -> zero-argument callable to time
        for tname in cs.schedule.list_templates("conv2d"):
            for pack in (0, *WPACK):
                # "+wpackP": the same template on the layer whose weights come pre-packed in GEMM panels of P
                # output channels (Conv2d.wpack). They are packed ONCE, here, outside the timed call (as a
                # network packs them at load time); the kernel then never copies weights per call.
                if args["cout"] % (pack or 1):
                    continue
                key = tname + (f"+wpack{pack}" if pack else "")
                lay = cs.layers.Conv2d(**args, wpack=pack) if pack else layer
                tmpl = cs.schedule.get_template(tname)
                if tmpl.applies(lay, target) is not True:
                    continue
                wl = _aligned(lay.pack_weights(w))
                try:
                    t0 = time.perf_counter()
                    k = cs.compile(lay, template=tname)
                    build_s = time.perf_counter() - t0
                    ok = bool(np.allclose(k(x, wl), expect, rtol=rtol, atol=atol))
                except Exception as e:                      # a broken template is reported, not fatal
                    row["templates"][key] = {"error": f"{type(e).__name__}: {e}"[:300]}
                    log(f"  [{threads}t] {name}: {key} failed: {type(e).__name__}: {str(e)[:200]}")
                    continue
                row["templates"][key] = {"correct": ok, "build_s": build_s, "knobs": dict(k.schedule.knobs)}
                if ok:
                    runs[key] = (lambda k=k, wl=wl: k(x, wl))
                else:
                    log(f"  [{threads}t] {name}: {key} gives a WRONG result (excluded)")
        runs["numpy"] = lambda: numpy_conv_nhwc(x, w, layer.strides, layer.pads)
        if have_torch:
            for peer, cl in (("torch_nchw", False), ("torch_cl", True)):
                run, to_nhwc = torch_conv(x, w, layer.strides, layer.pads, threads, channels_last=cl)
                if not np.allclose(to_nhwc(run()), expect, rtol=rtol, atol=atol):
                    log(f"  [{threads}t] {name}: {peer} disagrees with numpy")
                runs[peer] = run
        best_ms = {key: float("inf") for key in runs}
        for _ in range(rounds):
            for key, fn in runs.items():
                best_ms[key] = min(best_ms[key], best_time_ms(fn, **timing))
        for key, ms in best_ms.items():
            if key in row["templates"]:
                row["templates"][key]["ms"] = ms
            else:
                row[f"{key}_ms"] = ms
        ours = {t: v["ms"] for t, v in row["templates"].items() if v.get("ms")}
        if ours:
            tname = min(ours, key=ours.get)
            row.update(best=tname, ms=ours[tname], gflops=gflop / ours[tname] * 1e3)
            row["pct_peak"] = 100 * row["gflops"] / peak["total"]
            for peer in ("numpy", "torch_nchw", "torch_cl"):
                if row.get(f"{peer}_ms"):
                    row[f"vs_{peer}"] = row[f"{peer}_ms"] / row["ms"]
            if have_torch:
                row["vs_torch_best"] = min(row["torch_nchw_ms"], row["torch_cl_ms"]) / row["ms"]
        rows.append(row)
        log(f"  [{threads}t] {name}: {fmt(row.get('gflops'), '.1f')} GFLOP/s with {row.get('best')}")
    import numpy
    versions = {"numpy": numpy.__version__, "convsched": getattr(cs, "__version__", "?")}
    if have_torch:
        import torch
        versions["torch"] = torch.__version__
    return {"threads": threads, "peak": peak, "target": target.key, "versions": versions, "rows": rows}


# ------------------------------------------------------------------------------------------------ report

COLUMNS = ["layer", "best template", "ms", "GFLOP/s", "% peak", "direct %", "x numpy", "x torch NCHW",
           "x torch CL", "x torch best"]
DIRECT = "conv2d/nhwc_direct"      # the hand schedule whose % of peak is the goal (>= 70%)


def _direct_pct(r, peak):
    """% of peak of the fastest nhwc_direct variant (HWIO weights or pre-packed +wpackP)."""
    ms = [t["ms"] for key, t in r["templates"].items() if key.split("+")[0] == DIRECT and t.get("ms")]
    return 100 * r["gflop"] / min(ms) * 1e3 / peak if ms else None


def report(res: dict) -> str:
    rows = res["rows"]
    out = [f"\n== {res['threads']} thread(s): measured fp32 peak {res['peak']['total']:.1f} GFLOP/s "
           f"({res['peak']['per_core']:.1f}/core; {res['peak']['source']}); target {res['target']}",
           "   GFLOP/s = direct-conv FLOPs / time: \"eff\" marks Winograd's effective rate (it does 2.25x fewer "
           "multiplies, so it can pass 100% of the FMA peak); a direct algorithm cannot; direct % = "
           f"{DIRECT} alone (best of its variants); +wpackP = weights pre-packed once in P-wide panels; x peer = peer time / convsched time (> 1: convsched faster)\n"]
    peak = res["peak"]["total"]
    cells = [[r["layer"], r.get("best", "none correct"), fmt(r.get("ms"), ".3f"), fmt(r.get("gflops"), ".1f"),
              fmt(r.get("pct_peak"), ".0f") + (" eff" if "winograd" in r.get("best", "") else ""),
              fmt(_direct_pct(r, peak), ".0f"), fmt(r.get("vs_numpy")), fmt(r.get("vs_torch_nchw")),
              fmt(r.get("vs_torch_cl")), fmt(r.get("vs_torch_best"))] for r in rows]
    gm = lambda key: fmt(geomean(r.get(key) for r in rows))
    cells.append(["geo-mean", "", "", "", "", "", gm("vs_numpy"), gm("vs_torch_nchw"), gm("vs_torch_cl"),
                  gm("vs_torch_best")])
    out.append(table(cells, COLUMNS))
    s1 = [p for r in rows if r["args"]["kh"] == 3 and r["args"]["stride"] == 1
          for p in [_direct_pct(r, peak)] if p]
    if s1:
        out.append(f"{DIRECT} on the 3x3 stride-1 layers: {min(s1):.0f}%..{max(s1):.0f}% of measured peak "
                   f"(goal >= 70%)")
    if any("vs_torch_best" in r for r in rows):
        low = [r["layer"] for r in rows if r.get("vs_torch_best", 9) < 0.8]
        out.append(f"layers below 0.8x the faster PyTorch format: {', '.join(low) or 'none'}")
    else:
        out.append("PyTorch not installed: `make bench` installs torch==2.13.0 (the bench extra)")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--layers", nargs="+", help="substrings of layer names, e.g. 56x56 '1x1' s2")
    ap.add_argument("--quick", action="store_true", help="short timings (a smoke run, noisy numbers)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    add_json_option(ap)
    a = ap.parse_args(argv)
    if a.worker:
        import json
        print(json.dumps(worker(a.worker, a.layers, a.quick), default=str), flush=True)
        return
    _selected(a.layers)
    extra = (["--layers", *a.layers] if a.layers else []) + (["--quick"] if a.quick else [])
    results = run_per_thread_count(__file__, a.threads, extra)
    text = "\n".join(report(results[n]) for n in a.threads)
    print(text)
    path = write_json("resnet18_conv", {"results": [results[n] for n in a.threads],
                                        "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"\nJSON: {path}")
    save_run(a.json, "resnet18_conv", text, [results[n] for n in a.threads])


if __name__ == "__main__":
    main()
