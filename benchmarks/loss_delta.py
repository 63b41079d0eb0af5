"""Loss-delta layer on the seed's (is8ac/bnn) table shapes: per parameter, against the floor, 1 and 2 threads.

    .venv/bin/python benchmarks/loss_delta.py            # every row of the seed's tables (several minutes)
    .venv/bin/python benchmarks/loss_delta.py --quick    # the rows of the goals (global and segmented 32, 128, 1024)
    .venv/bin/python benchmarks/loss_delta.py --quick --json docs/runs/loss_delta.json

Columns are the seed's: head, segments, input pixel size (in), output pixel size (out), n params, ms per
example, ns per pixel bit (per example / (32*32*in)), ns per channel (per example / out), ns per parameter. n
params is counted as the seed does: 9*in*out + 10*out for the global head, conv weights only (9*in*out) for the
segmented head. Images are 32x32 random bits, 10 classes; the batch is summed (reduce="sum"); a time is the best
of --rounds rounds (over all rows) x --repeat whole calls (argument checks and packing, forward conv,
classification, delta stage, FC deltas), divided by the batch.

floor: the forward XOR-popcount conv alone (900 * 9 * in * out bit-MACs per example) at this host's xor +
popcount + add ceiling on 1 thread (the bit-GEMM microkernel, convsched.backend.peaks, measured in the same
worker), per parameter; "x floor" = our time / floor. "fwd %": the forward stage (the conv with its
classification epilogue) against that ceiling, from the per-stage profile. 2 threads: the same rows in a worker
on 2 threads; "2t speedup" = 1-thread time / 2-thread time. Workers are pinned where `taskset` exists: 1 thread
to core 1, 2 threads to cores 0,1.

The seed: its figure for this CPU kind (LLVM -mcpu name) from the side_by_side table of
benchmarks/data/seed000_tables.json (the better of its native and its own builds, 1 thread pinned) and "x faster"
= seed / ours, only when that table has this CPU kind; otherwise the report says "no side-by-side seed figure for
this CPU". The published figures of the seed's post (AMD Threadripper 2950X, ns x threads) are shown in their own
column, labelled, and no ratio is taken against them: they are another CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TABLES = Path(__file__).resolve().parent / "data" / "seed000_tables.json"    # the seed's published numbers
sys.path.insert(0, str(Path(__file__).resolve().parent))

GLOBAL_ROWS = [(32, o) for o in (8, 16, 32, 64, 128, 256)] + [(i, 32) for i in (8, 16, 64, 128, 256)] + \
              [(64, 64), (128, 128), (1024, 1024)]
SEG_ROWS = [(32, 32, 1), (32, 32, 2), (32, 32, 3), (32, 32, 4), (128, 128, 2), (1024, 1024, 2)]
QUICK = {("global", 32, 32), ("global", 128, 128), ("global", 1024, 1024), ("segmented", 32, 32, 1),
         ("segmented", 32, 32, 2), ("segmented", 32, 32, 4), ("segmented", 128, 128, 2),
         ("segmented", 1024, 1024, 2)}
STAGES = ("args", "forward", "head", "deltas", "fc")
NO_SIDE_BY_SIDE = "no side-by-side seed figure for this CPU"


def rows(quick: bool) -> list:
    out = [("global", i, o, None) for i, o in GLOBAL_ROWS] + [("segmented", i, o, s) for i, o, s in SEG_ROWS]
    return [r for r in out if not quick or (r[:3] if r[3] is None else r) in QUICK]


def side_by_side(tables, cpu: str, head: str, cin: int, cout: int, seg) -> tuple | None:
    """(ns/param, impl, build) of the seed's best on CPU kind `cpu` for this row, or None."""
    best = None
    for r in tables.get("side_by_side", {}).get("rows", []):
        if (r["cpu"], r["head"], r["in"], r["out"], r["segments"]) == (cpu, head, cin, cout, seg):
            if best is None or r["ns_per_param"] < best[0]:
                best = (r["ns_per_param"], r["impl"], r["build"])
    return best


def published(tables, head: str, cin: int, cout: int) -> tuple | None:
    """(ns/param, impl) of the seed's post (AMD Threadripper 2950X; global head rows only), or None."""
    best = None
    if head == "global":
        for impl, thr, i, o, n, ms, ns in tables["post"]:
            if (i, o) == (cin, cout) and (best is None or ns < best[0]):
                best = (ns, impl)
    return best


# --------------------------------------------------------------------------------------------------- worker
def worker(threads: int, quick: bool, repeat: int, rounds: int) -> dict:
    """Measure every row on this process's TVM_NUM_THREADS threads: {"ceiling": G bit-MAC/s, "rows": [...]}.
    All rows are compiled first, then measured in `rounds` rounds over the rows (each round `repeat` calls and
    a profile of `repeat` calls per row), keeping each row's best: a burst of other jobs on a shared machine
    then spoils one round of a row, not the row."""
    import warnings
    warnings.filterwarnings("ignore", message="no tuning record")
    import convsched as cs
    from convsched.backend import peaks
    host = cs.target.host()
    ceiling = peaks.bit_peak(host, threads, cache=False).value
    cases = []
    for head, cin, cout, seg in rows(quick):
        kw = dict(h=32, w=32, cin=cin, cout=cout, classes=10, head=head)
        if seg:
            kw["segments"] = (seg, seg)
        one = cs.layers.LossDelta(**kw)
        batch = one.tuning_batch()                        # 64 examples, fewer for big layers: what the tuner times
        layer = cs.layers.LossDelta(**kw, n=batch)
        k = cs.compile(one)
        xs = layer.random_inputs(1)
        k(*xs)                                            # warm up (work buffers, the first touch of the output)
        cases.append(dict(head=head, segments=seg, cin=cin, cout=cout, batch=batch, layer=layer, kernel=k,
                          inputs=xs, best=1e30, profile={}))
    for _ in range(rounds):
        for c in cases:
            k, xs = c["kernel"], c["inputs"]
            for _ in range(repeat):
                t0 = time.perf_counter()
                d = k(*xs)
                c["best"] = min(c["best"], time.perf_counter() - t0)
                del d                                     # (the kernel reuses a result nobody holds)
            for stage, ms in k.profile(xs, repeat=repeat).items():
                c["profile"][stage] = min(c["profile"].get(stage, 1e30), ms)
    out = []
    for c in cases:
        batch, layer = c["batch"], c["layer"]
        out.append(dict(head=c["head"], segments=c["segments"], cin=c["cin"], cout=c["cout"], batch=batch,
                        n_params=layer.n_params(), ops_per_example=layer.ops() // batch,
                        s_per_example=c["best"] / batch,
                        profile_ms_per_example={s: v / batch for s, v in c["profile"].items()}))
        print(f"  [{threads} thread(s)] {c['head']} {c['segments'] or ''} {c['cin']}->{c['cout']}: "
              f"{c['best'] / batch * 1e3:.3f} ms/example", file=sys.stderr, flush=True)
    return {"ceiling": ceiling, "rows": out}


def run_worker(threads: int, quick: bool, repeat: int, rounds: int) -> dict:
    """A worker process with `threads` TVM threads (set before TVM starts), pinned where taskset exists."""
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", str(threads), "--repeat", str(repeat), "--rounds", str(rounds)] + \
        (["--quick"] if quick else [])
    cores = os.cpu_count() or 1
    if shutil.which("taskset") and cores >= 2:
        cmd = ["taskset", "-c", "1" if threads == 1 else ",".join(str(c) for c in range(threads))] + cmd
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------- report
def report(one: dict, two: dict | None, tables, cpu: str) -> tuple[str, list]:
    ceiling = one["ceiling"]
    lines, results = [], []
    head = (f"{'head':9} {'seg':>3} {'in':>5} {'out':>5} {'n params':>9} {'ms/ex':>8} {'ns/pixbit':>9} "
            f"{'ns/chan':>9} {'ns/param':>8} {'floor':>6} {'x floor':>7} {'fwd %':>5} {'2t ns/param':>11} "
            f"{'2t speedup':>10} | {'seed here':>15} {'x faster':>8} | {'seed post (2950X)':>17}")
    lines.append(head)
    seen_side_by_side = False
    two_rows = {(r["head"], r["cin"], r["cout"], r["segments"]): r for r in (two or {}).get("rows", [])}
    for r in one["rows"]:
        key = (r["head"], r["cin"], r["cout"], r["segments"])
        per = r["s_per_example"]
        ns_param = per * 1e9 / r["n_params"]
        floor = r["ops_per_example"] / (ceiling * 1e9) * 1e9 / r["n_params"]
        fwd = r["ops_per_example"] / (r["profile_ms_per_example"]["forward"] * 1e-3) / 1e9 / ceiling
        r2 = two_rows.get(key)
        ns2 = r2["s_per_example"] * 1e9 / r["n_params"] if r2 else None
        sbs = side_by_side(tables, cpu, *key[:3], key[3])
        seen_side_by_side |= sbs is not None
        post = published(tables, *key[:3])
        lines.append(
            f"{r['head']:9} {r['segments'] or '':>3} {r['cin']:>5} {r['cout']:>5} {r['n_params']:>9} "
            f"{per * 1e3:8.3f} {per * 1e9 / (32 * 32 * r['cin']):9.2f} {per * 1e9 / r['cout']:9.1f} "
            f"{ns_param:8.2f} {floor:6.2f} {ns_param / floor:7.2f} {fwd:5.0%} "
            f"{(f'{ns2:.2f}' if ns2 else '-'):>11} {(f'{ns_param / ns2:.2f}x' if ns2 else '-'):>10} | "
            f"{(f'{sbs[0]:.1f} (i{sbs[1]} {sbs[2]})' if sbs else '-'):>15} "
            f"{(f'{sbs[0] / ns_param:.1f}' if sbs else '-'):>8} | "
            f"{(f'{post[0]:.1f} (i{post[1]})' if post else '-'):>17}")
        results.append(dict(head=r["head"], segments=r["segments"], cin=r["cin"], cout=r["cout"],
                            n_params=r["n_params"], batch=r["batch"], ms_per_example=per * 1e3,
                            ns_per_param=ns_param, floor_ns_per_param=floor, x_floor=ns_param / floor,
                            forward_of_ceiling=fwd, ns_per_param_2_threads=ns2,
                            speedup_2_threads=ns_param / ns2 if ns2 else None,
                            seed_side_by_side=sbs, x_faster_than_seed=sbs[0] / ns_param if sbs else None,
                            seed_published_2950x=post, ceiling_gops=ceiling,
                            profile_us_per_example={k: v * 1e3 for k, v in r["profile_ms_per_example"].items()}))
    if not seen_side_by_side:
        lines.append(f"# {NO_SIDE_BY_SIDE} (LLVM {cpu}): the side_by_side table has "
                     f"{sorted({x['cpu'] for x in tables.get('side_by_side', {}).get('rows', [])}) or 'none'}")
    lines += ["", "per-stage profile, 1 thread, us per example (args: checks + packing; forward: conv + "
              "classification; head: class scores; deltas: the sparse delta stage; fc: FC deltas)",
              f"{'head':9} {'seg':>3} {'in':>5} {'out':>5} " + " ".join(f"{s:>9}" for s in STAGES) + f" {'total':>9}"]
    for r in one["rows"]:
        p = r["profile_ms_per_example"]
        lines.append(f"{r['head']:9} {r['segments'] or '':>3} {r['cin']:>5} {r['cout']:>5} " +
                     " ".join(f"{p[s] * 1e3:9.1f}" for s in STAGES) + f" {p['total'] * 1e3:9.1f}")
    return "\n".join(lines), results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the rows of the goals only")
    ap.add_argument("--repeat", type=int, default=5, help="calls per row and round (best kept), also per profiled "
                                                          "stage")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all rows (each row's best kept)")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1 or 1,2")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    from common import StdoutCopy, add_json_option, save_run
    add_json_option(ap)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick, args.repeat, args.rounds)))
        return 0
    import convsched as cs
    host = cs.target.host()
    tables = json.loads(TABLES.read_text())
    counts = [int(t) for t in args.threads.split(",")]
    runs = {t: run_worker(t, args.quick, args.repeat, args.rounds) for t in counts}
    printed = StdoutCopy()
    print(f"# host: {cs.target.cpu_model_name()} (LLVM {host.mcpu}, modelled as {host.model.name}), "
          f"{host.vector_bits}-bit vectors, popcount {host.popcount}; 32x32 images, 10 classes; convsched "
          f"{cs.__version__}")
    print(f"# xor+popcount+add ceiling (bit-GEMM microkernel, measured in each worker): "
          + ", ".join(f"{t} thread(s) {r['ceiling']:.0f} G bit-MAC/s" for t, r in runs.items())
          + "; floor = the forward conv alone at the 1-thread ceiling, per parameter")
    text, results = report(runs[counts[0]], runs.get(2) if counts[0] == 1 else None, tables, host.mcpu)
    print(text)
    save_run(args.json, "loss_delta", printed.text(), results,
             notes="workers pinned with taskset (1 thread: core 1; 2 threads: cores 0,1); each row the best of "
                   f"{args.rounds} rounds x {args.repeat} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
