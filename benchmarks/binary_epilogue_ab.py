"""Interleaved A/B of the binary-bench layers: binary_conv2d/blocked as shipped vs the schedule it had before
the machine model (the int32 epilogue left to LLVM, the 64-channel layers' 16-accumulator tile), reproduced inline; the
xor+popcount+add ceiling measured in the same rounds. Run it pinned to one core:

    TVM_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/binary_epilogue_ab.py [rounds]

Medians over the rounds (each the best of >= 20 calls) with their spread; % of the best ceiling measured.
"""
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import convsched as cs  # noqa: E402
from common import best_time_ms  # noqa: E402
from convsched.backend import peaks  # noqa: E402
from convsched.kernel import aligned_empty, as_kernel_arg  # noqa: E402
from convsched.tune.suites import binary_bench  # noqa: E402

def before_schedule(co_vecs, ow_tile):
    def sch(s, layer):       # schedules/binary_conv2d/blocked.py before the machine model: "out" left to LLVM
        lanes = max(1, s.target.vector_bits // 64)
        count = s["count"]
        co_o, co_i = count.split("co", lanes * co_vecs)
        co_v, co_l = count.split(co_i, lanes, names=("co_v", "co_l"))
        ow_o, ow_i = count.split("ow", ow_tile)
        count.reorder("n", "oh", co_o, ow_o, "kh", "kw", "cw", ow_i, co_v, co_l)
        row = count.fuse("n", "oh", name="row")
        count.parallel(row)
        count.vectorize(co_l); count.unroll(co_v); count.unroll(ow_i)
        s["pad"].compute_at(count, row)
        s["out"].reverse_compute_at(count, ow_o)
        count.decompose_reduction("kh")
    return sch

# the old defaults on an AVX-512 host (the same tile rule without the stack limit): 64-channel layers 2 x 8
MAIN_KNOBS = {64: (2, 8)}
host = cs.target.host()
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
kern = {}
for layer in binary_bench():
    xs = layer.random_inputs(0); want = layer.reference(*xs)
    new = cs.compile(layer, template="binary_conv2d/blocked")
    kn = dict(new.schedule.knobs)
    mk = MAIN_KNOBS.get(layer.cin, (kn["co_vecs"], kn["ow_tile"]))      # the old defaults
    old = cs.compile(layer, schedule=before_schedule(*mk))
    for name, k in (("before", old), ("shipped", new)):
        assert np.array_equal(k(*xs), want), name
        args = [as_kernel_arg(a, s, "input") for a, s in zip(xs, layer.input_specs())]
        outs = [aligned_empty(s.shape, s.dtype) for s in layer.output_specs()]
        tile = {"co_vecs": mk[0], "ow_tile": mk[1]} if name == "before" else kn
        kern[(f"{layer.h}x{layer.w}x{layer.cin}", name)] = (k, args, outs, layer, tile)
res, ceil = {}, []
for r in range(rounds):
    ceil.append(peaks.measure_bit(host, 1, seconds=0.2)["gops"])
    for key, (k, args, outs, layer, kn) in kern.items():
        ms = best_time_ms(lambda: k._built(*args, *outs), min_calls=20, min_seconds=0.3)
        res.setdefault(key, []).append(layer.ops() / ms / 1e6)
c = max(ceil)
print(f"# {datetime.date.today()} {cs.target.cpu_model_name()} (LLVM {host.mcpu}, modelled as {host.model.name}), "
      f"1 thread, {rounds} interleaved rounds; ceiling (bit-GEMM microkernel, best of rounds): {c:.0f} G bit-MAC/s "
      f"(rounds: median {np.median(ceil):.0f}, {min(ceil):.0f}-{max(ceil):.0f})")
print(f"{'layer':12} {'before tile':>9} {'before G/s':>18} {'%':>4} {'tile':>8} {'shipped G/s':>18} {'%':>4}")
for lname in dict.fromkeys(k[0] for k in kern):
    kn, kn2 = kern[(lname, "before")][4], kern[(lname, "shipped")][4]
    cells = []
    for v in ("before", "shipped"):
        x = sorted(res[(lname, v)])
        cells += [f"{np.median(x):6.0f} ({x[0]:.0f}-{x[-1]:.0f})", f"{100 * np.median(x) / c:3.0f}%"]
    print(f"{lname:12} {kn['co_vecs']}v x {kn['ow_tile']}px {cells[0]:>18} {cells[1]:>4} "
          f"{kn2['co_vecs']}v x {kn2['ow_tile']}px {cells[2]:>18} {cells[3]:>4}")
