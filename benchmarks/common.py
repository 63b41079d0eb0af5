"""Shared helpers for the benchmarks in this directory: the machine's ceiling, one subprocess per thread
count, timing of peers (numpy, PyTorch), geometric means, tables and JSON output.

    from common import measure_fp32_peak, run_per_thread_count, best_time_ms, table, geomean, write_json
    from common import add_json_option, save_run, StdoutCopy   # --json: a run for docs/performance.md

A benchmark script usually has two halves:
  * a parent that calls run_per_thread_count(__file__, [1, 2], extra_args): it re-runs the script with
    `--worker N` in a child process whose thread settings (TVM_NUM_THREADS, OMP/OPENBLAS/MKL threads) are
    fixed before any library starts its thread pool, and collects the JSON the child prints last;
  * a worker (`--worker N`) that measures and prints one JSON document on its last stdout line.

Timings on a shared machine are noisy: peers and our kernels are timed the same way in the same process
(the minimum over many calls, after a warm-up), and results are read as ratios measured in the same run.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
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


# ------------------------------------------------------------------------------------- fp32 peak (C)

# 12 independent 8-lane FMA chains: Zen 3 has 2 FMA pipes with 4-cycle latency, so >= 8 chains keep both
# busy. The result is summed and returned so that the compiler cannot drop the loop.
_PEAK_C = r"""
#include <immintrin.h>
#define V(k) _mm256_set1_ps(seed + k)   /* distinct starts: equal chains would be merged by the compiler */
float fma_loop(long iters, float seed) {
    __m256 a0 = V(0), a1 = V(1), a2 = V(2), a3 = V(3), a4 = V(4), a5 = V(5),
           a6 = V(6), a7 = V(7), a8 = V(8), a9 = V(9), a10 = V(10), a11 = V(11);
    const __m256 m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i) {
        a0 = _mm256_fmadd_ps(a0, m, b); a1 = _mm256_fmadd_ps(a1, m, b); a2 = _mm256_fmadd_ps(a2, m, b);
        a3 = _mm256_fmadd_ps(a3, m, b); a4 = _mm256_fmadd_ps(a4, m, b); a5 = _mm256_fmadd_ps(a5, m, b);
        a6 = _mm256_fmadd_ps(a6, m, b); a7 = _mm256_fmadd_ps(a7, m, b); a8 = _mm256_fmadd_ps(a8, m, b);
        a9 = _mm256_fmadd_ps(a9, m, b); a10 = _mm256_fmadd_ps(a10, m, b); a11 = _mm256_fmadd_ps(a11, m, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
               _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8]; _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
"""
_FLOPS_PER_ITER = 12 * 8 * 2          # 12 FMAs x 8 lanes x (multiply + add)


def _peak_lib():
    src_hash = hashlib.sha256(_PEAK_C.encode()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"convsched_fma_peak_{src_hash}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory() as d:
            c = Path(d) / "peak.c"
            c.write_text(_PEAK_C)
            tmp = Path(d) / "peak.so"
            subprocess.run(["gcc", "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", str(c), "-o", str(tmp)],
                           check=True, capture_output=True)
            os.replace(tmp, lib)     # atomic: concurrent benchmarks never load a half-written file
    so = ctypes.CDLL(str(lib))
    so.fma_loop.restype = ctypes.c_float
    so.fma_loop.argtypes = [ctypes.c_long, ctypes.c_float]
    return so


def measure_fp32_peak(threads: int = 1, seconds: float = 0.005, trials: int = 100) -> dict:
    """Measured AVX2 FMA throughput in GFLOP/s on `threads` threads: the best of many short runs (short, so
    that on a shared machine some of them run undisturbed).

    Returns {"total": GFLOP/s on all threads, "per_core": total / threads, "source": how it was measured}.
    Falls back to the host's figure (convsched.target: Target.fp32_peak_gflops) without gcc or AVX2."""
    try:
        so = _peak_lib()
    except (OSError, subprocess.CalledProcessError, FileNotFoundError) as e:
        from convsched.target import host
        per_core = host().fp32_peak_gflops(1)
        return {"total": per_core * threads, "per_core": per_core,
                "source": f"the {host().mcpu} figure of convsched.target (could not build the FMA loop: "
                          f"{type(e).__name__})"}
    so.fma_loop(100_000, 1.0)                                 # warm up (clock ramp)
    t0 = time.perf_counter()
    so.fma_loop(1_000_000, 1.0)
    iters = max(100_000, int(1_000_000 * seconds / max(time.perf_counter() - t0, 1e-6)))
    # Every thread runs `trials` short timed calls, all threads at once; each keeps its fastest call, and the
    # total is the sum of those (a shared machine rarely leaves all cores idle in the same few ms).
    best = [0.0] * threads
    barrier = threading.Barrier(threads)

    def work(i):
        barrier.wait()
        for _ in range(trials):
            t = time.perf_counter()
            so.fma_loop(iters, 1.0 + i)                   # ctypes releases the GIL: threads run in parallel
            best[i] = max(best[i], iters * _FLOPS_PER_ITER / (time.perf_counter() - t) / 1e9)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    best = sum(best)
    return {"total": best, "per_core": best / threads,
            "source": "gcc -O2 -mavx2 -mfma, 12 independent 8-lane FMA chains per thread, best 5 ms run"}


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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run_info() -> dict:
    """Where, when and how this run was made: the heading of its section in docs/performance.md."""
    # imported here: common.py also serves processes that never load convsched (the LCE peer's environment)
    from convsched.target import host
    t = host()
    isa = "AVX-512" if t.has("avx512f") else "AVX2" if t.has("avx2") else "SSE"
    cpu = f"{_cpu_model()} (LLVM {t.mcpu}, {isa}{', VPOPCNTDQ' if t.fast_popcount else ''}, {os.cpu_count()} cores)"
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


if __name__ == "__main__":          # `python benchmarks/common.py`: print the measured ceiling
    for n in (1, 2):
        p = measure_fp32_peak(n)
        print(f"fp32 FMA peak, {n} thread(s): {p['total']:.1f} GFLOP/s ({p['per_core']:.1f} per core; "
              f"{p['source']})")
