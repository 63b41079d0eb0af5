"""Where tuning records live (the user's directory, the shipped read-only logs) and how lookup chooses among
noisy measurements (the median of a configuration across sessions, confirmed ones first)."""
import os
from pathlib import Path

import pytest

import convsched as cs
from convsched import paths, records

TINY = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
TEMPLATE = "conv2d/nhwc_direct"


def _rec(target, knobs, ms, strategy="random", layer=TINY):
    return records.make_record(layer, target, TEMPLATE, knobs, "ok", rate=1.0 / ms, unit="GFLOP/s",
                                timing={"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 3},
                                strategy=strategy)


@pytest.fixture
def two_configs(host):
    """The default knobs of nhwc_direct for TINY and one other legal point."""
    t = cs.schedule.get_template(TEMPLATE)
    d = t.defaults(TINY, host)
    other = {**d, "unroll_kw": not d["unroll_kw"]}
    assert t.constraint(TINY, host, other) is True
    return d, other


# ------------------------------------------------------------------------------------------------ where
def test_user_records_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVSCHED_TUNING_LOGS", str(tmp_path / "mine"))
    assert paths.user_records() == tmp_path / "mine"
    monkeypatch.delenv("CONVSCHED_TUNING_LOGS")
    monkeypatch.setenv("CONVSCHED_CACHE_DIR", str(tmp_path / "cache"))        # convsched's cache (peaks too)
    assert paths.user_records() == tmp_path / "cache" / "tuning_logs"
    monkeypatch.delenv("CONVSCHED_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.user_records() == tmp_path / "xdg" / "convsched" / "tuning_logs"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")          # invalid by the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.user_records() == tmp_path / "home" / ".cache" / "convsched" / "tuning_logs"


def test_shipped_data_is_found_and_the_tests_write_elsewhere(host):
    root = Path(__file__).resolve().parent.parent
    assert paths.shipped_templates() == root / "schedules" == cs.schedule.template.BUILTIN_DIR
    assert paths.shipped_records() == root / "tuning_logs" == records.SHIPPED_DIR
    assert records.default_dir() == Path(os.environ["CONVSCHED_TUNING_LOGS"])
    assert root not in records.default_dir().parents and Path.home() not in records.default_dir().parents
    assert records.read_paths(host) == [records.default_dir() / f"{host.key}.jsonl",
                                        records.SHIPPED_DIR / f"{host.key}.jsonl"]
    assert records.read_paths(host, "some/where.jsonl") == [Path("some/where.jsonl")]


def test_lookup_reads_the_user_records_and_the_shipped_ones(monkeypatch, tmp_path, host, two_configs):
    d, other = two_configs
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(records, "SHIPPED_DIR", shipped)
    records.append(shipped / f"{host.key}.jsonl", _rec(host, other, 1.0))
    assert records.best_record(TINY, host) == (TEMPLATE, other)            # nothing of the user's yet
    records.append(records.log_path(host), _rec(host, d, 0.5))
    assert records.best_record(TINY, host) == (TEMPLATE, d)                # both read, the faster wins
    assert records.best_record(TINY, host, log=shipped) == (TEMPLATE, other)   # an explicit log is read alone
    assert len(records.read(shipped / f"{host.key}.jsonl")) == 1          # the shipped log was not written


def test_the_tuner_never_writes_into_the_package(host):
    with pytest.raises(cs.ConvschedError, match="installed package"):
        cs.tune(TINY, trials=1, log=paths.PACKAGE_DIR / "records.jsonl", progress=False)
    assert not (paths.PACKAGE_DIR / "records.jsonl").exists()


# ------------------------------------------------------------------------------------------------ choosing
def test_a_lucky_single_sample_does_not_beat_a_consistent_configuration(tmp_path, host, two_configs):
    """Two sessions each measured both configurations: `other` once at 0.3 ms (noise) and twice at ~0.9 ms,
    the defaults three times at ~0.5 ms. The minimum would pick `other`; the median picks the defaults."""
    d, other = two_configs
    log = tmp_path / "t.jsonl"
    for ms in (0.5, 0.52, 0.48):
        records.append(log, _rec(host, d, ms))
    for ms in (0.3, 0.9, 0.95):
        records.append(log, _rec(host, other, ms))
    assert records.best_record(TINY, host, log) == (TEMPLATE, d)
    g = records.groups(records.records_for(TINY, host, log))
    assert sorted(round(x.ms, 3) for x in g.values()) == [0.5, 0.9]
    assert records.best(records.read(log))["timing"]["median_ms"] == 0.5   # the record nearest the median


def test_confirmed_configurations_come_first_and_are_judged_by_their_confirmations(tmp_path, host, two_configs):
    d, other = two_configs
    log = tmp_path / "t.jsonl"
    records.append(log, _rec(host, other, 0.1))                     # one fast search sample, never confirmed
    records.append(log, _rec(host, d, 0.4))
    records.append(log, _rec(host, d, 0.6, strategy=records.CONFIRM))
    assert records.best_record(TINY, host, log) == (TEMPLATE, d)
    # once `other` is confirmed too, the confirmations' medians decide (the 0.1 search sample no longer counts)
    records.append(log, _rec(host, other, 0.7, strategy=records.CONFIRM))
    records.append(log, _rec(host, other, 0.8, strategy=records.CONFIRM))
    assert records.best_record(TINY, host, log) == (TEMPLATE, d)
    records.append(log, _rec(host, other, 0.2, strategy=records.CONFIRM))    # median of 0.7, 0.8, 0.2: 0.7
    assert records.best_record(TINY, host, log) == (TEMPLATE, d)
    records.append(log, _rec(host, other, 0.3, strategy=records.CONFIRM))    # median of four: 0.5 < 0.6
    assert records.best_record(TINY, host, log) == (TEMPLATE, other)
    best = records.best_records(log)[(TINY.workload_key, host.key)]
    assert records.is_confirm(best) and best["knobs"] == other
