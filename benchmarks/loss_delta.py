"""Loss-delta layer vs the seed (is8ac/bnn), on the seed's own table shapes, 1 thread.

    .venv/bin/python benchmarks/loss_delta.py            # every row of the seed's tables (a few minutes)
    .venv/bin/python benchmarks/loss_delta.py --quick    # 32->32 (both heads) and 128->128
    .venv/bin/python benchmarks/loss_delta.py --json out.json

Columns are the seed's: version, threads, input pixel size (in), output pixel size (out), n params, ms per
example, ns per pixel bit (per example / (32*32*in)), ns per channel (per example / out), ns per parameter.
n params is counted as the seed does: 9*in*out + 10*out for the global head, conv weights only (9*in*out) for
the segmented head. Images are 32x32 random bits, 10 classes. Beside ours: the seed's best published number for
that shape ("post", any implementation, AMD Threadripper 2950X, ns x threads) and the seed rebuilt on the
project's machine kind ("here", 1 thread), from benchmarks/data/seed000_tables.json, and the ratio
seed-best / ours (how many times faster we are than the best of the two).
Our time is the whole call: packing, forward XOR-popcount conv, classify, numpy glue, delta kernel, FC
deltas; the batch is summed (reduce="sum"), best of --repeat calls, divided by the batch size.

The physical bound: the forward conv alone is 900 * 9 * in * out bit-MACs per example; at this host's
measured xor+popcount+add ceiling (bit-GEMM microbenchmark, printed first: ~322 G bit-MAC/s per core on Zen 3
without VPOPCNTDQ) that is the "floor" column in ns per parameter, ~2.8 ns/param on every row (2.45-2.79 for
the global head, whose parameter count includes the FC). "100x goal" is the seed's best / 100. Where the goal
is below the floor (segmented 128->128 and 1024->1024: 1.89 ns/param), 100x needs more than this core's
ceiling even with zero time spent outside the forward conv. --profile prints each part per example and the
forward conv's own rate.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"      # the seed's rows we compare with are per thread
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import convsched as cs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import StdoutCopy, add_json_option, save_run  # noqa: E402

warnings.filterwarnings("ignore", message="no tuning record")
TABLES = Path(__file__).resolve().parent / "data" / "seed000_tables.json"    # the seed's published numbers

GLOBAL_ROWS = [(32, o) for o in (8, 16, 32, 64, 128, 256)] + [(i, 32) for i in (8, 16, 64, 128, 256)] + \
              [(64, 64), (128, 128), (1024, 1024)]
SEG_ROWS = [(32, 32, 1), (32, 32, 2), (32, 32, 3), (32, 32, 4), (128, 128, 2), (1024, 1024, 2)]
QUICK = {("global", 32, 32), ("segmented", 32, 32, 2), ("global", 128, 128), ("segmented", 128, 128, 2)}


def seed_best(tables, head, cin, cout, seg=None):
    """(best post ns/param, impl), (best here ns/param, impl) for this shape, or None."""
    post = here = None
    if head == "global":
        for impl, thr, i, o, n, ms, ns in tables["post"]:
            if (i, o) == (cin, cout) and (post is None or ns < post[0]):
                post = (ns, impl)
        for impl, thr, i, o, n, ms, ns in tables["here"]:
            if (i, o) == (cin, cout) and (here is None or ns < here[0]):
                here = (ns, impl)
    else:
        for impl, s, thr, i, o, n, ms, ns in tables["here_fused_segmented"]["rows"]:
            if (i, o, s) == (cin, cout, seg) and (here is None or ns < here[0]):
                here = (ns, impl)
    return post, here


def measure(layer, batch, repeat):
    k = cs.compile(layer)
    xs = cs.layers.LossDelta(**{**layer.params(), "n": batch}).random_inputs(1)
    k(*xs)                                            # warm up (first call also builds nothing new)
    best = 1e30
    for _ in range(repeat):
        t0 = time.perf_counter()
        k(*xs)
        best = min(best, time.perf_counter() - t0)
    return best / batch, k


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    add_json_option(ap)
    ap.add_argument("--profile", action="store_true", help="print the time of each part per row")
    args = ap.parse_args(argv)
    printed = StdoutCopy()
    tables = json.loads(TABLES.read_text())
    host = cs.target.host()
    from convsched.backend import num_threads, peaks
    ceiling = peaks.bit_peak(host, num_threads(), cache=False).value
    print(f"# host: {cs.target.cpu_model_name()} (LLVM {host.mcpu}, modelled as {host.model.name}), "
          f"{host.vector_bits}-bit vectors, popcount {host.popcount}; {num_threads()} thread(s) (TVM_NUM_THREADS); "
          f"32x32 images, 10 classes; convsched {cs.__version__}")
    print(f"# this host's xor+popcount+add ceiling (bit-GEMM microbenchmark, measured now on {num_threads()} "
          f"thread(s)): {ceiling:.0f} G bit-MAC/s; floor = the forward conv alone at that rate, per parameter; "
          f"goal = seed best / 100")
    hdr = (f"{'head':10} {'seg':>3} {'version':9} {'thr':>3} {'in':>5} {'out':>5} {'n params':>9} {'ms/ex':>9} "
           f"{'ns/pixbit':>9} {'ns/chan':>9} {'ns/param':>9} | {'seed post':>14} {'seed here':>14} {'x faster':>8} | "
           f"{'goal':>6} {'floor':>6}")
    print(hdr)
    rows = [("global", i, o, None) for i, o in GLOBAL_ROWS] + [("segmented", i, o, s) for i, o, s in SEG_ROWS]
    out = []
    for head, cin, cout, seg in rows:
        key = (head, cin, cout) if seg is None else (head, cin, cout, seg)
        if args.quick and key not in QUICK:
            continue
        kw = dict(h=32, w=32, cin=cin, cout=cout, classes=10, head=head)
        if seg:
            kw["segments"] = (seg, seg)
        layer = cs.layers.LossDelta(**kw)
        batch = max(2, min(64, 2 ** 22 // (cin * cout)))
        per, k = measure(layer, batch, args.repeat)
        ns_param = per * 1e9 / layer.n_params()
        post, here = seed_best(tables, head, cin, cout, seg)
        best_seed = min(v[0] for v in (post, here) if v) if (post or here) else None
        ratio = best_seed / ns_param if best_seed else None
        fmt = lambda v: f"{v[0]:9.1f} (i{v[1]})" if v else f"{'-':>14}"
        floor = layer.ops() / (ceiling * 1e9) * 1e9 / layer.n_params()        # layer.n = 1: one example
        goal = best_seed / 100 if best_seed else None
        print(f"{head:10} {seg or '':>3} {'convsched':9} {1:>3} {cin:>5} {cout:>5} {layer.n_params():>9} "
              f"{per * 1e3:9.3f} {per * 1e9 / (32 * 32 * cin):9.2f} {per * 1e9 / cout:9.1f} {ns_param:9.2f} | "
              f"{fmt(post)} {fmt(here)} {ratio:8.1f} | {goal:6.2f} {floor:6.2f}" if ratio else "", flush=True)
        prof = None
        if args.profile:
            prof = k.profile(cs.layers.LossDelta(**{**kw, "n": batch}).random_inputs(1), repeat=args.repeat)
            conv_rate = layer.ops() * batch / (prof["conv"] * 1e-3) / 1e9
            print("    per example ms: " + ", ".join(f"{a} {b / batch:.3f}" for a, b in prof.items()) +
                  f"; forward conv {conv_rate:.0f} G bit-MAC/s ({conv_rate / ceiling:.0%} of the ceiling)", flush=True)
        out.append(dict(head=head, segments=seg, threads=1, cin=cin, cout=cout, n_params=layer.n_params(),
                        batch=batch, ms_per_example=per * 1e3, ns_per_param=ns_param,
                        seed_post=post, seed_here=here, x_faster_than_seed_best=ratio,
                        goal_100x_ns_per_param=goal, floor_ns_per_param=floor, ceiling_gops=ceiling,
                        profile_ms_per_call=prof))
    save_run(args.json, "loss_delta", printed.text(), out,
             notes="1 thread (TVM_NUM_THREADS=1); pin it to one core (taskset) for steady numbers")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
