"""convsched's tuner vs TVM MetaSchedule at equal wall time, and the tuned ResNet-18 conv suite vs PyTorch.

    python benchmarks/tuner_vs_metaschedule.py                  # both parts
    python benchmarks/tuner_vs_metaschedule.py --part ms --ms-trials 48
    python benchmarks/tuner_vs_metaschedule.py --part torch

Part "ms": on three ResNet-18 conv layers (56x56 64->64, 28x28 128->128, 14x14 256->256, 3x3, NHWC, batch 1),
MetaSchedule runs first for --ms-trials measured trials (its evolutionary search, random cost model, a plain
tvm.tirx.build builder); its wall time W is then given to convsched's tuner (strategy auto, fresh log, no
resume) as its time budget. Both measure with time_evaluator (repeat 7, >= 10 ms each) on 2 threads; both
are reported as the tuner saw them (best GFLOP/s, trials to reach 95% of the run's own best) and re-timed
here with the same evaluator (median of 15). Both tuners' best schedules are checked against the reference.
Part "torch": every ResNet-18 conv layer (convsched.tune.suites.resnet18) compiled with cs.compile(), i.e.
the best verified record of the shipped tuning log (else the default template), against PyTorch's conv2d
(oneDNN; NCHW and channels_last, the faster of the two), same threads, minimum over many calls for both.
The machine is shared with other jobs: read the ratios, measured in the same run. JSON -> bench_out/.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import StdoutCopy, add_json_option, best_time_ms, geomean, save_run, torch_available, torch_conv  # noqa: E402,E501

import convsched as cs  # noqa: E402
from convsched.tune.suites import resnet18, resnet18_3  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "bench_out"


def trials_to_95(curve):
    """1-based trial at which best-so-far first reaches 95% of the final best (None if nothing worked)."""
    if not curve or curve[-1] <= 0:
        return None
    return next(i + 1 for i, v in enumerate(curve) if v >= 0.95 * curve[-1])


def best_curve(rates):
    out, b = [], 0.0
    for r in rates:
        b = max(b, r or 0.0)
        out.append(b)
    return out


def part_ms(ms_trials: int, timeout: float):
    from convsched.backend.metaschedule import (export_best, export_kernel, time_libraries_isolated,
                                                tune_metaschedule)
    tgt = cs.target.host()
    rows = []
    for layer in resnet18_3():
        ops = layer.ops() * layer.flops_per_op
        with tempfile.TemporaryDirectory(prefix="ms-") as d, tempfile.TemporaryDirectory(prefix="cs-") as d2:
            m = tune_metaschedule(layer, tgt, ms_trials, d, timeout=timeout)
            ms_curve = best_curve(r for _, r in m["history"])
            libs = {"ms": export_best(m, f"{d2}/ms.so")}
            t0 = time.monotonic()
            # confirm=0: the closing confirmation would run past MetaSchedule's wall time; both bests are
            # re-timed interleaved below anyway
            res = cs.tune(layer, trials=100000, log=d, time_budget_s=m["wall_s"], resume=False, timeout=timeout,
                          progress=False, confirm=0)
            cs_wall = time.monotonic() - t0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = cs.compile(layer, template=res.template, knobs=res.knobs)
            libs["cs"] = export_kernel(k, f"{d2}/cs.so")
            # both bests re-timed in one fresh process, interleaved (see time_libraries_isolated)
            t = time_libraries_isolated(layer, {n: p for n, p in libs.items() if p})
            ms_ms, cs_ms = t.get("ms"), t["cs"]
        cs_curve = res.curve()
        row = {"layer": str(layer),
               "ms": {"wall_s": m["wall_s"], "trials": m["trials"], "best_gflops": ms_curve[-1] if ms_curve else 0,
                      "trials_to_95": trials_to_95(ms_curve), "retimed_gflops": ops / ms_ms / 1e6 if ms_ms else None,
                      "curve": ms_curve},
               "convsched": {"wall_s": cs_wall, "trials": len(res.records), "failed": res.failed,
                             "best_gflops": res.rate or 0, "trials_to_95": trials_to_95(cs_curve),
                             "retimed_gflops": ops / cs_ms / 1e6, "best": f"{res.template} {res.knobs}",
                             "curve": cs_curve}}
        rows.append(row)
        print(f"{layer.h}x{layer.w} {layer.cin}->{layer.cout}: MetaSchedule {row['ms']['trials']} trials "
              f"{m['wall_s']:.0f} s best {row['ms']['best_gflops']:.1f} GFLOP/s (95% at trial "
              f"{row['ms']['trials_to_95']}, re-timed {row['ms']['retimed_gflops'] or 0:.1f}) | convsched "
              f"{row['convsched']['trials']} trials {cs_wall:.0f} s best {row['convsched']['best_gflops']:.1f} "
              f"(95% at trial {row['convsched']['trials_to_95']}, re-timed {row['convsched']['retimed_gflops']:.1f})"
              f"  ratio {row['convsched']['retimed_gflops'] / (row['ms']['retimed_gflops'] or math.inf):.2f}x",
              flush=True)
    ratios = [r["convsched"]["retimed_gflops"] / r["ms"]["retimed_gflops"] for r in rows if r["ms"]["retimed_gflops"]]
    print(f"geo-mean convsched / MetaSchedule (re-timed best, equal wall time): {geomean(ratios):.2f}x")
    return rows


def part_torch(threads: int):
    import os
    import numpy as np
    if not torch_available():
        print("PyTorch not installed (pip install torch==2.13.0): part torch skipped")
        return []
    tgt = cs.target.host()
    rows = []
    for layer in resnet18():
        rec = cs.records.best_record(layer, tgt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = cs.compile(layer)
        x, w = layer.random_inputs(0)
        y = k(x, w)
        args = layer.prepare_inputs([x, w])
        from convsched.kernel import aligned_empty, as_kernel_arg
        args = [as_kernel_arg(a, s, "input") for a, s in zip(args, layer.input_specs())]
        outs = [aligned_empty(s.shape, s.dtype) for s in layer.output_specs()]
        ours = best_time_ms(lambda: k._built(*args, *outs))
        peers = {}
        for cl in (False, True):
            run, back = torch_conv(x, w, layer.strides, layer.pads, threads, cl)
            np.testing.assert_allclose(back(run()), y, rtol=1e-3, atol=1e-3)
            peers["channels_last" if cl else "nchw"] = best_time_ms(run)
        torch_ms = min(peers.values())
        gf = layer.ops() * 2 / ours / 1e6
        rows.append({"layer": str(layer), "tuned": rec is not None, "schedule": k.schedule.template,
                     "ms": ours, "gflops": gf, "torch_ms": peers, "speedup_vs_torch": torch_ms / ours})
        print(f"{layer.h}x{layer.w} {layer.cin}->{layer.cout} k{layer.kh} s{layer.stride}: convsched "
              f"{'tuned  ' if rec else 'default'} {ours:8.3f} ms {gf:6.1f} GFLOP/s | torch {torch_ms:8.3f} ms "
              f"| {torch_ms / ours:.2f}x", flush=True)
    g = geomean([r["speedup_vs_torch"] for r in rows])
    print(f"geo-mean speed-up vs PyTorch ({threads} threads, {os.environ.get('TVM_NUM_THREADS')} TVM threads): "
          f"{g:.2f}x")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["ms", "torch", "all"], default="all")
    ap.add_argument("--ms-trials", type=int, default=48)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=cs.target.host().cores)
    add_json_option(ap)
    a = ap.parse_args(argv)
    printed = StdoutCopy()
    host = cs.target.host()
    from convsched.backend import peaks
    peak = peaks.fp32_peak(host, a.threads)
    print(f"host {host.key}: {host.mcpu} (modelled as {host.model.name}), {host.vector_bits}-bit vectors, "
          f"{host.cores} cores; fp32 peak on {a.threads} thread(s) {peak}", flush=True)
    out = {"host": host.to_json()}
    if a.part in ("ms", "all"):
        out["tuner_vs_metaschedule"] = part_ms(a.ms_trials, a.timeout)
    if a.part in ("torch", "all"):
        out["resnet18_vs_torch"] = part_torch(a.threads)
    OUT.mkdir(exist_ok=True)
    (OUT / f"tuner_vs_metaschedule_{a.part}.json").write_text(json.dumps(out, indent=1, default=str))
    save_run(a.json, f"tuner_vs_metaschedule ({a.part})", printed.text(), out)


if __name__ == "__main__":
    main()
