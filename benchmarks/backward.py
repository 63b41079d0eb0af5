"""Backward passes: convsched's gradient kernels vs PyTorch's autograd kernels on the same shapes.

    python benchmarks/backward.py                          # 1 and 2 threads, every row, pinned with taskset
    python benchmarks/backward.py --threads 1 --rows maxpool 56x56 --quick
    python benchmarks/backward.py --json docs/runs/backward.json        # also a run for docs/performance.md

Rows (batch 1, fp32, NHWC for convsched):
  * ResNet-18's max pool 112x112x64 k3 s2 p1: dx from the recorded argmax (Pool2dGrad) vs
    aten.max_pool2d_with_indices_backward;
  * ResNet-18's conv layers (benchmarks/resnet18_conv.py's LAYERS): data gradient (Conv2dDataGrad) and weight
    gradient (Conv2dWeightGrad) vs aten.convolution_backward with output_mask (True, False, False) and
    (False, True, False): the kernels autograd runs for conv2d's backward;
  * seed 002's Gaussian pooling 56x56x64 k5 s2 p2, 2 kernels per map: dx (GaussianPool2dGrad) vs the backward
    of the equivalent depthwise conv (groups=c, 2 output channels per group, the same kernels);
  * the elementwise and reduction gradients at ResNet-18 sizes: ReLU (56x56x64), PReLU (56x56x64: dx and the
    slopes' gradient), bias (56x56x64) and global average pooling (7x7x512) vs aten's kernels for them.
PyTorch runs on NCHW and channels_last tensors; the faster is the peer ("x torch" = its time / ours, > 1 means
convsched is faster). convsched's time is the fastest of the templates that apply to the layer, each with its
default knobs (the template is named; no tuning). A finite-only template (the data gradient's Winograd) checks
its float inputs on every call and runs the default template on inf or NaN (kernel.FiniteOnly): that check is
in its time, and where it is the fastest, the fastest of the others is listed under the table. Every result is
checked against PyTorch's first.

Timing (a shared machine): each thread count runs in its own process pinned with taskset (1 thread: one
core; 2: two), thread pools sized before they start. Per row, convsched and PyTorch alternate for `rounds`
rounds (default 5); each round keeps the minimum over many calls (with 2 threads after a 0.2 s pause, so
that the other library's idle workers have stopped spinning); a row reports the fastest round of each (the
least disturbed sample) and the spread of the per-round ratios (min..max). Times are whole calls from Python,
as a user makes them: for the smallest kernels (bias, global average pooling: a few us) convsched's call
(argument checks, output allocation: ~5 us) is most of it. JSON: bench_out/backward.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_json_option, best_time_ms, fmt, geomean, save_run, table, thread_env, write_json  # noqa: E402
from resnet18_conv import LAYERS as CONV_LAYERS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


# ------------------------------------------------------------------------------------------------- rows
def rows_spec():
    """[(row name, group, builder)]: builder(torch, threads) -> (candidates {name: fn}, peers {name: fn}, flop)."""
    specs = [("maxpool 112x112x64 k3 s2 p1 dx", "pool", _maxpool)]
    for name, args in CONV_LAYERS:
        specs.append((f"conv {name} dx", "conv", lambda t, n, a=args: _conv(t, a, "dx")))
        specs.append((f"conv {name} dw", "conv", lambda t, n, a=args: _conv(t, a, "dw")))
    specs.append(("gaussian 56x56x64 k5 s2 m2 dx", "pool", _gaussian))
    specs += [("relu 56x56x64 dx", "other", _relu), ("prelu 56x56x64 dx+dslope", "other", _prelu),
              ("bias 56x56x64 db", "other", _bias), ("global avg 7x7x512 dx", "other", _gap)]
    return specs


def _aligned(a):
    import convsched as cs
    return cs.aligned(a)


FINITE_ONLY = " (finite-only, checked)"


def _ours(layer, arrays):
    """{template: callable} for every template of the layer's kind that applies (default knobs); the names of
    templates whose algorithm the layer documents as finite-only (Winograd: its kernel checks the inputs and runs
    the default template on inf or NaN) end in FINITE_ONLY."""
    import convsched as cs
    host = cs.target.host()
    out = {}
    for name in cs.schedule.list_templates(layer.KIND):
        tmpl = cs.schedule.get_template(name)
        if tmpl.applies(layer, host) is True:
            k = cs.compile(layer, template=name)
            finite_only = tmpl.algorithm in getattr(layer, "FINITE_ONLY_ALGORITHMS", ())
            out[name + (FINITE_ONLY if finite_only else "")] = (lambda k=k: k(*arrays))
    return out


def _nchw(torch, a_nhwc, channels_last):
    t = torch.from_numpy(a_nhwc).permute(0, 3, 1, 2)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _both(torch, make):
    """Peers on NCHW and channels_last tensors: make(channels_last) -> (fn, to_nhwc)."""
    return {"torch NCHW": make(False), "torch CL": make(True)}


def _maxpool(torch, threads):
    import convsched as cs
    pool = cs.layers.Pool2d(h=112, w=112, c=64, kind="max", k=3, stride=2, pad=1)
    x = _aligned(pool.random_inputs(0)[0])
    y, am = cs.compile(cs.layers.Pool2dArgmax(pool))(x)
    dy = _aligned(cs.layers.Pool2dGrad(pool).random_inputs(1)[1])
    ours = _ours(cs.layers.Pool2dGrad(pool), [_aligned(am), dy])

    def make(cl):
        xt, dyt = _nchw(torch, x, cl), _nchw(torch, dy, cl)
        _, idx = torch.ops.aten.max_pool2d_with_indices(xt, [3, 3], [2, 2], [1, 1])
        fn = lambda: torch.ops.aten.max_pool2d_with_indices_backward(dyt, xt, [3, 3], [2, 2], [1, 1], [1, 1],  # noqa
                                                                   False, idx)
        return fn, lambda r: r.permute(0, 2, 3, 1).numpy()
    return ours, _both(torch, make), pool.ops(), "OP"


def _conv(torch, args, which):
    import numpy as np
    import convsched as cs
    conv = cs.layers.Conv2d(**args)
    x, w = (_aligned(a) for a in conv.random_inputs(0))
    dy = _aligned(np.random.default_rng(1).uniform(-1, 1, (1, conv.oh, conv.ow, conv.cout)).astype(np.float32))
    if which == "dx":
        ours = _ours(cs.layers.Conv2dDataGrad(conv), [w, dy])
    else:
        ours = _ours(cs.layers.Conv2dWeightGrad(conv), [x, dy])
    mask = [which == "dx", which == "dw", False]

    def make(cl):
        xt, dyt = _nchw(torch, x, cl), _nchw(torch, dy, cl)
        wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(
            memory_format=torch.channels_last if cl else torch.contiguous_format)
        fn = lambda: torch.ops.aten.convolution_backward(dyt, xt, wt, None, conv.strides, conv.pads,  # noqa: E731
                                                         conv.dilations, False, [0, 0], 1, mask)
        if which == "dx":
            return fn, lambda r: r[0].permute(0, 2, 3, 1).numpy()
        return fn, lambda r: r[1].permute(2, 3, 1, 0).numpy()
    return ours, _both(torch, make), 2 * conv.ops(), "FLOP"


def _gaussian(torch, threads):
    import numpy as np
    from gaussian_pool_layers import GaussianPool2d
    gp = GaussianPool2d(h=56, w=56, c=64, k=5, stride=2, pad=2, variances=(1.0, 4.0))
    grad = gp.backward()["x"][0].layer
    dy = _aligned(grad.random_inputs(0)[0])
    ours = _ours(grad, [dy, gp.taps()])
    g = gp.taps()
    w2 = np.einsum("ja,jb->jab", g, g)                                           # (m, k, k)
    # the depthwise conv's output channel ch*m + j is our channel j*c + ch
    dy_t = dy.reshape(1, gp.oh, gp.ow, gp.m, gp.c).transpose(0, 1, 2, 4, 3).reshape(1, gp.oh, gp.ow, -1)
    x = np.zeros((1, gp.h, gp.w, gp.c), np.float32)

    def make(cl):
        xt, dyt = _nchw(torch, x, cl), _nchw(torch, np.ascontiguousarray(dy_t), cl)
        wt = torch.from_numpy(np.tile(w2[None], (gp.c, 1, 1, 1)).reshape(gp.c * gp.m, 1, gp.k, gp.k))
        wt = wt.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        fn = lambda: torch.ops.aten.convolution_backward(dyt, xt, wt, None, [2, 2], [2, 2], [1, 1], False,  # noqa
                                                         [0, 0], gp.c, [True, False, False])
        return fn, lambda r: r[0].permute(0, 2, 3, 1).numpy()
    return ours, _both(torch, make), 2 * grad.ops(), "FLOP"


def _elementwise(torch, layer, arrays, aten, outputs):
    """Rows whose PyTorch kernel is one aten call on NCHW/channels_last versions of the same arrays."""
    import convsched as cs
    ours = _ours(layer, [_aligned(a) for a in arrays])

    def make(cl):
        ts = [_nchw(torch, a, cl) if a.ndim == 4 else torch.from_numpy(a) for a in arrays]
        return (lambda: aten(*ts)), outputs
    return ours, _both(torch, make), layer.ops(), "OP"


def _relu(torch, threads):
    import numpy as np
    import convsched as cs
    relu = cs.layers.ReLU(h=56, w=56, c=64)
    x = relu.random_inputs(0)[0]
    y, dy = np.maximum(x, 0), relu.random_inputs(1)[0]
    return _elementwise(torch, cs.layers.ReLUGrad(relu), [y, dy],
                        lambda yt, dyt: torch.ops.aten.threshold_backward(dyt, yt, 0.0),
                        lambda r: r.permute(0, 2, 3, 1).numpy())


def _prelu(torch, threads):
    import convsched as cs
    prelu = cs.layers.PReLU(h=56, w=56, c=64)
    x, slope = prelu.random_inputs(0)
    dy = prelu.random_inputs(1)[0]
    return _elementwise(torch, cs.layers.PReLUGrad(prelu), [x, slope, dy],
                        lambda xt, st, dyt: torch.ops.aten._prelu_kernel_backward(dyt, xt, st.reshape(1, -1, 1, 1)),
                        lambda r: (r[0].permute(0, 2, 3, 1).numpy(), r[1].sum(dim=(0, 2, 3)).numpy()))


def _bias(torch, threads):
    import convsched as cs
    layer = cs.layers.BiasGrad(h=56, w=56, c=64)
    return _elementwise(torch, layer, layer.random_inputs(0), lambda dyt: dyt.sum(dim=(0, 2, 3)),
                        lambda r: r.numpy())


def _gap(torch, threads):
    import convsched as cs
    pool = cs.layers.GlobalAvgPool2d(h=7, w=7, c=512)
    layer = cs.layers.GlobalAvgPool2dGrad(pool)
    dy = layer.random_inputs(0)[0]
    x = _aligned(pool.random_inputs(0)[0])
    import numpy as np
    ours = _ours(layer, [_aligned(dy)])

    def make(cl):
        xt = _nchw(torch, x, cl)
        dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
        return (lambda: torch.ops.aten._adaptive_avg_pool2d_backward(dyt, xt)), \
            (lambda r: r.permute(0, 2, 3, 1).numpy())
    return ours, _both(torch, make), layer.ops(), "OP"


# ------------------------------------------------------------------------------------------------ worker
def worker(threads: int, patterns, rounds: int, quick: bool) -> dict:
    import numpy as np
    import torch
    import convsched as cs
    warnings.filterwarnings("ignore", message="no tuning record")
    torch.set_num_threads(threads)
    log = lambda *a: print(*a, flush=True)                       # noqa: E731  progress lines for the parent
    timing = dict(min_calls=5, min_seconds=0.05) if quick else dict(min_calls=10, min_seconds=0.15)
    settle = 0.0 if threads == 1 else 0.2
    rows = []
    for name, group, build in rows_spec():
        if patterns and not any(p in name for p in patterns):
            continue
        ours, peers, ops, unit = build(torch, threads)
        row = {"row": name, "group": group, "ops": ops, "unit": unit, "ours": {}, "peers": {}}
        # correctness first: every convsched candidate against PyTorch's result (NCHW), dropped if wrong
        ref_fn, to_nhwc = peers["torch NCHW"]
        want = to_nhwc(ref_fn())
        want = want if isinstance(want, tuple) else (want,)
        for tname, fn in list(ours.items()):
            got = fn()
            got = got if isinstance(got, tuple) else (got,)
            scale = max(float(np.abs(w).max()) for w in want)
            err = max(float(np.abs(g - w).max()) for g, w in zip(got, want)) / max(scale, 1e-30)
            if err > 1e-4:
                log(f"  [{threads}t] {name}: {tname} differs from PyTorch (relative error {err:.2e}): excluded")
                del ours[tname]
        runs = {**{f"ours:{k}": v for k, v in ours.items()}, **{k: v[0] for k, v in peers.items()}}
        per_round = {k: [] for k in runs}
        for _ in range(1 if quick else rounds):
            for key, fn in runs.items():                         # alternate: a burst of load hits every entry
                # let the other library's idle workers stop spinning first: right after TVM's first parallel
                # calls, PyTorch's two OpenMP threads ran 100x slower for a few hundred ms (2 threads, 2 cores)
                time.sleep(settle)
                per_round[key].append(best_time_ms(fn, **timing))
        for key, ms in per_round.items():
            (row["ours"] if key.startswith("ours:") else row["peers"])[key.split(":", 1)[-1]] = ms
        # convsched's time: the fastest template (a finite-only one, Winograd, checks its float inputs on every
        # call and runs the default template on inf or NaN: kernel.FiniteOnly; that check is in its time); the
        # fastest of the others (what compile() gives without a tuning record) is kept beside it
        best_t = min(row["ours"], key=lambda t: min(row["ours"][t]))
        best_p = min(row["peers"], key=lambda p: min(row["peers"][p]))
        ours_ms, peer_ms = min(row["ours"][best_t]), min(row["peers"][best_p])
        if best_t.endswith(FINITE_ONLY):
            exact = min((t for t in row["ours"] if not t.endswith(FINITE_ONLY)), key=lambda t: min(row["ours"][t]))
            row["exact_only"] = {"template": exact, "ms": min(row["ours"][exact]),
                                 "ratio": peer_ms / min(row["ours"][exact])}
        ratios = [p / o for p, o in zip(row["peers"][best_p], row["ours"][best_t])]
        row.update(template=best_t, ms=ours_ms, peer=best_p, peer_ms=peer_ms, ratio=peer_ms / ours_ms,
                   ratio_min=min(ratios), ratio_max=max(ratios), rate=ops / ours_ms / 1e6)
        rows.append(row)
        log(f"  [{threads}t] {name}: {ours_ms:.3f} ms ({best_t}) vs {best_p} {peer_ms:.3f} ms: "
            f"{row['ratio']:.2f}x")
    target = cs.target.host()
    return {"threads": threads, "cpu": cpu_model(), "llvm_cpu": target.mcpu, "target": target.key,
            "versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "convsched": getattr(cs, "__version__", "?")}, "rows": rows}


# ------------------------------------------------------------------------------------------------ report
COLUMNS = ["row", "convsched template", "ms", "G/s", "torch best", "torch ms", "x torch", "round spread"]


def report(res: dict) -> str:
    rows = res["rows"]
    out = [f"\n== {res['threads']} thread(s), {res['cpu']} (LLVM {res['llvm_cpu']}; {res['target']}), "
           f"torch {res['versions']['torch']}", "   x torch = PyTorch's time / convsched's (> 1: convsched faster); "
           "G/s = GFLOP/s for conv and Gaussian rows, G elements/s otherwise\n"]
    cells = [[r["row"], r["template"], fmt(r["ms"], ".3f"), fmt(r["rate"], ".1f"), r["peer"], fmt(r["peer_ms"], ".3f"),
              fmt(r["ratio"]), f"{r['ratio_min']:.2f}..{r['ratio_max']:.2f}"] for r in rows]
    for group in ("pool", "conv", "other"):
        g = geomean(r["ratio"] for r in rows if r["group"] == group)
        if g:
            cells.append([f"geo-mean ({group})", "", "", "", "", "", fmt(g), ""])
    cells.append(["geo-mean (all)", "", "", "", "", "", fmt(geomean(r["ratio"] for r in rows)), ""])
    out.append(table(cells, COLUMNS))
    slow = [r["row"] for r in rows if r["ratio"] < 1.0]
    out.append(f"rows slower than PyTorch: {', '.join(slow) or 'none'}")
    exact = [f"{r['row']}: {r['exact_only']['template']} {r['exact_only']['ms']:.3f} ms = "
             f"{r['exact_only']['ratio']:.2f}x" for r in rows if r.get("exact_only")]
    if exact:
        out.append("where the fastest is finite-only, the fastest of the others (the default without a tuning "
                   "record):\n  " + "\n  ".join(exact))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rows", nargs="+", help="substrings of row names, e.g. maxpool 56x56 dw gaussian")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one short round (a smoke run, noisy numbers)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the workers with taskset")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    add_json_option(ap)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.rows, a.rounds, a.quick), default=str), flush=True)
        return
    extra = (["--rows", *a.rows] if a.rows else []) + ["--rounds", str(a.rounds)] + (["--quick"] if a.quick else [])
    cores = sorted(os.sched_getaffinity(0))
    results = {}
    for n in a.threads:
        cmd = [sys.executable, __file__, "--worker", str(n), *extra]
        if not a.no_pin:
            if len(cores) < n:
                raise SystemExit(f"{n} threads need {n} cores; this process may use {cores}")
            cmd = ["taskset", "-c", ",".join(map(str, cores[-n:])), *cmd]
        proc = subprocess.run(cmd, env=thread_env(n), stdout=subprocess.PIPE, text=True)
        lines = proc.stdout.splitlines()
        for line in lines:
            if not line.startswith("{"):
                print(line, file=sys.stderr)
        data = next((ln for ln in reversed(lines) if ln.startswith("{")), None)
        if proc.returncode or data is None:
            raise SystemExit(f"worker for {n} thread(s) failed (exit code {proc.returncode}): {' '.join(cmd)}")
        results[n] = json.loads(data)
        results[n]["command"] = " ".join(cmd)
    text = "\n".join(report(results[n]) for n in a.threads)
    print(text)
    path = write_json("backward", {"results": [results[n] for n in a.threads],
                                   "time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv})
    print(f"\nJSON: {path}")
    save_run(a.json, "backward", text, [results[n] for n in a.threads],
             notes="workers pinned with taskset; per row the fastest of interleaved rounds, spread = per-round ratios")


if __name__ == "__main__":
    main()
