"""TVM's own tuner (MetaSchedule) on a convsched layer's TE compute: the peer of convsched's tuner.

    res = tune_metaschedule(layer, target, trials=64, work_dir="/tmp/ms")
    res["history"]   # [(trial, seconds since start when its batch was recorded, GFLOP/s)] in database order
    res["best_ms"], res["wall_s"], res["best_schedule"]  # and time_best(res) re-times the best one our way

The default builder imports tvm.s_tir.tensor_intrin in every worker (~15 s; builds time out on a busy
machine), so a plain tvm.tirx.build is used instead. The cost model is "random"
(xgboost is not installed); the search itself is MetaSchedule's evolutionary search over its own
post-order-apply space. Its database ignores the target: we give each run a fresh work_dir.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock


def _plain_build(mod, target, _params):
    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def prim_func(layer):
    decl = layer.declare()
    return te.create_prim_func(list(decl.inputs) + list(decl.outputs))


def tune_metaschedule(layer, target, trials: int, work_dir: str, per_iter: int = 16, timeout: float = 60.0,
                      seed: int = 0) -> dict:
    """Run MetaSchedule for `trials` measured candidates; the history of its database, best time, wall time."""
    os.makedirs(work_dir, exist_ok=True)
    func = prim_func(layer).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    tgt = tvm.target.Target(target.to_tvm())
    builder = ms.builder.LocalBuilder(f_build=_plain_build, timeout_sec=timeout)
    runner = ms.runner.LocalRunner(timeout_sec=timeout, evaluator_config=ms.runner.EvaluatorConfig(
        number=1, repeat=7, min_repeat_ms=10))
    t0 = time.monotonic()
    db = ms.tir_integration.tune_tir(mod, tgt, work_dir, max_trials_global=trials, num_trials_per_iter=per_iter,
                                     builder=builder, runner=runner, cost_model="random", seed=seed,
                                     num_tuning_cores=target.cores)
    wall = time.monotonic() - t0
    ops = layer.ops() * layer.flops_per_op
    history = []
    for i, rec in enumerate(_records(work_dir)):
        rate = (ops / float(sorted(rec)[len(rec) // 2]) / 1e9) if rec else 0.0     # at the median
        history.append((i + 1, rate))
    sch = db.query_schedule(mod, tgt, workload_name="main")
    best_rate = max((r for _, r in history), default=0.0)
    return {"history": history, "wall_s": wall, "best_rate": best_rate, "trials": len(history),
            "best_schedule": sch, "mod": mod, "target": tgt}


def _records(work_dir: str) -> list:
    """Run times (seconds) of every record in the JSON database, in the order measured ([] = failed)."""
    path = os.path.join(work_dir, "database_tuning_record.json")
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            # [workload index, [trace, run_secs, target, args_info]]
            body = rec[1]
            secs = [float(s) for s in (body[1] or [])]
            out.append([] if not secs or min(secs) >= 1e9 else secs)
    return out


def time_best(res: dict, layer, repeat: int = 15, min_repeat_ms: int = 20) -> float | None:
    """Median ms of MetaSchedule's best schedule, timed with the same time_evaluator settings as convsched."""
    sch = res["best_schedule"]
    if sch is None:
        return None
    ex = tvm.compile(sch.mod, target=res["target"])
    mod = ex.jit()
    dev = tvm.cpu(0)
    xs = layer.prepare_inputs(layer.random_inputs(0))
    args = [tvm.runtime.tensor(a, dev) for a in xs]
    outs = [tvm.runtime.empty(tuple(s.shape), s.dtype, dev) for s in layer.output_specs()]
    mod["main"](*args, *outs)
    want = layer.reference(*layer.random_inputs(0))
    rtol, atol = layer.tolerance()
    if not np.allclose(outs[0].numpy(), want, rtol=rtol, atol=atol):
        raise AssertionError("MetaSchedule's best schedule disagrees with the reference")
    ev = mod.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return float(np.median(ev(*args, *outs).results)) * 1e3


def export_best(res: dict, path: str) -> str | None:
    """MetaSchedule's best schedule, compiled and exported as a shared library (None if it found none)."""
    if res["best_schedule"] is None:
        return None
    tvm.compile(res["best_schedule"].mod, target=res["target"]).export_library(path)
    return path


def export_kernel(kernel, path: str) -> str:
    """A convsched Kernel's compiled function as a shared library."""
    kernel._built.executable.export_library(path)
    return path


def time_libraries_isolated(layer, paths: dict, rounds: int = 5, repeat: int = 5, min_repeat_ms: int = 20,
                            timeout: float = 600) -> dict:
    """{name: median ms} for exported libraries of `layer`, timed in ONE fresh process, interleaved (A B A B
    ...) so that load changes on a shared machine hit all of them alike. The tuning process's own state (thread
    pools left spinning by a tuner) cannot skew the result."""
    blob = pickle.dumps({"layer": layer, "paths": paths, "rounds": rounds, "repeat": repeat,
                         "min_repeat_ms": min_repeat_ms})
    code = "import sys; from convsched.backend.metaschedule import _time_main; _time_main()"
    p = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"timing process failed: {p.stderr.decode()[-2000:]}")
    return pickle.loads(p.stdout)


def _time_main():
    cfg = pickle.loads(sys.stdin.buffer.read())
    layer = cfg["layer"]
    dev = tvm.cpu(0)
    xs = layer.prepare_inputs(layer.random_inputs(0))
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in xs]
    outs = [tvm.runtime.empty(tuple(s.shape), s.dtype, dev) for s in layer.output_specs()]
    want = layer.reference(*layer.random_inputs(0))
    rtol, atol = layer.tolerance()
    evals, samples = {}, {}
    for name, path in cfg["paths"].items():
        mod = tvm.runtime.load_module(path)
        mod["main"](*args, *outs)
        if not np.allclose(outs[0].numpy(), want, rtol=rtol, atol=atol):
            raise AssertionError(f"{name}: output disagrees with the reference")
        evals[name] = mod.time_evaluator("main", dev, number=1, repeat=cfg["repeat"],
                                         min_repeat_ms=cfg["min_repeat_ms"])
        samples[name] = []
    for _ in range(cfg["rounds"]):
        for name, ev in evals.items():
            samples[name] += list(ev(*args, *outs).results)
    sys.stdout.buffer.write(pickle.dumps({n: float(np.median(s)) * 1e3 for n, s in samples.items()}))
