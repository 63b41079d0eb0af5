"""Binary 3x3 conv: convsched's XOR-popcount kernels vs PyTorch fp32 conv and Larq Compute Engine (LCE).

    .venv/bin/python benchmarks/binary_conv.py            # 1 and 2 threads; LCE if .venv-lce exists
    make bench-lce                                        # creates .venv-lce (TF 2.16 + LCE 0.16) first
    .venv/bin/python benchmarks/binary_conv.py --threads 1 --shapes 56x64 --no-torch

Per shape and thread count it prints G bit-MAC/s and % of THIS host's own xor+popcount+add ceiling on that many
threads, measured by the bit-GEMM microbenchmark in the same worker (convsched.backend.peaks.measure_bit: the
host's widest vectors and its popcount, vpopcntq or emulated; the N-thread figure is measured on N threads, so
it bounds what a kernel reaches there), the modelled ceiling of the host's core for reference, plus speedups
against
  (a) PyTorch 2.13 fp32 conv (oneDNN) of the same shape, the faster of NCHW / channels_last;
  (b) LCE 0.16's binary conv (LceBconv2d, use_indirect_bgemm=True, its fastest x86 path), run in its own
      virtual environment (.venv-lce: TensorFlow 2.16 needs numpy < 2) as a subprocess; skipped if absent.
Every time is the minimum over many calls after a warm-up (the machine is shared); our kernel is checked
against the numpy reference before it is timed. Results: bench_out/binary_conv.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LCE_PYTHON = ROOT / ".venv-lce" / "bin" / "python"
PAD_MODE = os.environ.get("LCE_PAD_MODE", "one")    # "one": explicit +1 padding; "same": zero padding

# (h = w, cin = cout): the four 115.6 M bit-MAC layers of the issue (3x3, pad 1) and a 32x32 64->64 one
SHAPES = {"56x64": (56, 64), "28x128": (28, 128), "14x256": (14, 256), "7x512": (7, 512), "32x64": (32, 64)}


# ------------------------------------------------------------------------------------------- LCE side
def lce_worker(threads: int, shapes: list) -> dict:
    """Runs inside .venv-lce (no convsched there): {shape: {"ms": best ms, "bconv": op found}}."""
    import time

    import numpy as np
    import tensorflow as tf
    import larq_compute_engine as lce
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    out = {}
    for name in shapes:
        hw, c = SHAPES[name]
        rng = np.random.default_rng(0)
        w_pm1 = np.where(rng.integers(0, 2, (3, 3, c, c)) > 0, 1.0, -1.0).astype(np.float32)

        class Model(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.constant(w_pm1)

            @tf.function(input_signature=[tf.TensorSpec((1, hw, hw, c), tf.float32)])
            def __call__(self, x):
                # larq's ste_sign (sign(sign(x) + 0.1): +1 at 0) is the pattern LCE's converter turns
                # into its binary ops; padding with +1 (larq's pad_values=1) is its fast padding
                xb = tf.sign(tf.sign(x) + 0.1)
                if PAD_MODE == "same":
                    return tf.nn.conv2d(xb, self.w, strides=1, padding="SAME")
                xb = tf.pad(xb, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)
                return tf.nn.conv2d(xb, self.w, strides=1, padding="VALID")

        with tempfile.TemporaryDirectory() as d:
            m = Model()
            tf.saved_model.save(m, d, signatures=m.__call__)
            flatbuffer = lce.convert_saved_model(d)
        it = Interpreter(flatbuffer, num_threads=threads, use_reference_bconv=False, use_indirect_bgemm=True)
        x = rng.uniform(-1, 1, (1, hw, hw, c)).astype(np.float32)
        for _ in range(3):
            it.predict(x)
        best, start, calls = float("inf"), time.perf_counter(), 0
        while calls < 20 or time.perf_counter() - start < 1.0:
            t = time.perf_counter()
            it.predict(x)
            best = min(best, time.perf_counter() - t)
            calls += 1
        out[name] = {"ms": best * 1e3, "bconv": b"LceBconv2d" in bytes(flatbuffer)}
        print(f"  LCE {name} {threads}t: {best * 1e3:.3f} ms", file=sys.stderr, flush=True)
    return out


def run_lce(threads: int, shapes: list) -> dict | None:
    if not LCE_PYTHON.exists():
        return None
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    cmd = [str(LCE_PYTHON), __file__, "--lce-worker", str(threads), "--shapes", ",".join(shapes)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
    if p.returncode != 0 or line is None:
        print(f"LCE worker failed (exit {p.returncode}): {p.stderr.strip()[-800:]}", file=sys.stderr)
        return None
    sys.stderr.write(p.stderr[-2000:])
    return json.loads(line)


# ------------------------------------------------------------------------------------- convsched side
def worker(threads: int, shapes: list, use_torch: bool, templates: list) -> dict:
    import numpy as np

    sys.path.insert(0, str(HERE))
    import convsched as cs
    from common import best_time_ms, measure_bit_peak, torch_available, torch_conv
    from convsched.kernel import aligned_empty, as_kernel_arg

    tgt = cs.target.host()
    ceiling = measure_bit_peak()
    peak = ceiling["total"]
    print(f"[{threads}t] host xor+popcount+add ceiling on {threads} thread(s): {peak:.0f} G bit-MAC/s "
          f"({ceiling['source']})", file=sys.stderr, flush=True)
    rows = {}
    for name in shapes:
        hw, c = SHAPES[name]
        layer = cs.layers.BinaryConv2d(h=hw, w=hw, cin=c, cout=c, kh=3, kw=3, stride=1, pad=1, pad_value=-1)
        xs = layer.random_inputs(0)
        want = layer.reference(*xs)
        row = {"ops": layer.ops(), "ours": {}}
        for tname in templates:
            k = cs.compile(layer, template=tname)
            if not np.array_equal(k(*xs), want):
                raise AssertionError(f"{tname} computed a wrong answer on {layer}")
            args = [as_kernel_arg(a, s, "input") for a, s in zip(xs, layer.input_specs())]
            outs = [aligned_empty(s.shape, s.dtype) for s in layer.output_specs()]
            ms = best_time_ms(lambda: k._built(*args, *outs), min_calls=20, min_seconds=0.5)
            row["ours"][tname] = {"ms": ms, "gops": layer.ops() / ms / 1e6, "knobs": dict(k.schedule.knobs)}
        if use_torch and torch_available():
            rng = np.random.default_rng(0)
            xf = rng.uniform(-1, 1, (1, hw, hw, c)).astype(np.float32)
            wf = rng.uniform(-1, 1, (3, 3, c, c)).astype(np.float32)
            row["torch_ms"] = min(best_time_ms(torch_conv(xf, wf, 1, 1, threads, cl)[0], min_calls=20,
                                               min_seconds=0.5) for cl in (False, True))
        rows[name] = row
        best = min(v["ms"] for v in row["ours"].values())
        print(f"[{threads}t] {name}: {best:.3f} ms" + (f", torch {row['torch_ms']:.3f} ms" if "torch_ms" in row
                                                         else ""), file=sys.stderr, flush=True)
    # measured again after the kernels, the higher figure kept (a busy moment lowers a measurement)
    peak = max(peak, measure_bit_peak()["total"])
    return {"threads": threads, "host_peak_gops": peak, "peak_source": ceiling["source"], "target": tgt.key,
            "mcpu": tgt.mcpu, "uarch": tgt.model.name, "cpu": cs.target.cpu_model_name(),
            "popcount": tgt.popcount, "modelled_peak_gops": tgt.modelled_bit_peak_gops(threads), "rows": rows}


def report(results: dict, lce: dict) -> str:
    sys.path.insert(0, str(HERE))
    from common import fmt, table
    lines = []
    for threads, res in sorted(results.items(), key=lambda kv: int(kv[0])):
        t = int(threads)
        host_peak = res["host_peak_gops"]
        lines.append(f"\n{t} thread(s); host {res['cpu']} (LLVM {res['mcpu']}, modelled as {res['uarch']}; "
                     f"{res['target']}; popcount: {res['popcount']}); measured xor+popcount+add ceiling on "
                     f"{t} thread(s): {host_peak:.0f} G bit-MAC/s (the model's figure for {t} core(s) of a "
                     f"{res['uarch']}: {res['modelled_peak_gops']:.0f})")
        cols = ["layer", "template", "ms", "G bit-MAC/s", "% host ceiling", "torch fp32 ms",
                "x torch", "LCE ms", "x LCE"]
        rows = []
        for name, row in res["rows"].items():
            lce_ms = ((lce or {}).get(str(t)) or {}).get(name, {}).get("ms")
            for tname, o in row["ours"].items():
                rows.append([f"{name}->{SHAPES[name][1]}", tname.split("/")[1], fmt(o["ms"], ".3f"),
                             fmt(o["gops"], ".0f"),
                             fmt(100 * o["gops"] / host_peak, ".0f"), fmt(row.get("torch_ms"), ".3f"),
                             fmt(row["torch_ms"] / o["ms"] if "torch_ms" in row else None, ".1f"),
                             fmt(lce_ms, ".3f"), fmt(lce_ms / o["ms"] if lce_ms else None, ".2f")])
        lines.append(table(rows, cols))
    return "\n".join(lines)


def main():
    sys.path.insert(0, str(HERE))
    from common import add_json_option, run_per_thread_count, save_run, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--templates", default="binary_conv2d/blocked",
                    help="comma-separated convsched templates to time (e.g. add binary_conv2d/naive)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-lce", action="store_true")
    ap.add_argument("--worker", type=int)
    ap.add_argument("--lce-worker", type=int)
    add_json_option(ap)
    a = ap.parse_args()
    shapes = a.shapes.split(",")
    if a.lce_worker:
        print(json.dumps(lce_worker(a.lce_worker, shapes)))
        return
    if a.worker:
        print(json.dumps(worker(a.worker, shapes, not a.no_torch, a.templates.split(","))))
        return
    threads = [int(t) for t in a.threads.split(",")]
    args = ["--shapes", a.shapes, "--templates", a.templates] + (["--no-torch"] if a.no_torch else [])
    results = run_per_thread_count(__file__, threads, args)
    lce = None
    if a.no_lce:
        pass
    elif not LCE_PYTHON.exists():
        print(f"LCE: skipped ({LCE_PYTHON} missing; `make bench-lce` creates it)", file=sys.stderr)
    else:
        lce = {str(t): run_lce(t, shapes) for t in threads}
    text = report(results, lce)
    print(text)
    path = write_json("binary_conv", {"results": results, "lce": lce, "table": text})
    print(f"\nwritten {path}")
    save_run(a.json, "binary_conv", text, {"results": results, "lce": lce})


if __name__ == "__main__":
    main()
