"""Bad input, public entry points: benchmark, tune, compile, targets, Schedule.from_json and environment variables
check their arguments and say which one is wrong (before any worker starts or any kernel runs)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import convsched as cs
from convsched.schedule import Schedule
from convsched.target import host_key_cores

TINY = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)


@pytest.fixture(scope="module")
def kernel():
    return cs.compile(TINY)


@pytest.mark.parametrize("kw,msg", [({"repeat": 0}, "repeat"), ({"repeat": -3}, "repeat"), ({"repeat": 1.5}, "repeat"),
                                    ({"repeat": "3"}, "repeat"), ({"repeat": True}, "repeat"),
                                    ({"min_repeat_ms": -1}, "min_repeat_ms"),
                                    ({"min_repeat_ms": float("nan")}, "min_repeat_ms"),
                                    ({"min_repeat_ms": "10"}, "min_repeat_ms")])
def test_benchmark_arguments(kernel, kw, msg):
    with pytest.raises(ValueError, match=msg):
        kernel.benchmark(**kw)


def test_benchmark_accepts_numpy_counts_and_fractional_milliseconds(kernel):
    t = kernel.benchmark(repeat=np.int64(2), min_repeat_ms=0.5)
    assert t.runs == 2 and t.median_ms > 0


TUNE_BAD = [({"trials": 0}, "trials"), ({"trials": -1}, "trials"), ({"trials": 1.5}, "trials"),
            ({"trials": True}, "trials"), ({"workers": 0}, "workers"), ({"workers": -2}, "workers"),
            ({"workers": 1.5}, "workers"), ({"timeout": 0}, "timeout"), ({"timeout": -5}, "timeout"),
            ({"timeout": float("nan")}, "timeout"), ({"timeout": float("inf")}, "timeout"),
            ({"timeout": "20"}, "timeout"), ({"repeat": 0}, "repeat"), ({"min_repeat_ms": -1}, "min_repeat_ms"),
            ({"batch": 0}, "batch"), ({"time_budget_s": 0}, "time_budget_s"), ({"seed": 1.5}, "seed")]


@pytest.mark.parametrize("kw,msg", TUNE_BAD, ids=[f"{k}={v!r}" for kw, _ in TUNE_BAD for k, v in kw.items()])
def test_tune_arguments(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=f"tune: {msg}"):
        cs.tune(TINY, **{"trials": 1, **kw}, log=tmp_path, progress=False)


@pytest.mark.parametrize("kw,err,msg", [
    ({"strategy": "nope"}, cs.ConvschedError, "unknown strategy"),
    ({"strategy": ["random"]}, cs.ConvschedError, "unknown strategy"),
    ({"target": "pentium"}, cs.TargetError, "unknown target"),
    ({"target": 5}, cs.TargetError, "a target is"),
    ({"templates": ["conv2d/nope"]}, cs.ScheduleError, "unknown template"),
    ({"templates": "pool2d/nhwc"}, cs.ScheduleError, "does not apply"),
    ({"log": 5}, ValueError, "log must be"),
])
def test_tune_names(tmp_path, kw, err, msg):
    kw = {"log": tmp_path, **kw}
    with pytest.raises(err, match=msg):
        cs.tune(TINY, trials=1, progress=False, **kw)


def test_tune_and_compile_want_a_layer():
    for call in (cs.compile, cs.tune):
        for bad in ("conv2d", None, cs.layers.Conv2d):
            with pytest.raises(ValueError, match="expected a layer"):
                call(bad)


@pytest.mark.parametrize("kw,err,msg", [
    ({"target": "pentium"}, cs.TargetError, "unknown target"),
    ({"template": 5}, cs.ScheduleError, "template name"),
    ({"template": "conv2d/nhwc_direct", "knobs": "co_tile=16"}, cs.KnobError, "knobs must be a dict"),
    ({"template": "conv2d/nhwc_direct", "knobs": {"co_tile": np.int64(3)}}, cs.KnobError, "outside its space"),
    ({"schedule": 5}, cs.ScheduleError, "schedule="),
    ({"schedule": Schedule(), "template": "conv2d/nhwc_direct"}, cs.ScheduleError, "not both"),
    ({"log": 5}, ValueError, "log must be"),
])
def test_compile_arguments(kw, err, msg):
    with pytest.raises(err, match=msg):
        cs.compile(TINY, **kw)


def test_targets():
    for bad in ("pentium", "", 5, ["host"]):
        with pytest.raises(cs.TargetError):
            cs.target.get(bad)
    for cores in (0, -1, 1.5, True):
        with pytest.raises(cs.TargetError, match="cores"):
            cs.target.get("host", cores=cores)
    assert cs.target.get(None) == cs.target.host()


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_convsched_host_cores_must_be_a_positive_integer(monkeypatch, value):
    monkeypatch.setenv("CONVSCHED_HOST_CORES", value)
    if value == "":
        assert host_key_cores() >= 1                          # empty: unset
    else:
        with pytest.raises(cs.TargetError, match="CONVSCHED_HOST_CORES"):
            host_key_cores()


def test_tvm_num_threads_that_is_no_count_is_a_clear_error_not_a_crash():
    code = ("import convsched as cs\n"
            "layer = cs.layers.Conv2d(h=6, w=6, cin=8, cout=8)\n"
            "try:\n    cs.compile(layer)\nexcept cs.ConvschedError as e:\n    print('ERROR', e)\n")
    for value in ("abc", "0"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TVM_NUM_THREADS": value})
        assert r.returncode == 0, r.stderr
        assert f"ERROR TVM_NUM_THREADS must be a positive integer (threads per kernel), got '{value}'" in r.stdout


def test_schedule_from_json_takes_the_dict_or_its_text(kernel):
    d = kernel.schedule.to_json()
    assert Schedule.from_json(d) == kernel.schedule
    assert Schedule.from_json(json.dumps(d)) == kernel.schedule
    assert Schedule.from_json(json.dumps(d).encode()) == kernel.schedule
    k = cs.compile(TINY, schedule=Schedule.from_json(json.dumps(d)))
    xs = TINY.random_inputs(0)
    assert TINY.mismatch(k(*xs), TINY.reference(*xs)) is None


STEP = {"op": "vectorize", "stage": "conv", "axis": "co"}
BAD_SCHEDULES = [
    ("not JSON", "{steps"), ("a number", 5), ("a list", []), ("steps a number", {"steps": 5}),
    ("a step a number", {"steps": [5]}), ("an unknown step", {"steps": [{"op": "explode", "stage": "conv"}]}),
    ("op missing", {"steps": [{"stage": "conv"}]}), ("stage a list", {"steps": [{**STEP, "stage": ["conv"]}]}),
    ("axis a number", {"steps": [{**STEP, "axis": 3}]}),
    ("split factors strings", {"steps": [{"op": "split", "stage": "conv", "axis": "co", "factors": ["a"],
                                          "names": ["x"]}]}),
    ("split factors a bool", {"steps": [{"op": "split", "stage": "conv", "axis": "co", "factors": [True],
                                         "names": ["x"]}]}),
    ("an unknown field", {"steps": [{**STEP, "colour": "red"}]}),
    ("knobs a list", {"knobs": [1]}), ("knob names numbers", {"knobs": {1: 2}}), ("template a number", {"template": 3}),
]


@pytest.mark.parametrize("what,blob", BAD_SCHEDULES, ids=[b[0] for b in BAD_SCHEDULES])
def test_malformed_serialised_schedules(what, blob):
    with pytest.raises(cs.ScheduleError):
        Schedule.from_json(blob)


@pytest.mark.parametrize("steps", [
    [{"op": "vectorize", "stage": "no_such_stage", "axis": "co"}],
    [{"op": "split", "stage": "conv", "axis": "co", "factors": [0], "names": ["a"]}],
    [{"op": "parallel", "stage": "conv", "axis": "kh"}],
    [{"op": "compute_at", "stage": "conv", "target": "conv", "axis": "n"}],
    [{"op": "annotate", "stage": "conv", "axis": "co", "key": "pragma_x", "value": 10 ** 30}],
], ids=["unknown stage", "zero factor", "parallel reduction", "compute_at itself", "huge annotation"])
def test_well_formed_but_illegal_schedules_are_schedule_errors(steps):
    with pytest.raises(cs.ScheduleError):
        cs.compile(TINY, schedule=Schedule.from_json({"steps": steps}))


def test_buffers_too_big_to_index_or_empty_are_refused_before_tvm():
    with pytest.raises(ValueError, match=r"input 'a' has 4294967296 elements"):
        cs.compile(cs.layers.Add(h=2 ** 16, w=2 ** 16, c=1))

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Empty(cs.layers.CustomLayer):
        c: int = 0

        def input_specs(self):
            return [cs.layers.TensorSpec("x", (1, self.c), "float32")]

        def compute(self, te, expr, x):
            return te.compute(x.shape, lambda *i: x(*i), name="copy")

        def reference(self, x):
            return x

    with pytest.raises(ValueError, match=r"input 'x' has shape \(1, 0\): every dimension must be positive"):
        cs.compile(Empty(), schedule=lambda s, layer: None)
