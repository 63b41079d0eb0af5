"""MobileNet-v1 depthwise 3x3 + pointwise 1x1 pairs (NHWC, batch 1): convsched's best template per conv
against PyTorch (oneDNN) in NCHW and channels_last, measured in the same process, 1 and 2 threads.

    .venv/bin/python benchmarks/mobilenet.py                 # all pairs, 1 and 2 threads
    .venv/bin/python benchmarks/mobilenet.py --quick --threads 1 --pairs 112 14x14

For each conv every applicable conv2d template is compiled with its default knobs, checked against numpy,
and timed; the fastest counts. Times are minima over many calls (the machine is shared). The pointwise
layer is also run with pre-packed weights (wpack=16, packed once by Conv2d.pack_weights) as its own row
entry: PyTorch repacks per call. Inputs are 64-byte aligned, as a convsched network's buffers are (before
they were, the per-call copy of misaligned inputs cost 0.95x -> 1.02x of the geo-mean, 1 thread). Writes
bench_out/mobilenet.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_json_option, best_time_ms, fmt, geomean, measure_fp32_peak, run_per_thread_count,  # noqa: E402
                    save_run, table, torch_available, write_json)

# (name, h=w of the dw input, channels in, stride of dw, channels out of pw)
PAIRS = [
    ("112x112 32 dw s1 + 32->64", 112, 32, 1, 64),
    ("112->56 64 dw s2 + 64->128", 112, 64, 2, 128),
    ("56x56 128 dw s1 + 128->128", 56, 128, 1, 128),
    ("56->28 128 dw s2 + 128->256", 56, 128, 2, 256),
    ("28x28 256 dw s1 + 256->256", 28, 256, 1, 256),
    ("28->14 256 dw s2 + 256->512", 28, 256, 2, 512),
    ("14x14 512 dw s1 + 512->512", 14, 512, 1, 512),
    ("14->7 512 dw s2 + 512->1024", 14, 512, 2, 1024),
    ("7x7 1024 dw s1 + 1024->1024", 7, 1024, 1, 1024),
]


def _best(cs, layer, arrays, expect, timing, log, tag):
    import numpy as np
    target, best = cs.target.host(), None
    rtol, atol = layer.tolerance()
    for tname in cs.schedule.list_templates("conv2d"):
        if cs.schedule.get_template(tname).applies(layer, target) is not True:
            continue
        try:
            k = cs.compile(layer, template=tname)
            if not np.allclose(k(*arrays), expect, rtol=rtol, atol=atol):
                log(f"  {tag}: {tname} gives a WRONG result (excluded)")
                continue
            ms = best_time_ms(lambda: k(*arrays), **timing)
        except Exception as e:
            log(f"  {tag}: {tname} failed: {type(e).__name__}: {str(e)[:160]}")
            continue
        if best is None or ms < best[1]:
            best = (tname, ms)
    return best


def worker(threads: int, patterns, quick: bool) -> dict:
    import numpy as np
    import convsched as cs
    log = lambda *a: print(*a, flush=True)
    timing = dict(min_calls=5, min_seconds=0.05) if quick else dict(min_calls=20, min_seconds=0.4)
    peak = measure_fp32_peak(threads)
    have_torch = torch_available()
    if have_torch:
        import torch
        torch.set_num_threads(threads)
    rows = []
    for name, hw, c, s, cout in PAIRS:
        if patterns and not any(p in name for p in patterns):
            continue
        dw = cs.layers.Conv2d(h=hw, w=hw, cin=c, cout=c, groups=c, stride=s, pad=1)
        pw = cs.layers.Conv2d(h=dw.oh, w=dw.ow, cin=c, cout=cout, kh=1, kw=1, pad=0)
        pwp = cs.layers.Conv2d(h=dw.oh, w=dw.ow, cin=c, cout=cout, kh=1, kw=1, pad=0, wpack=16)
        # Inputs 64-byte aligned, as a convsched network's buffers are (cs.graph plans them): a misaligned numpy
        # array is copied into an aligned one on every call (kernel.as_kernel_arg). random_inputs/reference give
        # 16-byte aligned arrays: the copy of x and mid cost ~100 us per call on 56x56x128 (1 thread, Zen 3,
        # core pinned; dw kernel alone 168 us, the call 283 us), more than the kernel on the large pairs.
        x, wd = (cs.aligned(a) for a in dw.random_inputs(0))
        wp = cs.aligned(pw.random_inputs(1)[1])
        mid = cs.aligned(dw.reference(x, wd))
        out = pw.reference(mid, wp)
        row = {"pair": name, "gflop": 2 * (dw.ops() + pw.ops()) / 1e9}
        bd = _best(cs, dw, [x, wd], mid, timing, log, name + " dw")
        bp = _best(cs, pw, [mid, wp], out, timing, log, name + " pw")
        wpk = cs.aligned(pwp.pack_weights(wp))     # once, at load time
        bpp = _best(cs, pwp, [mid, wpk], out, timing, log, name + " pw packed")
        if bd and bp:
            row.update(dw=bd[0], dw_ms=bd[1], pw=bp[0], pw_ms=bp[1], ms=bd[1] + bp[1])
            if bpp:
                row.update(pw_packed=bpp[0], pw_packed_ms=bpp[1], ms_packed=bd[1] + bpp[1])
            row["gflops"] = row["gflop"] / min(row["ms"], row.get("ms_packed", row["ms"])) * 1e3
        if have_torch:
            xt = torch.from_numpy(x).permute(0, 3, 1, 2)
            wdt = torch.from_numpy(wd).permute(3, 2, 0, 1)          # HWIO (3, 3, 1, c) -> (c, 1, 3, 3)
            wpt = torch.from_numpy(wp).permute(3, 2, 0, 1)
            for fmt_name, mf in (("torch_nchw", torch.contiguous_format), ("torch_cl", torch.channels_last)):
                xa, da, pa = (t.contiguous(memory_format=mf) for t in (xt, wdt, wpt))

                def run(xa=xa, da=da, pa=pa):
                    with torch.no_grad():
                        m = torch.nn.functional.conv2d(xa, da, stride=s, padding=1, groups=c)
                        return torch.nn.functional.conv2d(m, pa)

                got = run().permute(0, 2, 3, 1).numpy()
                if not np.allclose(got, out, rtol=1e-3, atol=1e-2):
                    log(f"  {name}: {fmt_name} disagrees with the reference")
                row[f"{fmt_name}_ms"] = best_time_ms(run, **timing)
            if "ms" in row:
                ours = min(row["ms"], row.get("ms_packed", row["ms"]))
                row["vs_torch_nchw"] = row["torch_nchw_ms"] / ours
                row["vs_torch_cl"] = row["torch_cl_ms"] / ours
                row["vs_torch_best"] = min(row["torch_nchw_ms"], row["torch_cl_ms"]) / ours
        rows.append(row)
        log(f"  [{threads}t] {name}: {fmt(row.get('gflops'), '.1f')} GFLOP/s "
            f"(dw {row.get('dw')}, pw {row.get('pw_packed') or row.get('pw')}), x torch best "
            f"{fmt(row.get('vs_torch_best'))}")
    return {"threads": threads, "peak": peak, "target": cs.target.host().key, "rows": rows}


COLUMNS = ["pair", "dw template", "pw template", "ms", "ms (packed pw)", "GFLOP/s", "x torch NCHW", "x torch CL"]


def report(res: dict) -> str:
    out = []
    for threads, r in sorted(res.items()):
        rows = [[x["pair"], (x.get("dw") or "-").split("/")[-1], (x.get("pw_packed") or x.get("pw") or "-").split("/")[-1],
                 fmt(x.get("ms"), ".3f"), fmt(x.get("ms_packed"), ".3f"), fmt(x.get("gflops"), ".1f"),
                 fmt(x.get("vs_torch_nchw")), fmt(x.get("vs_torch_cl"))] for x in r["rows"]]
        out.append(f"\n{threads} thread(s), fp32 peak {r['peak']['total']:.0f} GFLOP/s ({r['peak']['source']}), "
                   f"target {r['target']}")
        out.append(table(rows, COLUMNS))
        gm = geomean([x.get("vs_torch_best") for x in r["rows"]])
        out.append(f"geo-mean vs the faster PyTorch layout: {fmt(gm)}x")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pairs", nargs="+", help="substrings of pair names, e.g. 112 '14x14'")
    ap.add_argument("--quick", action="store_true", help="short timings (a smoke run, noisy numbers)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    add_json_option(ap)
    a = ap.parse_args(argv)
    extra = (["--pairs", *a.pairs] if a.pairs else []) + (["--quick"] if a.quick else [])
    if a.worker:
        import json
        print(json.dumps(worker(a.worker, a.pairs, a.quick), default=str))
        return
    res = run_per_thread_count(__file__, a.threads, extra)
    text = report(res)
    print(text)
    print("wrote", write_json("mobilenet", {str(k): v for k, v in res.items()}))
    save_run(a.json, "mobilenet", text, {str(k): v for k, v in res.items()})


if __name__ == "__main__":
    main()
