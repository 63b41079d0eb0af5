"""`make demo`: compile an fp32 conv (56x56, 64->64, 3x3) and a max pool with their default schedules,
check them against numpy, print the schedule text, the time, GFLOP/s and the share of the machine's peak."""
import warnings

import numpy as np

import convsched as cs

warnings.filterwarnings("ignore", message="no tuning record")


def show(title, layer):
    k = cs.compile(layer)
    xs = layer.random_inputs(seed=1)
    y = k(*xs)
    want = layer.reference(*xs)
    rtol, atol = layer.tolerance()
    ok = np.allclose(y, want, rtol=rtol, atol=atol)
    err = float(np.max(np.abs(y - want)))
    print(f"== {title}: {layer}")
    print(k.schedule.text())
    print(f"matches numpy reference: {ok} (max abs error {err:.2e})")
    t = k.benchmark()
    print(f"time: {t}")
    if not ok:
        raise SystemExit(f"{title}: kernel disagrees with the numpy reference")
    print()
    return t


if __name__ == "__main__":
    host = cs.target.host()
    print(f"target: {host.key}  ({host.mcpu}, {host.vector_bits}-bit vectors, {host.cores} cores, "
          f"fp32 peak taken as {host.fp32_peak_gflops():.0f} GFLOP/s)\n")
    conv = show("conv 3x3", cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, stride=1, pad=1))
    show("max pool 3x3/2", cs.layers.Pool2d(h=112, w=112, c=64, kind="max", k=3, stride=2, pad=1))
    print(f"conv: {conv.rate:.1f} GFLOP/s on {conv.threads} threads = {conv.pct_of_peak:.0f}% of the fp32 peak")
