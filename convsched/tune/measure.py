"""Measuring candidates in isolated worker processes.

Each worker is a separate (spawned) Python process that builds a candidate, checks its output against
layer.reference() on random inputs, and only then times it. A candidate that segfaults, hangs, fails to build
or computes a wrong answer costs one worker process at most: the parent records it as failed, kills the
worker if needed and starts a fresh one, and the search goes on.

Local measurement: builds and checks run in parallel (one worker per core by default), but only one
candidate is timed at a time, and while it is timed the other workers are paused (SIGSTOP/SIGCONT), so a
timing never shares the cores with a build of ours. (Other users of the machine still add noise.)
Timings: warm-up (the correctness run, then TVM's own warm-up call), then `repeat` measurements of at least
`min_repeat_ms` each; median, p10 and p90 are recorded.

Confirmation (`Measurer.confirm`): at the end of a session the tuner has one worker build its top candidates
and time them in interleaved rounds (every candidate once per round, the order rotated), so that all of them
see the same machine state; the spread over rounds is what a single measurement cannot show.

RPC measurement (`rpc=("host:port", key)`): workers build locally, in parallel, and send the library to a
server registered under `key` on TVM's RPC tracker, which checks and times it there (the tracker hands each
server one session at a time).

Over 400 lines: the worker pool, its timeouts and its crash handling are one state machine.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

import numpy as np

from ..backend.rpc import remote_run_and_time
from ..errors import BuildError, ScheduleError
from ..kernel import Timing, as_kernel_arg, compile
from ..schedule import add_template_dir, get_template, user_template_dirs
from ..target import host_cores
from .space import Candidate

START_TIMEOUT_S = 120.0          # spawning a worker and importing TVM (slow on a loaded machine)
CONFIRM_REPEAT = 3               # measurements per candidate and round of a confirmation (their median counts)


def _scale(task) -> int:
    """How many candidates' worth of time a task may take (a confirmation builds and times several)."""
    return len(task.candidates) * max(1, task.rounds) if isinstance(task, _ConfirmTask) else 1


@dataclass
class Result:
    candidate: Candidate
    status: str                       # "ok" or one of records.FAILED_STATUSES
    timing: dict | None = None        # median_ms, p10_ms, p90_ms, runs
    rate: float | None = None         # giga-ops per second at the median
    unit: str | None = None
    error: str | None = None
    build_s: float | None = None
    measured_on: str = "local"
    template_hash: str | None = None
    round_ms: list | None = None      # confirm: the median of each interleaved round

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------ worker side
def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:600]


def _worker_entry(fd: int):
    """A worker process: `python -c "...; _worker_entry(fd)"` with one end of a socketpair as fd."""
    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the parent's to handle
    init = pickle.loads(conn.recv_bytes())            # sys.path first: tasks may name layers of user modules
    _die_with_parent(init.get("parent_pid"))
    sys.path[:] = init["sys_path"]
    for d in reversed(init.get("template_dirs", [])):      # the parent's add_template_dir() calls
        add_template_dir(d)
    _worker_main(conn)


def _die_with_parent(parent_pid):
    """A tuner killed with SIGKILL cannot stop its workers: have Linux kill this one when the parent dies
    (a worker stuck in a candidate's endless loop would otherwise run forever)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))     # PR_SET_PDEATHSIG
    except Exception:
        pass
    if parent_pid and os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(1)


def _worker_main(conn):
    refs = {}
    conn.send(("up", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        if msg[0] == "confirm":
            if not _confirm(conn, *msg[1:]):
                return
            continue
        _, task, layer, target, template, knobs, opts = msg
        out = {"status": "ok"}
        try:
            t0 = time.perf_counter()
            k = compile(layer, template=template, knobs=knobs, target=target)
            out["build_s"] = time.perf_counter() - t0
            # the source the kernel was built from (a template edited mid-run must not lend its new hash)
            out["template_hash"] = get_template(template).source_hash
            seed = opts.get("seed", 0)
            wk = (layer.workload_key, seed)
            if wk not in refs:
                # layers may name other inputs and a faster exact oracle for tuning (LossDelta: the benchmark's
                # batch; reference() is per-mutation recomputation, hours at 1024->1024, so fast_numpy there)
                xs = getattr(layer, "tuning_inputs", layer.random_inputs)(seed)
                oracle = getattr(layer, "tuning_reference", layer.reference)
                odd, odd_want = layer.nonfinite_inputs(seed), None  # inf, -inf, NaN planted: must match too
                try:
                    with np.errstate(invalid="ignore", over="ignore"):      # inf - inf is expected there
                        odd_want = None if odd is None else layer.reference(*odd)
                except Exception:       # a reference that refuses inf/NaN makes no promise about them
                    odd = None
                refs.clear()
                refs[wk] = (xs, oracle(*xs), odd, odd_want)
            xs, want, odd, odd_want = refs[wk]
            if opts.get("rpc"):
                def kernel_args(arrays):
                    return [as_kernel_arg(a, spec, "input")
                            for a, spec in zip(layer.prepare_inputs(list(arrays)), layer.input_specs())]
                outs, secs, odd_outs = remote_run_and_time(
                    k._built, kernel_args(xs), layer.output_specs(), opts["rpc"], opts["repeat"],
                    opts["min_repeat_ms"], opts["timeout"], also=[] if odd is None else [kernel_args(odd)])
                why = layer.mismatch(layer.finish_outputs(outs), want)
                if why:
                    raise _Wrong(why)
                if odd is not None:
                    _check_nonfinite(layer, layer.finish_outputs(odd_outs[0]), odd_want)
                t = Timing.from_ms(np.asarray(secs) * 1e3, None, layer.ops() * layer.flops_per_op, layer.op_unit)
            else:
                why = layer.mismatch(k(*xs), want)          # also the first warm-up call
                if why:
                    raise _Wrong(why)
                if odd is not None:
                    _check_nonfinite(layer, k(*odd), odd_want)
                conn.send(("ready", task, out["build_s"]))
                if conn.recv() != ("time", task):
                    return
                t = k.benchmark(repeat=opts["repeat"], min_repeat_ms=opts["min_repeat_ms"], arrays=xs,
                                call_time=False)
            out.update(timing=t.record_fields(), rate=t.rate, unit=t.unit)
        except _Wrong as e:
            out = {**out, "status": "wrong", "error": str(e)}
        except ScheduleError as e:          # an illegal schedule or knob (KnobError is one)
            out = {**out, "status": "invalid", "error": str(e)}
        except BuildError as e:
            out = {**out, "status": "build_error", "error": str(e)}
        except Exception as e:
            out = {**out, "status": "run_error" if "build_s" in out else "error",
                   "error": _short(e) + " | " + traceback.format_exc(limit=2)[-300:]}
        conn.send(("done", task, out))


class _Wrong(Exception):
    pass


def _check_nonfinite(layer, got, want):
    why = layer.mismatch(got, want)
    if why:
        raise _Wrong(f"on inputs with inf, -inf and NaN (Layer.nonfinite_inputs): {why}")


def _confirm(conn, task, layer, target, configs, opts) -> bool:
    """Build and check every (template, knobs) of `configs`, then, once the parent says "time", time them in
    opts["rounds"] interleaved rounds. Sends ("done", task, [per-config outcome]); False if told to stop."""
    t0 = time.perf_counter()
    xs = getattr(layer, "tuning_inputs", layer.random_inputs)(opts.get("seed", 0))
    want = getattr(layer, "tuning_reference", layer.reference)(*xs)
    kernels, outs = [], []
    for template, knobs in configs:
        try:
            k = compile(layer, template=template, knobs=knobs, target=target)
            why = layer.mismatch(k(*xs), want)
            if why:
                raise _Wrong(why)
            kernels.append(k)
            outs.append({"status": "ok", "template_hash": get_template(template).source_hash, "round_ms": []})
        except Exception as e:
            kernels.append(None)
            outs.append({"status": "wrong" if isinstance(e, _Wrong) else "error", "error": _short(e)})
    conn.send(("ready", task, time.perf_counter() - t0))
    if conn.recv() != ("time", task):
        return False
    live = [i for i, k in enumerate(kernels) if k is not None]
    timings = {}
    for r in range(opts["rounds"] if live else 0):
        for i in live[r % len(live):] + live[:r % len(live)]:        # rotated: no candidate always goes first
            t = kernels[i].benchmark(repeat=opts["repeat"], min_repeat_ms=opts["min_repeat_ms"], arrays=xs,
                                     call_time=False)
            outs[i]["round_ms"].append(t.median_ms)
            timings[i] = t
    for i in live:
        t = Timing.from_ms(outs[i]["round_ms"], timings[i].threads, timings[i].ops, layer.op_unit)
        outs[i].update(timing=t.record_fields(), rate=t.rate, unit=t.unit)
    conn.send(("done", task, outs))
    return True


@dataclass(frozen=True)
class _ConfirmTask:
    """A confirmation handed to one worker: several candidates, timed in interleaved rounds."""
    candidates: tuple
    rounds: int


# ------------------------------------------------------------------------------------------ parent side
@dataclass
class _Worker:
    proc: object
    conn: object
    state: str = "starting"           # starting | idle | building | ready | timing
    task: int | None = None
    deadline: float = 0.0
    stopped_at: float | None = None
    pid: int | None = None
    extra: dict = field(default_factory=dict)


class Measurer:
    """Measures batches of candidates for one layer and target in worker processes.

        with Measurer(layer, target, workers=2, timeout=20) as m:
            for result in m.measure(candidates):   # yields Results as they complete
                ...
    """

    def __init__(self, layer, target, workers: int | None = None, timeout: float = 20.0, repeat: int = 7,
                 min_repeat_ms: int = 10, rpc: tuple | None = None, seed: int = 0):
        self.layer, self.target = layer, target
        self.n_workers = max(1, workers or target.cores)
        self.timeout = float(timeout)
        self.opts = {"repeat": repeat, "min_repeat_ms": min_repeat_ms, "seed": seed, "rpc": rpc,
                     "timeout": timeout}
        self.measured_on = f"rpc:{rpc[1]}@{rpc[0]}" if rpc else "local"
        self.workers: list[_Worker | None] = [None] * self.n_workers
        # threads for timing: the target's cores, but never more than this process may run on (a tuner pinned
        # to one core with `taskset -c 1` times 1 thread, not 2 threads sharing a core) or than an explicit
        # TVM_NUM_THREADS asks for; the records store it (timing.threads)
        threads = min(target.cores, host_cores(), int(os.environ.get("TVM_NUM_THREADS") or target.cores))
        self.env = {**os.environ, "TVM_NUM_THREADS": str(max(1, threads))}

    # -- lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for i, w in enumerate(self.workers):
            if w is not None:
                self._kill(w, graceful=True)
                self.workers[i] = None

    def _start(self, i):
        # A fresh interpreter (not fork: TVM's threads; not multiprocessing's spawn: it re-runs the user's
        # __main__), talking over a socketpair.
        a, b = socket.socketpair()
        code = f"from convsched.tune.measure import _worker_entry; _worker_entry({b.fileno()})"
        p = subprocess.Popen([sys.executable, "-c", code], pass_fds=(b.fileno(),), env=self.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        b.close()
        conn = Connection(a.detach())
        conn.send_bytes(pickle.dumps({"sys_path": list(sys.path), "parent_pid": os.getpid(),
                                      "template_dirs": [str(d) for d in user_template_dirs()]}))
        w = _Worker(p, conn, deadline=time.monotonic() + START_TIMEOUT_S)
        self.workers[i] = w
        return w

    def _kill(self, w: _Worker, graceful=False):
        try:
            if graceful and w.proc.poll() is None and w.state in ("idle", "starting"):
                try:
                    w.conn.send(None)
                    w.proc.wait(2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if w.proc.poll() is None:
                w.proc.kill()          # SIGKILL also ends a SIGSTOPped process
            try:
                w.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            try:
                w.conn.close()
            except OSError:
                pass

    # -- the loop
    def measure(self, candidates):
        pending = list(candidates)
        tasks: dict[int, Candidate] = {}
        next_id = 0
        while pending or any(w is not None and w.state not in ("idle", "starting") for w in self.workers):
            now = time.monotonic()
            # hand out work
            for i in range(self.n_workers):
                w = self.workers[i]
                if w is None and pending:
                    w = self._start(i)
                if w is not None and w.state == "idle" and pending:
                    c = pending.pop(0)
                    tasks[next_id] = c
                    w.task, w.state, w.deadline = next_id, "building", now + self.timeout * _scale(c)
                    if isinstance(c, _ConfirmTask):
                        msg = ("confirm", next_id, self.layer, self.target,
                               [(x.template, x.knob_dict) for x in c.candidates],
                               {**self.opts, "rounds": c.rounds, "repeat": CONFIRM_REPEAT})
                    else:
                        msg = ("build", next_id, self.layer, self.target, c.template, c.knob_dict, self.opts)
                    try:
                        w.conn.send(msg)
                    except (OSError, BrokenPipeError):
                        pass               # noticed below as a dead worker
                    next_id += 1
            # one timing at a time, with the other workers paused
            if not any(w is not None and w.state == "timing" for w in self.workers):
                ready = [w for w in self.workers if w is not None and w.state == "ready"]
                if ready:
                    w = ready[0]
                    for o in self.workers:
                        if o is not None and o is not w and o.state == "building" and o.stopped_at is None:
                            self._signal(o, signal.SIGSTOP)
                            o.stopped_at = now
                    w.state, w.deadline = "timing", now + self.timeout * _scale(tasks[w.task])
                    w.conn.send(("time", w.task))
            live = [w for w in self.workers if w is not None]
            if not live:
                continue
            running = [w for w in live if w.stopped_at is None and w.state in ("starting", "building", "timing")]
            horizon = min((w.deadline for w in running), default=now + 1.0)
            ready_conns = wait([w.conn for w in live], timeout=max(0.0, min(horizon - now, 1.0)))
            for w in list(live):
                i = self.workers.index(w)
                if w.conn in ready_conns:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None:
                        res = self._on_message(w, msg, tasks)
                        if res is not None:
                            yield res
                        continue
                if w.conn in ready_conns or w.proc.poll() is not None:
                    try:
                        w.proc.wait(2)
                    except subprocess.TimeoutExpired:
                        pass
                    code = w.proc.returncode
                    why = (f"worker died of {signal.Signals(-code).name}" if code is not None and code < 0
                           else f"worker exited with status {code}")
                    self._finish_timing_pause(w)
                    self.workers[i] = None
                    self._kill(w)
                    if w.task is not None and w.state != "starting":
                        yield Result(tasks.pop(w.task), "crash", error=why, measured_on=self.measured_on)
                    elif w.state == "starting":
                        raise RuntimeError(f"measurement worker failed to start: {why}")
                    continue
            now = time.monotonic()
            for i, w in enumerate(self.workers):
                if w is None or w.stopped_at is not None or w.state in ("idle", "ready"):
                    continue
                if now > w.deadline:
                    self._finish_timing_pause(w)
                    self.workers[i] = None
                    self._kill(w)
                    if w.state == "starting":
                        raise RuntimeError(f"measurement worker did not start within {START_TIMEOUT_S:.0f} s")
                    phase = "timing" if w.state == "timing" else "building and checking"
                    yield Result(tasks.pop(w.task), "timeout", measured_on=self.measured_on,
                                 error=f"{phase} took longer than {self.timeout:g} s; worker killed")

    def confirm(self, candidates, rounds: int) -> list:
        """Time `candidates` again in `rounds` interleaved rounds in one worker: [Result] (timing over the
        rounds, round_ms per round), or failed Results if the worker crashed or timed out."""
        if self.opts["rpc"]:
            raise ValueError("confirmation runs on local measurement only")
        task = _ConfirmTask(tuple(candidates), int(rounds))
        out = []
        for res in self.measure([task]):
            out = res if isinstance(res, list) else [Result(c, res.status, error=res.error,
                                                              measured_on=self.measured_on)
                                                       for c in task.candidates]
        return out

    def _signal(self, w, sig):
        try:
            os.kill(w.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _finish_timing_pause(self, w):
        """After a timing ends (or its worker dies): resume the paused builders, extending their deadlines."""
        if w.state != "timing":
            return
        now = time.monotonic()
        for o in self.workers:
            if o is not None and o.stopped_at is not None:
                self._signal(o, signal.SIGCONT)
                o.deadline += now - o.stopped_at
                o.stopped_at = None

    def _on_message(self, w, msg, tasks):
        kind = msg[0]
        if kind == "up":
            w.state, w.pid = "idle", msg[1]
            return None
        if kind == "ready":
            w.state = "ready"
            return None
        if kind == "done":
            _, task, out = msg
            self._finish_timing_pause(w)
            w.state, w.task = "idle", None
            c = tasks.pop(task)
            if isinstance(c, _ConfirmTask):
                return [Result(x, o["status"], timing=o.get("timing"), rate=o.get("rate"), unit=o.get("unit"),
                               error=o.get("error"), measured_on=self.measured_on,
                               template_hash=o.get("template_hash"), round_ms=o.get("round_ms"))
                        for x, o in zip(c.candidates, out)]
            return Result(c, out["status"], timing=out.get("timing"), rate=out.get("rate"), unit=out.get("unit"),
                          error=out.get("error"), build_s=out.get("build_s"), measured_on=self.measured_on,
                          template_hash=out.get("template_hash"))
        return None
