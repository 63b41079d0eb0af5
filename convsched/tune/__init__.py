"""The autotuner: search (template, knobs) for one workload and target, measure in isolated workers, log it.

    rec = cs.tune(layer, trials=64)                 # strategy "auto", local workers, the user's records dir
    rec = cs.tune(layer, trials=32, strategy="random", log="my_logs/", workers=2, timeout=20)
    rec = cs.tune(layer, trials=32, rpc_tracker="127.0.0.1:9190", rpc_key="zen3")
    k = cs.compile(layer)                           # now picks the best verified record

Every measured candidate (good or failed) is appended to the log as it completes, so a tuner that is killed
loses nothing it already measured, and a new run resumes: candidates already in the log for this workload,
target key and template source are not measured again (they count as history for the search), except those
that timed out, which a later run (with another timeout, on a quieter machine) measures again.

At the end of a session the tuner confirms: its top candidates by the log's robust statistic (records.choose)
and the layer's default configuration are built again in one worker and timed in `confirm_rounds` interleaved
rounds; each gets a "confirm" record (median and p10/p90 over the rounds), which lookup prefers to the search's
single measurements.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from .. import records
from .. import target as targets
from ..backend import check_environment, rpc
from ..errors import ConvschedError, TargetError
from ..layers import Layer
from ..paths import inside_package
from ..schedule import get_template
from .measure import Measurer, Result
from .space import Candidate, SearchSpace
from .strategies import STRATEGIES, Strategy, make_strategy, register_strategy

__all__ = ["tune", "TuneResult", "SearchSpace", "Candidate", "Strategy", "STRATEGIES", "register_strategy"]


@dataclass
class TuneResult:
    layer: object
    target: object
    log: str
    best: dict | None                   # the record of the chosen (template, knobs) (records.choose), or None
    records: list = field(default_factory=list)     # search records written by this run, in completion order
    confirmed: list = field(default_factory=list)   # confirm records written by this run
    prior: int = 0                      # records of this workload already in the log (resumed)
    elapsed_s: float = 0.0
    strategy: str = ""

    @property
    def template(self):
        return self.best and self.best["template"]

    @property
    def knobs(self):
        return self.best and dict(self.best["knobs"])

    @property
    def rate(self):
        return self.best and self.best["rate"]

    @property
    def failed(self) -> int:
        return sum(r["status"] != records.OK for r in self.records)

    def curve(self) -> list:
        """Best rate so far after each of this run's trials (0 until the first success)."""
        out, best = [], 0.0
        for r in self.records:
            if records.is_good(r):
                best = max(best, r["rate"] or 0.0)
            out.append(best)
        return out

    def __str__(self):
        head = (f"tuned {self.layer} on {self.target.key}: {len(self.records)} trials ({self.failed} failed, "
                f"{self.prior} resumed from the log) in {self.elapsed_s:.1f} s, strategy {self.strategy}")
        if not self.best:
            return head + "\n  no verified candidate"
        b = self.best
        knobs = " ".join(f"{k}={v}" for k, v in sorted(b["knobs"].items()))
        how = "confirmed" if records.is_confirm(b) else "single measurement"
        out = (f"{head}\n  best: {b['template']} {knobs}\n  {b['timing']['median_ms']:.3f} ms "
               f"(p10 {b['timing']['p10_ms']:.3f}, p90 {b['timing']['p90_ms']:.3f}; {how})  {b['rate']:.1f} "
               f"{b['unit']}")
        if self.confirmed:
            rounds = self.confirmed[0]["timing"]["runs"]
            out += f"\n  confirmed over {rounds} interleaved rounds (median ms, p10-p90):"
            for r in sorted(self.confirmed, key=lambda r: r["timing"]["median_ms"]):
                t = r["timing"]
                kn = " ".join(f"{k}={v}" for k, v in sorted(r["knobs"].items()))
                out += f"\n    {t['median_ms']:8.3f} ({t['p10_ms']:.3f}-{t['p90_ms']:.3f})  {r['template']} {kn}"
        return out + f"\n  log: {self.log}"


def _check_arguments(**values) -> None:
    """ValueError naming the argument for counts that are not positive integers and times that are not
    positive finite numbers (None: the default, where there is one)."""
    def whole(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))

    rules = {"trials": ("count", False), "workers": ("count", True), "repeat": ("count", False),
             "batch": ("count", True), "seed": ("int", False), "timeout": ("time", False),
             "time_budget_s": ("time", True), "min_repeat_ms": ("nonneg", False)}
    for name, v in values.items():
        kind, optional = rules[name]
        if v is None and optional:
            continue
        if kind == "count" and not (whole(v) and v >= 1):
            raise ValueError(f"tune: {name} must be a positive integer, got {v!r}")
        if kind == "int" and not whole(v):
            raise ValueError(f"tune: {name} must be an integer, got {v!r}")
        if kind == "time" and not (number(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"tune: {name} must be a positive number of seconds, got {v!r}")
        if kind == "nonneg" and not (number(v) and math.isfinite(v) and v >= 0):
            raise ValueError(f"tune: {name} must be a non-negative number, got {v!r}")


def _result_of(rec: dict) -> Result:
    return Result(Candidate.make(rec["template"], rec["knobs"]), rec["status"], timing=rec.get("timing"),
                  rate=rec.get("rate"), unit=rec.get("unit"), error=rec.get("error"))


def tune(layer, trials: int = 64, strategy="auto", target="host", workers: int | None = None,
         timeout: float = 20.0, log=None, templates=None, rpc_tracker: str | None = None,
         rpc_key: str | None = None, progress: bool = True, seed: int = 0, repeat: int = 7,
         min_repeat_ms: int = 10, time_budget_s: float | None = None, resume: bool = True,
         batch: int | None = None, confirm: int = 3, confirm_rounds: int = 5) -> TuneResult:
    """Measure up to `trials` new candidates for `layer` on `target`; return the best verified record.

    strategy: "auto" | "exhaustive" | "random" | "evolutionary" | a Strategy (see strategies.py).
    workers: parallel build/check processes (default: the target's cores). timeout: seconds per phase
    (build + check, timing) before a candidate is killed and recorded as "timeout".
    log: where records are written and resumed from: a .jsonl file or a directory (default: the user's records
    directory, $CONVSCHED_TUNING_LOGS or <cache>/tuning_logs: paths.user_records(); never inside the package).
    templates: restrict the search to these template names. rpc_tracker/rpc_key: measure on the servers
    registered under rpc_key with TVM's RPC tracker at host:port. time_budget_s: stop submitting new
    candidates after this many seconds (the ones in flight still finish). confirm: re-measure this many top
    candidates (plus the default configuration) in `confirm_rounds` interleaved rounds at the end (0: don't;
    local measurement only).
    """
    if not isinstance(layer, Layer):
        raise ValueError(f"tune: expected a layer (e.g. cs.layers.Conv2d(...)), got {layer!r}"[:300])
    _check_arguments(trials=trials, workers=workers, timeout=timeout, repeat=repeat, min_repeat_ms=min_repeat_ms,
                     seed=seed, time_budget_s=time_budget_s, batch=batch)
    if isinstance(templates, str):
        templates = [templates]
    check_environment()                 # before workers inherit a repaired copy of it
    tgt = targets.get(target)
    rpc_cfg = None
    if rpc_tracker or rpc_key:
        if not (rpc_tracker and rpc_key):
            raise ConvschedError("RPC measurement needs both rpc_tracker (host:port) and rpc_key")
        keys = rpc.queue_keys(rpc.check_tracker(rpc_tracker))
        if rpc_key not in keys:
            raise ConvschedError(f"no RPC server is registered under key '{rpc_key}' at {rpc_tracker} "
                                 f"(keys there: {', '.join(sorted(keys)) or 'none'})")
        rpc_cfg = (rpc_tracker, rpc_key)
    else:
        missing = tgt.missing_on(targets.host())
        if missing:
            raise TargetError(f"cannot measure {tgt.name} kernels on this host, which lacks "
                              f"{', '.join(missing)}; use an RPC tracker with servers of that CPU")
    space = SearchSpace(layer, tgt, templates)
    strat = make_strategy(strategy, space, trials, seed)
    path = records.log_path(tgt, log)
    if inside_package(path):
        raise ConvschedError(f"will not write tuning records into the installed package ({path}); give another "
                             f"log (--output), or leave it to the user's records directory")
    history, taken = [], set()
    logged = _session_records(layer, tgt, path, space, templates) if resume else []
    prior = [r for r in logged if not records.is_confirm(r)]   # confirm records re-measure candidates of these
    for r in prior:
        history.append(_result_of(r))
        if r["status"] != "timeout":        # a timeout says more about that run (its --timeout, the load) than
            taken.add(history[-1].candidate.key)   # about the candidate: measure it again
    best = records.best(logged)
    session = uuid.uuid4().hex[:12]
    n_workers = max(1, workers or tgt.cores)
    res = TuneResult(layer, tgt, str(path), best, prior=len(prior), strategy=strat.name)
    t0 = time.monotonic()
    bar = _progress(trials, layer, progress)
    _postfix(bar, best, 0)
    try:
        with Measurer(layer, tgt, workers=n_workers, timeout=timeout, repeat=repeat, min_repeat_ms=min_repeat_ms,
                      rpc=rpc_cfg, seed=seed) as m:
            while len(res.records) < trials:
                if time_budget_s is not None and time.monotonic() - t0 > time_budget_s:
                    break
                n = min(trials - len(res.records), batch or 2 * n_workers)
                cands = strat.propose(n, taken, history)
                cands = [c for c in cands if c.key not in taken][:n]
                if not cands:
                    break                                   # the space is exhausted
                taken.update(c.key for c in cands)
                for r in m.measure(cands):
                    rec = records.make_record(layer, tgt, r.candidate.template, r.candidate.knob_dict, r.status,
                                               timing=r.timing, rate=r.rate, unit=r.unit, error=r.error,
                                               build_s=r.build_s, measured_on=r.measured_on, strategy=strat.name,
                                               session=session, trial=len(prior) + len(res.records),
                                               template_hash=r.template_hash)
                    records.append(path, rec)
                    res.records.append(rec)
                    history.append(r)
                    if records.is_good(rec) and (best is None or rec["timing"]["median_ms"] <
                                                  best["timing"]["median_ms"]):
                        best = rec
                    bar.update(1)
                    _postfix(bar, best, res.failed)
            if confirm and confirm_rounds and rpc_cfg is None and any(records.is_good(r) for r in res.records):
                res.confirmed = _confirm(m, layer, tgt, path, space, templates, confirm, confirm_rounds,
                                         strat.name, session)
        # what compile() will pick from this log (the running best above is the progress bar's minimum)
        best = records.best(_session_records(layer, tgt, path, space, templates)) or best
    finally:
        bar.close()
        res.best, res.elapsed_s = best, time.monotonic() - t0
    return res


def _session_records(layer, tgt, path, space, templates) -> list:
    """This workload's current records in the log being written (restricted to the searched templates)."""
    recs = records.records_for(layer, tgt, path)
    return [r for r in recs if r["template"] in space.templates] if templates else recs


def _confirm(m, layer, tgt, path, space, templates, top: int, rounds: int, strategy: str, session: str) -> list:
    """Re-measure the `top` best configurations of the log (records.choose's order) and the layer's default
    configuration in interleaved rounds; append and return their confirm records."""
    gs = sorted(records.groups(_session_records(layer, tgt, path, space, templates)).values(),
                key=records.Group.rank)
    cands = [Candidate.make(g.template, g.knobs) for g in gs[:top]]
    default = layer.default_template()
    if default in space.templates:
        try:
            d = Candidate.make(default, get_template(default).defaults(layer, tgt))
        except Exception:           # a default template that fails here was reported by the search already
            d = None
        if d is not None and d not in cands:
            cands.append(d)
    written = []
    for r in m.confirm(cands, rounds):
        if not r.ok:
            continue
        rec = records.make_record(layer, tgt, r.candidate.template, r.candidate.knob_dict, r.status,
                                  timing=r.timing, rate=r.rate, unit=r.unit, measured_on=r.measured_on,
                                  strategy=records.CONFIRM, session=session, template_hash=r.template_hash,
                                  confirm={"rounds": len(r.round_ms), "round_ms": r.round_ms,
                                           "candidates": len(cands), "search": strategy})
        records.append(path, rec)
        written.append(rec)
    return written


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _progress(total, layer, enabled):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm      # optional (the tune extra): without it, no progress bar
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=f"tune {type(layer).__name__}", unit="trial", dynamic_ncols=True)


def _postfix(bar, best, failed):
    b = f"best {best['rate']:.1f} {best['unit']}" if best else "best -"
    bar.set_postfix_str(f"{b}, failed {failed}")
