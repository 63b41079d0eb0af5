"""Tuning the loss-delta layer (one part's template + knobs per candidate, checked exactly before timing), the
suites of the shipped records (binary-bench, loss-delta) and the host key of pinned runs."""
import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import convsched as cs
from convsched.layers.loss_delta import LossDelta
from convsched import records
from convsched.kernel.compiler import tuned_parts
from convsched.tune.suites import get_suite

ROOT = Path(__file__).resolve().parent.parent
TINY_LD = LossDelta(h=6, w=6, cin=4, cout=4, classes=3)


@dataclass(frozen=True)
class CorruptDeltasLossDelta(LossDelta):
    """A LossDelta whose kernel's numpy glue adds 1 to one FC delta: every candidate must be "wrong"."""

    def fc_deltas_of(self, a, old, fc, reduce):
        d = super().fc_deltas_of(a, old, fc, reduce)
        d.flat[0] += 1
        return d


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tuning_a_tiny_loss_delta_writes_verified_records_and_compile_uses_them(tmp_path, host):
    res = cs.tune(TINY_LD, trials=3, log=tmp_path, workers=1, timeout=120, progress=False, confirm=1,
                  confirm_rounds=2)
    recs = res.records
    assert len(recs) == 3
    assert {r["template"] for r in recs} == {"loss_delta/forward", "loss_delta/deltas"}   # both defaults first
    for r in recs + res.confirmed:
        assert r["status"] == "ok" and r["verified"] and r["error"] is None, r
        assert r["timing"]["median_ms"] > 0 and r["timing"]["threads"] >= 1 and r["unit"] == "G bit-MAC/s"
        assert r["target"]["key"] == host.key and r["workload_key"] == TINY_LD.workload_key
    assert 1 <= len(res.confirmed) <= 2 and all(r["confirm"]["rounds"] == 2 for r in res.confirmed)
    logged = records.records_for(TINY_LD, host, tmp_path)
    assert len(logged) == 3 + len(res.confirmed)
    # compile() takes each part's pick: per (template, knobs) the median of its times, confirmed ones by their
    # confirmations and first (a record at its template's defaults is the default configuration: a sample of
    # both parts' defaults)
    names = {"forward": "loss_delta/forward", "deltas": "loss_delta/deltas"}
    other = {"forward": "deltas", "deltas": "forward"}
    dflt = {a: cs.schedule.get_template(n).defaults(TINY_LD, host) for a, n in names.items()}
    samples = {}
    for r in logged:
        alg = "forward" if r["template"] == "loss_delta/forward" else "deltas"
        offers = [(alg, r["knobs"])] + ([(other[alg], dflt[other[alg]])] if r["knobs"] == dflt[alg] else [])
        for a, kn in offers:
            key = (a, json.dumps(kn, sort_keys=True))
            samples.setdefault(key, []).append((r["timing"]["median_ms"], r["strategy"] == "confirm"))
    want = {}
    for (a, kn), ss in samples.items():
        confirmed = [ms for ms, c in ss if c]
        rank = (not confirmed, float(np.median(confirmed or [ms for ms, _ in ss])))
        if a not in want or rank < want[a][1]:
            want[a] = (json.loads(kn), rank)
    k = cs.compile(TINY_LD, log=tmp_path)
    for alg, (kn, _) in want.items():
        assert k.schedules[alg].template == names[alg] and k.schedules[alg].knob_dict == kn
    # a faster confirmed record of a non-default point of each part wins, and the kernel still equals the
    # definition
    picks = {}
    for name in ("loss_delta/forward", "loss_delta/deltas"):
        t = cs.schedule.get_template(name)
        d = t.defaults(TINY_LD, host)
        space = t.knob_space(TINY_LD, host)
        knob = next(kk for kk, v in space.items() if len(v) > 1)
        kn = {**d, knob: next(v for v in space[knob] if v != d[knob])}
        assert t.constraint(TINY_LD, host, kn) is True
        rec = records.make_record(TINY_LD, host, name, kn, "ok", timing={"median_ms": 1e-6, "p10_ms": 1e-6,
                                   "p90_ms": 1e-6, "runs": 1, "threads": 1}, rate=1.0, unit="G bit-MAC/s",
                                   strategy=records.CONFIRM)
        records.append(records.log_path(host, tmp_path), rec)
        picks[t.algorithm] = kn
    assert tuned_parts(TINY_LD, host, tmp_path) == {"forward": ("loss_delta/forward", picks["forward"]),
                                                     "deltas": ("loss_delta/deltas", picks["deltas"])}
    k = cs.compile(TINY_LD, log=tmp_path)
    assert {a: k.schedules[a].knob_dict for a in ("forward", "deltas")} == picks
    for seed in (0, 1):
        xs = TINY_LD.tuning_inputs(seed)
        got, ref = k(*xs), TINY_LD.reference(*xs)
        np.testing.assert_array_equal(got.conv, ref.conv)
        np.testing.assert_array_equal(got.fc, ref.fc)
    # an explicit template keeps the other part at its defaults (what one tuning candidate measures)
    k = cs.compile(TINY_LD, template="loss_delta/forward", knobs=picks["forward"], log=tmp_path)
    assert k.schedules["deltas"].knob_dict == cs.schedule.get_template("loss_delta/deltas").defaults(TINY_LD, host)


def test_a_corrupt_part_is_caught_as_wrong_and_never_timed(tmp_path):
    layer = CorruptDeltasLossDelta(h=6, w=6, cin=4, cout=4, classes=3)
    res = cs.tune(layer, trials=2, templates=["loss_delta/deltas"], log=tmp_path, workers=1, timeout=120,
                  progress=False)
    assert [r["status"] for r in res.records] == ["wrong", "wrong"] and res.best is None
    for r in res.records:
        assert r["timing"] is None and not r["verified"] and "differ from the reference" in r["error"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tuned_parts(layer, cs.target.host(), tmp_path) == {}


def test_tuning_oracle_is_the_definition_when_cheap_else_fast_numpy(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the other oracle was called")
    big = LossDelta(cin=32, cout=32)
    assert big.tuning_batch() == 64 and big.tuning_inputs(0)[0].shape[0] == 64
    assert LossDelta(cin=1024, cout=1024).tuning_batch() == 4
    small = TINY_LD.random_inputs(0)
    want = TINY_LD.reference(*small)
    monkeypatch.setattr(LossDelta, "reference", boom)
    d = big.tuning_reference(*LossDelta(cin=32, cout=32, n=2).random_inputs(0))
    assert d.conv.shape == (32, 3, 3, 32) and d.conv.dtype == np.int64
    monkeypatch.undo()
    monkeypatch.setattr(LossDelta, "fast_numpy", boom)
    got = TINY_LD.tuning_reference(*small)
    np.testing.assert_array_equal(got.conv, want.conv)
    np.testing.assert_array_equal(got.fc, want.fc)


def test_suites_have_the_benchmarks_exact_workloads():
    bb = _load(ROOT / "benchmarks" / "binary_conv.py", "_bench_binary_conv")
    want = {cs.layers.BinaryConv2d(h=hw, w=hw, cin=c, cout=c, kh=3, kw=3, stride=1, pad=1, pad_value=-1).workload_key
            for hw, c in bb.SHAPES.values()}
    assert {layer.workload_key for layer in get_suite("binary-bench")} == want
    lb = _load(ROOT / "benchmarks" / "loss_delta.py", "_bench_loss_delta")
    rows = [("global", i, o, None) for i, o in lb.GLOBAL_ROWS] + [("segmented", i, o, s) for i, o, s in lb.SEG_ROWS]
    keys = set()
    for head, cin, cout, seg in rows:
        kw = dict(h=32, w=32, cin=cin, cout=cout, classes=10, head=head)
        if seg:
            kw["segments"] = (seg, seg)
        keys.add(LossDelta(**kw).workload_key)
    suite = get_suite("loss-delta")
    assert len(suite) == 8 and {layer.workload_key for layer in suite} <= keys


def test_host_key_cores_can_name_the_machine_when_pinned(monkeypatch):
    from convsched import target as T
    from convsched.tune.measure import Measurer
    real = T.host()
    try:
        monkeypatch.setenv("CONVSCHED_HOST_CORES", "7")
        T.host.cache_clear()
        h = T.host()
        assert h.cores == 7 and h.key.endswith("_7c") and h.key.replace("_7c", "") == real.key.rsplit("_", 1)[0]
        # a tuner never times more threads than the cores it may run on, nor more than TVM_NUM_THREADS asks
        monkeypatch.setenv("TVM_NUM_THREADS", "64")
        assert int(Measurer(TINY_LD, h, workers=1).env["TVM_NUM_THREADS"]) == T.host_cores()
        monkeypatch.setenv("TVM_NUM_THREADS", "1")
        assert Measurer(TINY_LD, h, workers=1).env["TVM_NUM_THREADS"] == "1"
        monkeypatch.setenv("CONVSCHED_HOST_CORES", "zero")
        T.host.cache_clear()
        with pytest.raises(cs.TargetError, match="CONVSCHED_HOST_CORES"):
            T.host()
    finally:
        monkeypatch.undo()
        T.host.cache_clear()
    assert T.host().key == real.key


def test_a_record_of_the_default_configuration_counts_for_both_parts(tmp_path, host):
    fwd, dl = (cs.schedule.get_template(n) for n in ("loss_delta/forward", "loss_delta/deltas"))
    fd, dd = fwd.defaults(TINY_LD, host), dl.defaults(TINY_LD, host)
    space = dl.knob_space(TINY_LD, host)
    knob = next(k for k, v in space.items() if len(v) > 1)
    other = {**dd, knob: next(v for v in space[knob] if v != dd[knob])}
    path = records.log_path(host, tmp_path)

    def rec(t, kn, ms):
        return records.make_record(TINY_LD, host, t, kn, "ok", timing={"median_ms": ms, "p10_ms": ms,
                                    "p90_ms": ms, "runs": 1, "threads": 1}, rate=1.0, unit="G bit-MAC/s")
    records.append(path, rec("loss_delta/deltas", dd, 3.0))      # the defaults, measured as a deltas candidate
    records.append(path, rec("loss_delta/deltas", other, 2.0))   # beats that sample ...
    assert tuned_parts(TINY_LD, host, tmp_path)["deltas"] == ("loss_delta/deltas", other)
    records.append(path, rec("loss_delta/forward", fd, 1.0))     # ... but not the defaults' forward-side sample
    assert tuned_parts(TINY_LD, host, tmp_path) == {"forward": ("loss_delta/forward", fd),
                                                     "deltas": ("loss_delta/deltas", dd)}
