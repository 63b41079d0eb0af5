"""Does an exported kernel run as fast from C as from Python?

Exports an fp32 conv (56x56, 64->64, 3x3) and a binary conv (32x32, 256->256, 3x3, bit-MACs) into one library
with examples/c_loader/make_data.py --bench, builds the C loader, and times the same kernels four ways, all the
same way (rounds of back-to-back calls lasting >= 20 ms; per-call time of each round; best and median round):
  C          examples/c_loader/loader --bench: the plain C entry point, from a C program (no TVM at all)
  py-load    cs.load(dir): the same C entry point called from Python through ctypes (raw arrays, no checks)
  py-load k  the Kernel from cs.load called as a user does, k(x, w): argument checks + output allocation
  py-tvm     cs.compile: the TVM runtime's module (its own thread pool), raw call, and k(x, w)
Rounds alternate between C (a subprocess) and the Python variants, three times; the best of each is kept.

    .venv/bin/python benchmarks/export_c_vs_python.py [--seconds 1.5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c_loader"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(EXAMPLE))
warnings.filterwarnings("ignore", message="no tuning record")


def rounds_ms(fn, seconds: float) -> tuple[float, float]:
    """(best, median) per-call ms over rounds of back-to-back calls, each round >= 20 ms: as loader.c does."""
    for _ in range(10):
        fn()
    calls, t0 = 1, time.perf_counter()
    while time.perf_counter() - t0 < 0.02:
        fn()
        calls += 1
    per_call, start = [], time.perf_counter()
    while len(per_call) < 200 and (len(per_call) < 5 or time.perf_counter() - start < seconds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t) / calls * 1e3)
    return min(per_call), float(np.median(per_call))


def main():
    from common import StdoutCopy, add_json_option, save_run, table, write_json
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="timing per variant per pass")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: the cores this process may use)")
    ap.add_argument("--passes", type=int, default=3)
    add_json_option(ap)
    a = ap.parse_args()
    if a.threads:
        os.environ["TVM_NUM_THREADS"] = str(a.threads)    # read by TVM's pool and by the exported shim
    import convsched as cs
    import make_data
    printed = StdoutCopy()
    from convsched.backend import num_threads

    build = Path(tempfile.mkdtemp(prefix="export_bench_"))
    make_data.main(build, bench=True)
    r = subprocess.run(["make", "-s", "-C", str(EXAMPLE), f"BUILD={build}", f"{build}/loader"],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    layers = make_data.layers(bench=True)
    loaded = {n: cs.load(build / "net", name=n) for n in layers}
    compiled = {n: cs.compile(layer) for n, layer in layers.items()}
    env = {**os.environ, "TVM_NUM_THREADS": str(num_threads())}

    best: dict = {}

    def keep(key, b, m):
        ob = best.get(key, (np.inf, np.inf))
        best[key] = (min(ob[0], b), min(ob[1], m))

    for _ in range(a.passes):
        out = subprocess.run([str(build / "loader"), str(build / "data"), "--bench", str(a.seconds)],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
        for name, b, m in re.findall(r"bench (\w+): best ([\d.]+) ms, median ([\d.]+) ms", out.stdout):
            keep((name, "C"), float(b), float(m))
        for name, layer in layers.items():
            xs = layer.random_inputs(0)
            args = [np.ascontiguousarray(x) for x in layer.prepare_inputs(list(xs))]
            from convsched.kernel import as_kernel_arg, aligned_empty
            args = [as_kernel_arg(x, s, "input") for x, s in zip(args, layer.input_specs())]
            outs = [aligned_empty(s.shape, s.dtype) for s in layer.output_specs()]
            kl, kc = loaded[name], compiled[name]
            keep((name, "py-load raw"), *rounds_ms(lambda: kl._built(*args, *outs), a.seconds))
            keep((name, "py-load k(x, w)"), *rounds_ms(lambda: kl(*xs), a.seconds))
            keep((name, "py-tvm raw"), *rounds_ms(lambda: kc._built(*args, *outs), a.seconds))
            keep((name, "py-tvm k(x, w)"), *rounds_ms(lambda: kc(*xs), a.seconds))

    host = cs.target.host()
    print(f"host {host.key} ({host.mcpu}, {host.isa_level}, {host.vector_bits}-bit vectors), "
          f"{num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    rows, data = [], {}
    for name, layer in layers.items():
        c_best = best[(name, "C")][0]
        unit = "GFLOP/s" if layer.op_unit == "FLOP" else "G bit-MAC/s"
        for how in ("C", "py-load raw", "py-load k(x, w)", "py-tvm raw", "py-tvm k(x, w)"):
            b, m = best[(name, how)]
            rate = layer.ops() * layer.flops_per_op / (b * 1e-3) / 1e9
            rows.append([name, how, f"{b:.4f}", f"{m:.4f}", f"{rate:.1f} {unit}", f"{b / c_best:.2f}"])
            data[f"{name}/{how}"] = {"best_ms": b, "median_ms": m, "rate": rate, "unit": unit}
    print(table(rows, ["kernel", "called from", "best ms", "median ms", "rate (best)", "time / C"]))
    print(f"layers: conv = {layers['conv']}\n        bconv = {layers['bconv']}")
    path = write_json(f"export_c_vs_python_{num_threads()}t", {"host": host.key, "threads": num_threads(), "results": data})
    print(f"wrote {path}")
    save_run(a.json, "export_c_vs_python", printed.text(), {"threads": num_threads(), "results": data})


if __name__ == "__main__":
    main()
