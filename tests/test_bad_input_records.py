"""Bad input, tuning records: whatever a log holds, compile, tune (resume) and show go on. A malformed or illegal
record is skipped with one warning naming the log file and line, and lookup falls back to the next-best
valid record; a timed-out candidate is measured again by a later run."""
import json
import textwrap
import warnings

import pytest

import convsched as cs
from convsched import records
from convsched.cli import main

TINY = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
TEMPLATE = "conv2d/nhwc_direct"


@pytest.fixture(scope="module")
def defaults():
    return cs.schedule.get_template(TEMPLATE).defaults(TINY, cs.target.host())


@pytest.fixture(scope="module")
def other(defaults):
    return {**defaults, "unroll_kw": not defaults["unroll_kw"]}


def good(knobs, ms=2.0, status="ok"):
    timing = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 3} if status == "ok" else None
    return records.make_record(TINY, cs.target.host(), TEMPLATE, knobs, status, timing=timing,
                               rate=1.0 / ms if status == "ok" else None, unit="GFLOP/s")


def _illegal_point(space_of, defaults):
    """A point inside the knob space that the template's constraint refuses (None if there is none)."""
    tmpl, host = cs.schedule.get_template(TEMPLATE), cs.target.host()
    for k, vals in space_of.items():
        for v in vals:
            p = {**defaults, k: v}
            if tmpl.constraint(TINY, host, p) is not True:
                return p
    return None


def set_path(rec, path, value):
    """rec with rec[path[0]][path[1]]... = value (value=DELETE removes the key)."""
    rec = json.loads(json.dumps(rec))
    d = rec
    for k in path[:-1]:
        d = d[k]
    if value is DELETE:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return rec


DELETE = object()
# (what, path into the record, value): each makes a record that would otherwise be the fastest
SCHEMA = [
    ("knobs a string", ("knobs",), "co_tile=16"),
    ("knobs a list", ("knobs",), [["co_tile", 16]]),
    ("knobs null", ("knobs",), None),
    ("a knob an object", ("knobs", "co_tile"), {"v": 16}),
    ("timing a string", ("timing",), "fast"),
    ("median a string", ("timing", "median_ms"), "0.1"),
    ("median negative", ("timing", "median_ms"), -1.0),
    ("median zero", ("timing", "median_ms"), 0.0),
    ("median NaN", ("timing", "median_ms"), float("nan")),
    ("median inf", ("timing", "median_ms"), float("inf")),
    ("median a bool", ("timing", "median_ms"), True),
    ("p10 missing", ("timing", "p10_ms"), DELETE),
    ("p90 negative", ("timing", "p90_ms"), -0.1),
    ("timing missing", ("timing",), None),
    ("rate null", ("rate",), None),
    ("rate negative", ("rate",), -5.0),
    ("target a string", ("target",), "host"),
    ("target without key", ("target", "key"), DELETE),
    ("target key a number", ("target", "key"), 7),
    ("status unknown", ("status",), "great"),
    ("status a number", ("status",), 0),
    ("verified a string", ("verified",), "yes"),
    ("workload key not JSON", ("workload_key",), "conv2d h=6"),
    ("workload key a number", ("workload_key",), 6),
    ("template without a kind", ("template",), "nhwc_direct"),
    ("template a path", ("template",), "../../etc/passwd"),
    ("template a number", ("template",), 5),
    ("layer missing", ("layer",), DELETE),
    ("error a number", ("error",), 3),
    ("template hash a list", ("template_hash",), ["x"]),
]


@pytest.mark.parametrize("what,path,value", SCHEMA, ids=[s[0] for s in SCHEMA])
def test_malformed_record_is_skipped_with_a_warning_naming_file_and_line(tmp_path, defaults, other, what, path,
                                                                         value):
    log = tmp_path / "t.jsonl"
    records.append(log, good(other, 2.0))
    records.append(log, set_path(good(defaults, 0.1), path, value))
    with pytest.warns(UserWarning, match=rf"{log}: skipped 1 malformed record\(s\) \(line 2 "):
        ranked = records.ranked(TINY, cs.target.host(), log)
    assert [r["knobs"] for r in ranked] == [other]


@pytest.fixture(scope="module")
def illegal(defaults):
    space = cs.schedule.get_template(TEMPLATE).knob_space(TINY, cs.target.host())
    bad_value = next(v for v in range(2, 200) if v not in space["co_tile"])
    cases = [("outside its space", {**defaults, "co_tile": bad_value}),
             ("True is not 1", {**defaults, "co_tile": True} if 1 in space["co_tile"] else None),
             ("a float is not an int", {**defaults, "co_tile": float(defaults["co_tile"])}),
             ("unknown knob", {**defaults, "bogus": 1}),
             ("missing knob", {k: v for k, v in defaults.items() if k != "co_tile"}),
             ("violates the constraint", _illegal_point(space, defaults))]
    return {what: knobs for what, knobs in cases if knobs is not None}


@pytest.mark.parametrize("what", ["outside its space", "True is not 1", "a float is not an int", "unknown knob",
                                  "missing knob", "violates the constraint"])
def test_illegal_knobs_are_skipped_at_lookup_with_file_and_line(tmp_path, other, illegal, what):
    if what not in illegal:
        pytest.skip(f"no such point for {TINY} on this host")
    log = tmp_path / "t.jsonl"
    records.append(log, good(other, 2.0))
    records.append(log, good(illegal[what], 0.1))
    with pytest.warns(UserWarning, match=rf"{log}:2: tuning record skipped"):
        assert records.best_record(TINY, cs.target.host(), log) == (TEMPLATE, other)


def test_a_log_of_every_fault_compiles_shows_and_plots(tmp_path, defaults, other, illegal, capsys):
    log = tmp_path / "all.jsonl"
    records.append(log, good(other, 2.0))
    for _, path, value in SCHEMA:
        records.append(log, set_path(good(defaults, 0.1), path, value))
    for knobs in illegal.values():
        records.append(log, good(knobs, 0.05))
    records.append(log, {**good(defaults, 0.01), "template": "conv2d/no_such_template"})
    with open(log, "a") as f:
        f.write('[1, 2]\n"a string"\n{"workload_key": 1, "template": 2}\nnot json at all\n{"torn": \n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = cs.compile(TINY, log=log)
        assert (k.schedule.template, k.schedule.knob_dict) == (TEMPLATE, other)
        rc = main(["show", "--log", str(log), "--plot", str(tmp_path / "p.png")])
    out, err = capsys.readouterr()
    assert rc == 0 and "Traceback" not in err and "1 workloads with a verified record" in out
    assert "unroll_kw=" + str(other["unroll_kw"]) in out


def test_a_record_that_no_longer_builds_falls_back_to_the_next(tmp_path, monkeypatch):
    (tmp_path / "conv2d").mkdir()
    (tmp_path / "conv2d" / "half_broken.py").write_text(textwrap.dedent('''
        LAYER = "conv2d"
        KNOBS = {"f": [1, 2]}

        def schedule(s, layer, f):
            if f == 2:
                raise RuntimeError("this point cannot be scheduled")
            s["pad"].compute_inline()
    '''))
    monkeypatch.setenv("CONVSCHED_SCHEDULES", str(tmp_path))
    log = tmp_path / "t.jsonl"
    for f, ms in ((1, 2.0), (2, 0.1)):
        r = good({"f": f}, ms)
        r["template"] = "conv2d/half_broken"
        r["template_hash"] = cs.schedule.get_template("conv2d/half_broken").source_hash
        records.append(log, r)
    with pytest.warns(UserWarning, match=rf"{log}:2: tuning record skipped: it does not build"):
        k = cs.compile(TINY, log=log)
    assert k.schedule.knob_dict == {"f": 1}


def test_unreadable_logs_are_warned_about_not_fatal(tmp_path, monkeypatch, defaults):
    as_dir = tmp_path / "dir.jsonl"
    as_dir.mkdir()
    with pytest.warns(UserWarning, match="cannot read tuning records"):
        assert records.read(as_dir) == []
    (tmp_path / "a_file").write_text("x")
    with pytest.warns(UserWarning, match="cannot read tuning records"):
        assert records.best_record(TINY, cs.target.host(), tmp_path / "a_file" / "below.jsonl") is None
    monkeypatch.setenv("CONVSCHED_TUNING_LOGS", str(tmp_path / "a_file"))
    with pytest.raises(cs.ConvschedError, match="CONVSCHED_TUNING_LOGS"):
        records.best_record(TINY, cs.target.host())
    with pytest.raises(ValueError, match="log must be"):
        records.best_record(TINY, cs.target.host(), log=5)


def test_tune_resumes_from_a_damaged_log_and_measures_timeouts_again(tmp_path, defaults, other):
    log = tmp_path / "resume.jsonl"
    records.append(log, good(other, 2.0, status="invalid"))
    for _, path, value in SCHEMA[:6]:
        records.append(log, set_path(good(other, 0.1), path, value))
    records.append(log, good(defaults, status="timeout"))           # a run with a too short --timeout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.tune(TINY, trials=1, templates=[TEMPLATE], log=log, workers=1, timeout=60, progress=False)
    assert res.prior == 2                                            # the invalid and the timeout record
    assert [(r["knobs"], r["status"]) for r in res.records] == [(defaults, "ok")]
    assert res.best["knobs"] == defaults
