"""Bad input, templates: whatever is wrong with a template file, compiling with it is a ScheduleError (KnobError
for knobs) naming the file and line, and the tuner reports it and searches the others."""
import warnings

import pytest

import convsched as cs
from convsched.tune.space import SearchSpace
from convsched.tune.strategies import make_strategy

TINY = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
GOOD_SCHEDULE = '\n\ndef schedule(s, layer, f):\n    s["pad"].compute_inline()\n'

# name -> (source, the line its error points at, or None where there is no line to point at)
BROKEN = {
    "knobs_a_list": ('LAYER = "conv2d"\nKNOBS = ["f"]\n' + GOOD_SCHEDULE, 2),
    "knobs_an_int": ('LAYER = "conv2d"\nKNOBS = 5\n' + GOOD_SCHEDULE, 2),
    "space_raises": ('LAYER = "conv2d"\n\n\ndef _f(layer, target):\n    return [1 // 0]\n\n\n'
                     'KNOBS = {"f": _f}\n' + GOOD_SCHEDULE, 5),
    "space_a_string": ('LAYER = "conv2d"\nKNOBS = {"f": "abc"}\n' + GOOD_SCHEDULE, 2),
    "space_none": ('LAYER = "conv2d"\nKNOBS = {"f": lambda layer, target: None}\n' + GOOD_SCHEDULE, 2),
    "space_of_lists": ('LAYER = "conv2d"\nKNOBS = {"f": [[1, 2]]}\n' + GOOD_SCHEDULE, 2),
    "space_of_nan": ('LAYER = "conv2d"\nKNOBS = {"f": [float("nan")]}\n' + GOOD_SCHEDULE, 2),
    "space_endless": ('LAYER = "conv2d"\nKNOBS = {"f": range(10 ** 12)}\n' + GOOD_SCHEDULE, 2),
    "applies_raises": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef applies(layer, target):\n'
                       '    raise ValueError("cannot tell")\n' + GOOD_SCHEDULE, 6),
    "applies_garbage": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef applies(layer, target):\n    return None\n'
                        + GOOD_SCHEDULE, 5),
    "defaults_raises": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef defaults(layer, target):\n'
                        '    return {"f": layer.no_such_field}\n' + GOOD_SCHEDULE, 6),
    "defaults_garbage": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef defaults(layer, target):\n    return [1]\n'
                         + GOOD_SCHEDULE, 5),
    "defaults_unknown": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef defaults(layer, target):\n'
                         '    return {"g": 1}\n' + GOOD_SCHEDULE, 5),
    "constraint_raises": ('LAYER = "conv2d"\nKNOBS = {"f": [1, 2]}\n\n\ndef constraint(layer, target, f):\n'
                          '    return {}[f]\n' + GOOD_SCHEDULE, 6),
    "constraint_garbage": ('LAYER = "conv2d"\nKNOBS = {"f": [1, 2]}\n\n\ndef constraint(layer, target, f):\n'
                           '    return 0.5\n' + GOOD_SCHEDULE, 5),
    "schedule_raises": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef schedule(s, layer, f):\n'
                        '    raise RuntimeError("broken on purpose")\n', 6),
    "schedule_exits": ('import sys\nLAYER = "conv2d"\nKNOBS = {"f": [1]}\n\n\ndef schedule(s, layer, f):\n'
                       '    sys.exit(3)\n', 7),
    "load_exits": ('import sys\nLAYER = "conv2d"\nsys.exit("no")\nKNOBS = {"f": [1]}\n' + GOOD_SCHEDULE, 3),
    "load_raises": ('LAYER = "conv2d"\nimport no_such_module_anywhere\nKNOBS = {"f": [1]}\n' + GOOD_SCHEDULE, 2),
    "syntax_error": ('LAYER = "conv2d"\nKNOBS = {"f": [1]\n' + GOOD_SCHEDULE, 2),
    "nul_bytes": ('LAYER = "conv2d"\x00\nKNOBS = {"f": [1]}\n' + GOOD_SCHEDULE, None),
    "schedule_not_a_function": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\nschedule = 5\n', 3),
    "applies_not_a_function": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\napplies = True\n' + GOOD_SCHEDULE, 3),
    "algorithm_a_number": ('LAYER = "conv2d"\nKNOBS = {"f": [1]}\nALGORITHM = 5\n' + GOOD_SCHEDULE, 3),
    "no_layer": ('KNOBS = {"f": [1]}\n' + GOOD_SCHEDULE, None),
    "wrong_layer": ('LAYER = "pool2d"\nKNOBS = {"f": [1]}\n' + GOOD_SCHEDULE, 1),
}
# fine at its defaults, fails at some points: those points are skipped, with a warning
PARTLY = ('LAYER = "conv2d"\nKNOBS = {"f": [1, 2, 3]}\n\n\ndef constraint(layer, target, f):\n'
          '    return 1 // (f - 2) != 7\n' + GOOD_SCHEDULE)


@pytest.fixture
def broken_dir(tmp_path, monkeypatch):
    d = tmp_path / "conv2d"
    d.mkdir()
    for name, (src, _) in BROKEN.items():
        (d / f"{name}.py").write_text(src)
    (d / "not_utf8.py").write_bytes(b'LAYER = "conv2d"  # \xff\xfe\n')
    (d / "partly.py").write_text(PARTLY)
    monkeypatch.setenv("CONVSCHED_SCHEDULES", str(tmp_path))
    return d


@pytest.mark.parametrize("name", sorted(BROKEN) + ["not_utf8"])
def test_compiling_with_a_broken_template_names_file_and_line(broken_dir, name):
    with pytest.raises(cs.ScheduleError) as ei:
        cs.compile(TINY, template=f"conv2d/{name}")
    msg, path = str(ei.value), broken_dir / f"{name}.py"
    assert str(path) in msg, msg
    line = BROKEN.get(name, ("", None))[1]
    if line is not None:
        assert f"{path}:{line}" in msg, msg


def test_the_search_reports_broken_templates_and_goes_on(broken_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = SearchSpace(TINY, cs.target.host())
        legal = space.all_legal()
    said = "\n".join(str(w.message) for w in caught)
    for name in BROKEN:
        if name in ("schedule_raises", "schedule_exits", "wrong_layer"):
            continue        # schedule() runs in the measurement worker: recorded as "invalid" there
        assert f"conv2d/{name}" in space.skipped and f"conv2d/{name}" in said, name
        assert str(broken_dir / f"{name}.py") in said, name
    assert "conv2d/wrong_layer" in space.skipped            # says it is for pool2d
    assert "conv2d/nhwc_direct" in space.names and "conv2d/partly" in space.names
    assert "conv2d/partly: skipping the points where its constraint fails" in said
    partly = sorted(dict(c.knobs)["f"] for c in legal if c.template == "conv2d/partly")
    assert partly == [1, 3]
    assert make_strategy("random", space, 8, seed=1).propose(8, set(), [])


def test_tuning_with_broken_templates_around_finds_a_kernel(broken_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.tune(TINY, trials=2, log=tmp_path / "t.jsonl", workers=1, timeout=60, progress=False)
    assert res.best is not None and res.best["template"].startswith("conv2d/")
    assert not res.best["template"].endswith(tuple(BROKEN))


def test_knob_values_of_the_wrong_kind_are_refused(broken_dir):
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    d = tmpl.defaults(TINY, cs.target.host())
    for bad in ({**d, "co_tile": float(d["co_tile"])}, {**d, "unroll_kw": int(d["unroll_kw"])}, "co_tile=16",
                {**d, "co_tile": [d["co_tile"]]}):
        with pytest.raises(cs.KnobError):
            cs.compile(TINY, template="conv2d/nhwc_direct", knobs=bad)
    for name in (5, "conv2d", "conv2d/a/b", "/etc/passwd", "conv2d/../x", "conv2d/.hidden"):
        with pytest.raises(cs.ScheduleError, match="template name"):
            cs.compile(TINY, template=name)


def test_listing_templates_names_the_broken_ones(broken_dir, capsys):
    from convsched.cli import main
    assert main(["list", "templates", "conv2d"]) == 0
    out = capsys.readouterr().out
    assert "conv2d/nhwc_direct" in out and "conv2d/knobs_a_list" in out and "BROKEN:" in out
