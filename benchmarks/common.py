"""Shared helpers for the benchmarks in this directory: the machine's ceilings, one subprocess per thread
count, timing of peers (numpy, PyTorch), geometric means, tables and JSON output.

    from common import measure_fp32_peak, measure_bit_peak, run_per_thread_count, best_time_ms, table, geomean
    from common import write_json, add_json_option, save_run, StdoutCopy   # --json: a run for docs/performance.md

A benchmark script usually has two halves:
  * a parent that calls run_per_thread_count(__file__, [1, 2], extra_args): it re-runs the script with
    `--worker N` in a child process whose thread settings (TVM_NUM_THREADS, OMP/OPENBLAS/MKL threads) are
    fixed before any library starts its thread pool, and collects the JSON the child prints last;
  * a worker (`--worker N`) that measures and prints one JSON document on its last stdout line.

Timings on a shared machine are noisy: peers and our kernels are timed the same way in the same process
(the minimum over many calls, after a warm-up), and results are read as ratios measured in the same run.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench_out"

# --------------------------------------------------------------------------------------------- threads

THREAD_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int) -> dict:
    """os.environ with every library's thread count set to `threads`."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_per_thread_count(script: str, threads_list, args=(), timeout: float | None = None) -> dict:
    """Run `python script --worker N *args` once per N in threads_list, each in its own process (thread
    pools read their size once, at start). Returns {N: the JSON the child printed on its last line}.
    The child's other output (progress) is passed through to stderr."""
    results = {}
    for n in threads_list:
        cmd = [sys.executable, str(script), "--worker", str(n), *map(str, args)]
        proc = subprocess.Popen(cmd, env=thread_env(n), stdout=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stdout:          # stream progress lines as they come
            lines.append(line)
            if not line.startswith("{"):
                sys.stderr.write(line)
                sys.stderr.flush()
        rc = proc.wait(timeout=timeout)
        data = next((ln for ln in reversed(lines) if ln.startswith("{")), None)
        if rc != 0 or data is None:
            raise RuntimeError(f"benchmark worker for {n} thread(s) failed (exit code {rc}): {' '.join(cmd)}")
        results[n] = json.loads(data)
    return results


# ----------------------------------------------------------------------------------------- the ceilings

def measure_fp32_peak(threads: int = 1, target="host") -> dict:
    """The fp32 FMA peak on `threads` threads with the widest vectors `target` may use (zmm on an AVX-512 host),
    measured now in this process (convsched.backend.peaks: a gcc loop of independent FMA chains whose
    assembly is checked to keep them in registers). A target the host cannot run gets its model's figure,
    labelled "modelled".

    Returns {"total": GFLOP/s on all threads, "per_core": total / threads, "measured": bool, "source": how}."""
    from convsched.backend import peaks
    p = peaks.fp32_peak(target, threads, cache=False)
    return {"total": p.value, "per_core": p.value / threads, "measured": p.measured,
            "source": f"{p.label}: {p.source}"}


def measure_bit_peak(target="host") -> dict:
    """The xor + popcount + add ceiling on TVM's thread pool (TVM_NUM_THREADS threads: run it in a worker whose
    thread count was set before TVM started), measured now: {"total", "per_core", "measured", "source"}."""
    from convsched.backend import num_threads, peaks
    p = peaks.bit_peak(target, num_threads(), cache=False)
    return {"total": p.value, "per_core": p.value / p.threads, "measured": p.measured,
            "source": f"{p.label}: {p.source}"}


# --------------------------------------------------------------------------------------------- timing

def best_time_ms(fn, min_calls: int = 10, min_seconds: float = 0.3, warmup: int = 2) -> float:
    """Minimum wall time of fn() in ms over at least `min_calls` calls and `min_seconds` (after warm-up).
    The minimum is the least disturbed sample on a machine that other jobs share."""
    for _ in range(warmup):
        fn()
    best, calls, start = math.inf, 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best * 1e3


# ---------------------------------------------------------------------------------------------- peers

def numpy_conv_nhwc(x, w, stride=(1, 1), pad=(0, 0)):
    """The numpy peer: NHWC conv as im2col (sliding_window_view, copied) + one matmul (OpenBLAS).
    x (n, h, w, cin), w (kh, kw, cin, cout) -> (n, oh, ow, cout). groups=1, dilation=1."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    kh, kw, cin, cout = w.shape
    xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0))) if any(pad) else x
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride[0], ::stride[1]]  # n, oh, ow, c, kh, kw
    n, oh, ow = win.shape[:3]
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * oh * ow, kh * kw * cin)
    return (cols @ w.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def torch_conv(x_nhwc, w_hwio, stride, pad, threads: int, channels_last: bool):
    """A zero-argument callable running torch.nn.functional.conv2d (oneDNN) on the same data, in NCHW or
    channels_last memory format, and a function turning its result back into NHWC numpy (for checking)."""
    import torch
    torch.set_num_threads(threads)
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)                  # logical NCHW
    w = torch.from_numpy(w_hwio).permute(3, 2, 0, 1)                  # OIHW
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, w = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)

    return run, lambda y: y.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------- reporting

def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None


def fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(rows, columns) -> str:
    """Plain-text table: rows are lists of already formatted cells, columns are headers."""
    cells = [list(map(str, columns))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    line = lambda r: "  ".join(c.rjust(wd) if i else c.ljust(wd) for i, (c, wd) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), "  ".join("-" * wd for wd in widths)] + [line(r) for r in cells[1:]])


def write_json(name: str, data) -> Path:
    """Write bench_out/<name>.json (created if missing); returns the path."""
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


# ------------------------------------------------------------------------------- runs for docs/performance.md

def add_json_option(ap) -> None:
    """--json PATH: also write this run (CPU, date, command, the report) for benchmarks/make_performance_doc.py."""
    ap.add_argument("--json", metavar="PATH", help="also write this run (CPU, date, command and report) as JSON, "
                    "the input of benchmarks/make_performance_doc.py")


class StdoutCopy:
    """Prints go through as usual and are kept: the report of a benchmark that prints as it measures.

        printed = StdoutCopy()  ...  save_run(args.json, "name", printed.text(), results)"""

    def __init__(self):
        self._out, self._buf = sys.stdout, []
        sys.stdout = self

    def write(self, s: str) -> int:
        self._buf.append(s)
        return self._out.write(s)

    def flush(self) -> None:
        self._out.flush()

    def text(self) -> str:
        """What was printed so far; printing goes straight to stdout again."""
        sys.stdout = self._out
        return "".join(self._buf)


def run_info() -> dict:
    """Where, when and how this run was made: the heading of its section in docs/performance.md."""
    # imported here: common.py also serves processes that never load convsched (the LCE peer's environment)
    from convsched.target import cpu_model_name, host
    t = host()
    isa = "AVX-512" if t.has("avx512f") else "AVX2" if t.has("avx2") else "SSE"
    cpu = (f"{cpu_model_name() or 'unknown CPU'} (LLVM {t.mcpu}, modelled as {t.model.name}; {isa}, "
           f"popcount {t.popcount}, {os.cpu_count()} cores)")
    return {"cpu": cpu, "target_key": t.key, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": shlex.join(["python", *[os.path.relpath(a, ROOT) if a.endswith(".py") else a
                                               for a in sys.argv]])}


def save_run(path, benchmark: str, report: str, results, notes: str = "") -> Path | None:
    """Write one run to `path` (nothing if path is None): run_info(), the benchmark's name, its printed report
    and its raw results. make_performance_doc.py turns such files into docs/performance.md."""
    if not path:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": benchmark, **run_info(), "notes": notes, "report": report, "results": results}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


if __name__ == "__main__":          # `python benchmarks/common.py`: print the measured fp32 ceilings per ISA
    for tgt in ("host", "x86-64-v3", "x86-64-v2"):
        for n in (1, 2):
            p = measure_fp32_peak(n, tgt)
            print(f"{tgt}: fp32 FMA peak, {n} thread(s): {p['total']:.1f} GFLOP/s ({p['per_core']:.1f} per core; "
                  f"{p['source']})")
