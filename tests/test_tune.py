"""The autotuner: spaces, strategies, isolated measurement with faults, the tuning-log database, RPC."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import convsched as cs
from convsched import records
from convsched.tune.space import Candidate, SearchSpace
from convsched.tune.strategies import CostModel, Evolutionary, Exhaustive, make_strategy

TINY = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class WrongReferenceConv(cs.layers.Conv2d):
    """A conv whose 'reference' is off by one: every candidate must be rejected as wrong, never timed."""

    def reference(self, *arrays):
        return super().reference(*arrays) + 1.0


FAULTY_TEMPLATE = textwrap.dedent('''
    """A template whose knob picks a fault: a segfault, an endless loop, an exception, or a good schedule."""
    import os, signal
    LAYER = "conv2d"
    KNOBS = {"mode": ["ok", "segv", "hang", "raise"]}

    def schedule(s, layer, mode):
        if mode == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "hang":
            while True:
                pass
        if mode == "raise":
            raise RuntimeError("this template is broken on purpose")
        s["pad"].compute_inline()
        s["conv"].vectorize("co")
''')


@pytest.fixture
def faulty_dir(tmp_path):
    d = tmp_path / "templates" / "conv2d"
    d.mkdir(parents=True)
    (d / "faulty.py").write_text(FAULTY_TEMPLATE)
    cs.schedule.add_template_dir(tmp_path / "templates")
    yield tmp_path / "templates"
    from convsched.schedule import template as T
    T._user_dirs.remove((tmp_path / "templates").resolve())


# ------------------------------------------------------------------------------------------ space, strategies
def test_space_filters_illegal_points_and_knows_its_templates(host):
    space = SearchSpace(TINY, host)
    pts = space.all_legal()
    assert pts and len({c.key for c in pts}) == len(pts)
    for c in pts:
        assert space.templates[c.template].constraint(TINY, host, c.knob_dict) is True
    assert all(space.is_legal(c) for c in space.defaults())
    assert "conv2d/nhwc_direct" in space.names and "conv2d/nchw_direct" in space.skipped
    bad = Candidate.make("conv2d/nhwc_direct", {**space.defaults()[0].knob_dict, "co_tile": 5})
    assert not space.is_legal(bad)
    with pytest.raises(cs.ScheduleError, match="unknown template"):
        SearchSpace(TINY, host, templates=["conv2d/no_such_template"])


def test_strategies_propose_new_legal_points(host):
    space = SearchSpace(TINY, host, templates=["conv2d/nhwc_direct"])
    n = len(space.all_legal())
    assert make_strategy("auto", space, trials=n).name == "exhaustive"
    assert make_strategy("auto", space, trials=n - 1).name == "evolutionary"
    with pytest.raises(cs.ConvschedError, match="unknown strategy"):
        make_strategy("annealing", space, 8)
    ex = Exhaustive(space)
    taken, seen = set(), []
    while True:
        batch = ex.propose(7, taken, [])
        if not batch:
            break
        assert not {c.key for c in batch} & taken
        taken |= {c.key for c in batch}
        seen += batch
    assert len(seen) == n

    # evolutionary on a synthetic landscape: the best known points are bigger co_tile x ow_tile
    from convsched.tune.measure import Result
    rnd = random.Random(1)
    hist = []
    for c in rnd.sample(space.all_legal(), 12):
        k = c.knob_dict
        hist.append(Result(c, "ok", rate=float(k["co_tile"] * k["ow_tile"]) + rnd.random()))
    taken = {r.candidate.key for r in hist}
    ev = Evolutionary(space, seed=3)
    batch = ev.propose(8, taken, hist)
    assert len(batch) == 8 and len({c.key for c in batch}) == 8
    assert all(space.is_legal(c) and c.key not in taken for c in batch)


def test_cost_model_learns_a_simple_landscape(host):
    space = SearchSpace(TINY, host, templates=["conv2d/nhwc_direct"])
    pts = space.all_legal()
    f = lambda c: np.log2(c.knob_dict["co_tile"]) + 0.5 * np.log2(c.knob_dict["ow_tile"])  # noqa: E731
    m = CostModel(space)
    train = pts[::2]
    m.fit(train, [f(c) for c in train])
    test = pts[1::2]
    corr = np.corrcoef(m.predict(test), [f(c) for c in test])[0, 1]
    assert corr > 0.9


# ------------------------------------------------------------------------------------------------ the log
def _rec(layer, target, template, knobs, ms, status="ok"):
    return records.make_record(layer, target, template, knobs, status,
                                timing={"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 3} if status == "ok"
                                else None, rate=1.0 / ms, unit="GFLOP/s")


def test_log_skips_corrupt_lines_and_picks_the_best_verified_record(tmp_path, host):
    log = tmp_path / "t.jsonl"
    d = cs.schedule.get_template("conv2d/nhwc_direct").defaults(TINY, host)
    other = {**d, "unroll_kw": not d["unroll_kw"]}
    records.append(log, _rec(TINY, host, "conv2d/nhwc_direct", d, 2.0))
    with open(log, "a") as f:
        f.write("this is not json\n")
        f.write('{"truncated": tr\n')
        f.write("\x00\x01garbage\n")
    records.append(log, _rec(TINY, host, "conv2d/nhwc_direct", other, 1.0))
    records.append(log, _rec(TINY, host, "conv2d/nhwc_direct", d, 0.5, status="wrong"))   # not verified
    r = _rec(TINY, host, "conv2d/nhwc_direct", d, 0.1)
    r["target"] = {**r["target"], "key": "some_other_cpu"}                                 # other target
    records.append(log, r)
    with open(log, "ab") as f:
        f.write(b'{"workload_key": "half a li')                                              # killed writer
    with pytest.warns(UserWarning, match="skipped 4 corrupt"):
        recs = records.read(log)
    assert len(recs) == 4
    assert records.best_record(TINY, host, log) == ("conv2d/nhwc_direct", other)
    # the next append starts on a fresh line, so nothing is lost after a torn line
    records.append(log, _rec(TINY, host, "conv2d/nhwc_direct", d, 0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(records.read(log)) == 5


def test_records_of_a_changed_template_are_ignored_with_a_warning(tmp_path, host):
    log = tmp_path / "t.jsonl"
    d = cs.schedule.get_template("conv2d/nhwc_direct").defaults(TINY, host)
    r = _rec(TINY, host, "conv2d/nhwc_direct", d, 1.0)
    r["template_hash"] = "0123456789abcdef"
    records.append(log, r)
    with pytest.warns(UserWarning, match="source changed"):
        assert records.best_record(TINY, host, log) is None
    # once the template is re-tuned for this workload, its old records are history: used never, warned never
    records.append(log, _rec(TINY, host, "conv2d/nhwc_direct", d, 2.0))
    records._hash_warned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert records.best_record(TINY, host, log) == ("conv2d/nhwc_direct", d)


def test_compile_uses_the_best_record_else_warns_once(tmp_path, host, monkeypatch):
    import convsched.kernel.compiler
    monkeypatch.setattr(convsched.kernel.compiler, "_warned", set())  # other tests may have compiled `other` already
    log = tmp_path / "logs"
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    d = tmpl.defaults(TINY, host)
    knobs = {**d, "ow_tile": 2, "unroll_kw": True}
    assert tmpl.constraint(TINY, host, knobs) is True and knobs != d
    records.append(records.log_path(host, log), _rec(TINY, host, "conv2d/nhwc_direct", knobs, 0.01))
    k = cs.compile(TINY, log=log)
    assert k.schedule.template == "conv2d/nhwc_direct" and k.schedule.knob_dict == knobs
    other = cs.layers.Conv2d(h=6, w=6, cin=8, cout=8)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cs.compile(other, log=log)
        cs.compile(other, log=log)
    assert sum("no tuning record" in str(x.message) for x in w) == 1


_APPENDER = """
import sys
from convsched import records
for i in range(int(sys.argv[2])):
    records.append(sys.argv[1], {"workload_key": "w", "template": "t", "writer": sys.argv[3], "i": i,
                                  "pad": "x" * (i * 37 % 5000)})
"""


def test_several_writers_append_to_one_log_at_once(tmp_path):
    log = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(log), "300", str(w)]) for w in range(4)]
    assert all(p.wait(120) == 0 for p in procs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no corrupt line at all
        recs = records.read(log, validate=False)   # stand-ins for tuning records: whole lines, not the schema
    assert len(recs) == 1200
    for w in range(4):
        assert sorted(r["i"] for r in recs if r["writer"] == str(w)) == list(range(300))


# ---------------------------------------------------------------------------------------- measuring, faults
def test_faulty_candidates_are_recorded_and_the_search_goes_on(tmp_path, faulty_dir, host):
    log = tmp_path / "faults.jsonl"
    res = cs.tune(TINY, trials=10, strategy="exhaustive", templates=["conv2d/faulty"], log=log, workers=2,
                  timeout=8, progress=False)
    status = {r["knobs"]["mode"]: r for r in res.records}
    assert set(status) == {"ok", "segv", "hang", "raise"}
    assert status["segv"]["status"] == "crash" and "SIGSEGV" in status["segv"]["error"]
    assert status["hang"]["status"] == "timeout"
    assert status["raise"]["status"] == "invalid" and "broken on purpose" in status["raise"]["error"]
    assert status["ok"]["status"] == "ok" and status["ok"]["verified"] and status["ok"]["timing"]["median_ms"] > 0
    assert res.best["knobs"] == {"mode": "ok"}
    logged = records.read(log)
    assert len([r for r in logged if not records.is_confirm(r)]) == 4
    # the closing confirmation re-measured the one good candidate only (the default template was not searched)
    assert [r["knobs"] for r in logged if records.is_confirm(r)] == [{"mode": "ok"}] == [r["knobs"] for r in
                                                                                          res.confirmed]
    # a layer whose outputs disagree with reference() is never timed
    wrong = cs.tune(WrongReferenceConv(h=6, w=6, cin=8, cout=16), trials=1, templates=["conv2d/nhwc_direct"],
                    log=tmp_path / "wrong.jsonl", timeout=30, workers=1, progress=False)
    assert [r["status"] for r in wrong.records] == ["wrong"] and wrong.best is None
    assert wrong.records[0]["timing"] is None and "tolerance" in wrong.records[0]["error"]


def test_tuning_resumes_and_a_killed_tuner_loses_nothing(tmp_path, host):
    log = tmp_path / "kill.jsonl"
    code = (f"import convsched as cs; cs.tune(cs.layers.Conv2d(h=6, w=6, cin=8, cout=16), trials=200, "
            f"strategy='random', log={str(log)!r}, timeout=30, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        end = time.monotonic() + 100
        while time.monotonic() < end and (not log.exists() or log.read_text().count("\n") < 3):
            time.sleep(0.2)
    finally:
        os.killpg(p.pid, signal.SIGKILL)        # the tuner and its workers, mid-run
        p.wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # every line written is whole
        before = records.read(log)
    assert len(before) >= 3
    assert all(json.loads(line) for line in log.read_text().splitlines())
    res = cs.tune(TINY, trials=2, strategy="random", log=log, timeout=30, workers=1, progress=False)
    assert res.prior == len(before)
    old = {Candidate.make(r["template"], r["knobs"]).key for r in before}
    new = [Candidate.make(r["template"], r["knobs"]).key for r in res.records]
    assert len(new) == 2 and not set(new) & old
    assert res.best is not None and res.best["verified"]


def test_bad_tune_arguments(tmp_path, host):
    with pytest.raises(cs.ScheduleError, match="unknown template"):
        cs.tune(TINY, trials=1, templates=["conv2d/nope"], log=tmp_path, progress=False)
    with pytest.raises(ValueError, match="trials"):
        cs.tune(TINY, trials=-1, log=tmp_path, progress=False)
    with pytest.raises(cs.ConvschedError, match="unknown strategy"):
        cs.tune(TINY, trials=1, strategy="nope", log=tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------------- RPC
def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rpc_tracker_down_is_a_clear_error(tmp_path):
    with pytest.raises(cs.ConvschedError, match="not reachable"):
        cs.tune(TINY, trials=1, rpc_tracker=f"127.0.0.1:{_free_port()}", rpc_key="x", log=tmp_path,
                progress=False)
    with pytest.raises(cs.ConvschedError, match="host:port"):
        cs.tune(TINY, trials=1, rpc_tracker="nowhere", rpc_key="x", log=tmp_path, progress=False)


def test_tuning_through_an_rpc_tracker_with_two_servers(tmp_path):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("tornado")
    from convsched.backend.rpc import local_cluster
    started = []
    with local_cluster(n_servers=2, key="cs-test") as (addr, procs):
        for p in procs:
            started += [p.pid] + [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
        with pytest.raises(cs.ConvschedError, match="no RPC server is registered under key 'other'"):
            cs.tune(TINY, trials=1, rpc_tracker=addr, rpc_key="other", log=tmp_path, progress=False)
        res = cs.tune(TINY, trials=3, strategy="random", templates=["conv2d/nhwc_direct"], rpc_tracker=addr,
                      rpc_key="cs-test", log=tmp_path, timeout=30, workers=1, progress=False)
    assert len(res.records) == 3
    assert all(r["status"] == "ok" and r["measured_on"].startswith("rpc:cs-test") for r in res.records)
    assert len(started) >= 6                     # tracker + 2 servers, each with its listener child
    time.sleep(0.5)
    alive = [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, f"processes left running: {alive}"


def test_shipped_records_rebuild_their_workloads():
    """Every shipped record's workload key is what today's layer class builds from it: a layer field added or
    renamed would orphan the shipped records without a word, so it fails here instead."""
    from convsched.layers import registry
    logs = sorted((ROOT / "tuning_logs").glob("*.jsonl"))
    assert logs, "no shipped tuning logs"
    checked = set()
    for log in logs:
        for r in records.read(log):
            if r["workload_key"] in checked:
                continue
            params = json.loads(r["workload_key"])
            kind = params.pop("layer")
            cls = registry.layer_class(r["layer"])
            assert cls.KIND == kind
            layer = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
            assert layer.workload_key == r["workload_key"], (log.name, r["layer"])
            checked.add(r["workload_key"])
    assert len(checked) >= 10


def test_a_session_ends_by_confirming_its_top_candidates_and_the_defaults(tmp_path, host):
    log = tmp_path / "confirm.jsonl"
    res = cs.tune(TINY, trials=4, strategy="random", templates=["conv2d/nhwc_direct"], log=log, workers=1,
                  timeout=60, progress=False, confirm=2, confirm_rounds=3)
    searched = [r for r in records.read(log) if not records.is_confirm(r)]
    confirmed = [r for r in records.read(log) if records.is_confirm(r)]
    assert len(searched) == 4 and confirmed == res.confirmed
    defaults = cs.schedule.get_template("conv2d/nhwc_direct").defaults(TINY, host)
    groups = sorted(records.groups(searched).values(), key=records.Group.rank)
    want = [g.knobs for g in groups[:2]] + ([defaults] if defaults not in [g.knobs for g in groups[:2]] else [])
    assert [r["knobs"] for r in confirmed] == want                        # the top 2, then the defaults
    for r in confirmed:
        t, rounds = r["timing"], r["confirm"]["round_ms"]
        assert r["strategy"] == "confirm" and r["verified"] and r["session"] == confirmed[0]["session"]
        assert t["runs"] == r["confirm"]["rounds"] == len(rounds) == 3
        assert t["median_ms"] == pytest.approx(float(np.median(rounds)))
        assert t["p10_ms"] <= t["median_ms"] <= t["p90_ms"] and min(rounds) > 0
    # the result is what compile() picks: the fastest confirmed configuration
    fastest = min(confirmed, key=lambda r: r["timing"]["median_ms"])
    assert res.best["knobs"] == fastest["knobs"] and records.is_confirm(res.best)
    assert records.best_record(TINY, host, log) == ("conv2d/nhwc_direct", fastest["knobs"])
    k = cs.compile(TINY, log=log)
    assert k.schedule.knob_dict == fastest["knobs"]
    assert "confirmed over 3 interleaved rounds" in str(res)
