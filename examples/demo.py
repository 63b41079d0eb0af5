"""`make demo`: compile an fp32 conv (56x56, 64->64, 3x3) and a max pool with their default schedules,
check them against numpy, print the schedule text, the time, GFLOP/s and the share of this machine's fp32
peak, measured here with its widest vectors (zmm on AVX-512, ymm on AVX2: convsched.backend.peaks, an FMA loop
whose accumulators stay in registers). If a shipped tuning record exists for this CPU, the tuned conv is shown
too."""
import sys
import warnings
from pathlib import Path

import numpy as np

import convsched as cs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from common import measure_fp32_peak  # noqa: E402

warnings.filterwarnings("ignore", message="no tuning record")


def show(title, layer, **how):
    k = cs.compile(layer, **how)
    xs = layer.random_inputs(seed=1)
    y = k(*xs)
    want = layer.reference(*xs)
    rtol, atol = layer.tolerance()
    ok = np.allclose(y, want, rtol=rtol, atol=atol)
    print(f"== {title}: {layer}")
    print(k.schedule.text())
    print(f"matches numpy reference: {ok} (max abs error {float(np.max(np.abs(y - want))):.2e})")
    t = k.benchmark()
    print(f"time: {t}")
    # numpy's large arrays are 16-byte aligned, so k() copies them to 64-byte aligned memory on every call
    aligned = k.benchmark(arrays=[cs.aligned(a) for a in xs])
    print(f"the same inputs 64-byte aligned once (cs.aligned): Python call {aligned.call_median_ms:.3f} ms "
          f"({aligned.overhead_us:+.1f} us over the kernel)\n")
    if not ok:
        raise SystemExit(f"{title}: kernel disagrees with the numpy reference")
    return t


if __name__ == "__main__":
    host = cs.target.host()
    peak = measure_fp32_peak(host.cores)
    print(f"target: {host.key}  ({cs.target.cpu_model_name()}: LLVM {host.mcpu}, modelled as {host.model.name}; "
          f"{host.isa_level}, {host.vector_bits}-bit vectors, {host.fma_per_cycle} FMA/cycle, {host.cores} cores)")
    print(f"fp32 peak: {peak['total']:.0f} GFLOP/s on {host.cores} threads ({peak['source']}); "
          f"the model's figure for {host.cores} cores of a {host.model.name}: {host.modelled_fp32_peak_gflops():.0f}\n")
    conv = cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1)
    t = show("conv 3x3, default schedule", conv, template=conv.default_template())
    pool = cs.layers.Pool2d(h=112, w=112, c=64, kind="max", k=3, stride=2, pad=1)
    show("max pool 3x3/2, default schedule", pool, template=pool.default_template())
    print(f"conv, default schedule: {t.rate:.1f} GFLOP/s on {t.threads} threads = "
          f"{100 * t.rate / peak['total']:.0f}% of the fp32 peak measured above (k.benchmark(): {t.pct_of_peak:.0f}% "
          f"of its {'measured' if t.peak_measured else 'modelled'} {t.peak:.0f})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # records of since-edited templates are skipped quietly here
        record = cs.records.best_record(conv, host)
    if record:
        print()
        tuned = show("conv 3x3, best shipped tuning record", conv)
        eff = "effective, " if tuned.effective else ""
        print(f"conv, tuned: {tuned.rate:.1f} GFLOP/s ({eff}direct-conv flops) = "
              f"{100 * tuned.rate / peak['total']:.0f}% of the measured peak")
