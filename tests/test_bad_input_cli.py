"""Bad input, command line: every user error is `convsched: error: ...` on stderr and exit status 2 (argparse's
own errors too), never a traceback; an internal error is one line and exit 1, the traceback only with
CONVSCHED_DEBUG=1."""
import os
import subprocess
import sys

import pytest

import convsched as cs
from convsched import cli, records
from convsched.cli import main

TINY = ["conv2d", "h=6", "w=6", "cin=8", "cout=16"]


def run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:           # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


USER_ERRORS = [
    (["tune", "conv2d", "bias=Flase"], "bias must be True or False, got 'Flase'"),
    (["tune", "conv2d", "h=5.5"], "h must be an integer"),
    (["tune", "conv2d", "stride=1,2,3"], "stride must be an integer or a pair"),
    (["compile", "conv2d", "h=abc"], "h must be an integer"),
    (["compile", "conv2d", "act=tanh"], "act must be one of"),
    (["compile", "conv2d", "layout=nhwc"], "layout must be one of"),
    (["compile", "conv2d", "=5"], "has no name"),
    (["compile", "binary_conv2d", "threshold=maybe"], "threshold must be True or False"),
    (["compile", "loss_delta", "segments=2"], "needs head='segmented'"),
    (["list", "knobs", "conv2d", "h=0"], "h must be a positive integer"),
    (["list", "knobs"], "needs a layer"),
    (["compile", *TINY, "--template", "conv2d/nhwc_direct", "--knob", "co_tile=abc"], "outside its space"),
    (["compile", *TINY, "--template", "conv2d/nhwc_direct", "--knob", "co_tile"], "not of the form name=value"),
    (["compile", *TINY, "--template", "../../etc/passwd"], "template name"),
    (["compile", *TINY, "--target", "pentium"], "unknown target"),
    (["tune", *TINY, "--strategy", "simulated_annealing"], "unknown strategy"),
    (["export", *TINY, "--out", "/dev/null/k"], "convsched: error:"),
]


@pytest.mark.parametrize("argv,msg", USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, argv, msg):
    rc, out, err = run(capsys, *argv, "--log", tmp_path) if argv[0] != "list" else run(capsys, *argv)
    assert rc == 2, (out, err)
    assert "convsched: error:" in err and msg in err and "Traceback" not in err


ARGPARSE_ERRORS = [["tune", *TINY, "--timeout", "0"], ["tune", *TINY, "--timeout", "-1"],
                   ["tune", *TINY, "--timeout", "nan"], ["tune", *TINY, "--timeout", "inf"],
                   ["tune", *TINY, "--trials", "0"], ["tune", *TINY, "--trials", "1.5"],
                   ["tune", *TINY, "--workers", "0"], ["tune", *TINY, "--time-budget", "-5"],
                   ["bench", *TINY, "--repeat", "0"], ["demo", "--trials", "-2"], ["list", "nothing"]]


@pytest.mark.parametrize("argv", ARGPARSE_ERRORS, ids=" ".join)
def test_bad_options_are_argparse_errors(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and "error: argument" in err and "Traceback" not in err


def test_show_survives_bad_logs_and_unwritable_plots(capsys, tmp_path):
    host = cs.target.host()
    log = records.log_path(host, tmp_path)
    layer = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
    d = cs.schedule.get_template("conv2d/nhwc_direct").defaults(layer, host)
    records.append(log, records.make_record(layer, host, "conv2d/nhwc_direct", d, "ok", rate=1.0, unit="GFLOP/s",
                                            timing={"median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "runs": 3}))
    with open(log, "a") as f:
        f.write('{"workload_key": "x", "template": "a/b", "knobs": "oops"}\nnot json\n')
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt line\(s\) \(line 3\); skipped 1 malformed record"):
        rc, out, err = run(capsys, "show", "--log", tmp_path)
    assert rc == 0 and "1 workloads with a verified record" in out and "Traceback" not in err
    rc, out, err = run(capsys, "show", "--log", tmp_path, "--plot", tmp_path / "no_such_dir" / "p.png")
    assert rc == 2 and "convsched: error:" in err and "Traceback" not in err
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.warns(UserWarning, match="cannot read tuning records"):
        rc, out, err = run(capsys, "show", "--log", tmp_path / "dir.jsonl")
    assert rc == 0 and "no records" in out
    assert cli._format_warning("a record was skipped", UserWarning, "records.py", 1) == \
        "convsched: warning: a record was skipped\n"


def test_internal_errors_are_one_line_unless_debugging(capsys, monkeypatch):
    def broken(args):
        raise KeyError("a bug of ours")
    monkeypatch.setattr(cli, "cmd_list", broken)
    monkeypatch.delenv("CONVSCHED_DEBUG", raising=False)
    rc, out, err = run(capsys, "list", "layers")
    assert rc == 1 and "convsched: internal error: KeyError" in err and "please report" in err
    assert "Traceback" not in err and "CONVSCHED_DEBUG=1" in err
    monkeypatch.setenv("CONVSCHED_DEBUG", "1")
    rc, out, err = run(capsys, "list", "layers")
    assert rc == 1 and "Traceback" in err and "a bug of ours" in err


def test_out_of_memory_is_a_user_error(capsys, monkeypatch):
    def too_big(args):
        raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (100000, 100000)")
    monkeypatch.setattr(cli, "cmd_compile", too_big)
    rc, out, err = run(capsys, "compile", *TINY)
    assert rc == 2 and "convsched: error: Unable to allocate" in err and "Traceback" not in err


def test_bad_environment_from_the_real_command(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "convsched")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "convsched.cli"]
    (tmp_path / "a_file").write_text("x")
    for env, msg in ((dict(TVM_NUM_THREADS="abc"), "TVM_NUM_THREADS must be a positive integer"),
                     (dict(CONVSCHED_HOST_CORES="two", CONVSCHED_TUNING_LOGS=str(tmp_path / "a_file")),
                      "CONVSCHED_HOST_CORES must be a positive integer")):
        r = subprocess.run(cmd + ["compile", *TINY], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env})
        assert r.returncode == 2 and f"convsched: error: {msg}" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_tuning_logs_that_name_a_file(capsys, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("CONVSCHED_TUNING_LOGS", str(tmp_path / "a_file"))
    rc, out, err = run(capsys, "compile", *TINY)
    assert rc == 2 and "CONVSCHED_TUNING_LOGS" in err and "Traceback" not in err
