"""The `convsched` command line: every subcommand, and clear errors for bad input."""
import subprocess
import sys
from pathlib import Path

import pytest

import convsched as cs
from convsched import records
from convsched.cli import main, make_layer, parse_value
from convsched.layers.registry import by_name as layer_registry

TINY = ["conv2d", "h=6", "w=6", "cin=8", "cout=16"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_registry_finds_every_layer_kind_by_scanning_the_package():
    reg = layer_registry()
    assert reg["conv2d"] is cs.layers.Conv2d and reg["pool2d"] is cs.layers.Pool2d
    for name in cs.layers.__all__:
        cls = getattr(cs.layers, name)
        if isinstance(cls, type) and issubclass(cls, cs.layers.Layer) and cls is not cs.layers.Layer:
            assert reg[cls.__name__.lower()] is cls
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("1,2") == (1, 2)
    assert parse_value("none") is None and parse_value("NHWC") == "NHWC" and parse_value("0.5") == 0.5
    assert make_layer("Conv2d", ["h=6", "w=6", "stride=2,1"]) == cs.layers.Conv2d(h=6, w=6, stride=(2, 1))


def test_list(capsys):
    rc, out, _ = run(capsys, "list", "layers")
    assert rc == 0 and "conv2d" in out and "pool2d" in out
    rc, out, _ = run(capsys, "list", "templates", "conv2d")
    assert rc == 0 and "conv2d/nhwc_direct" in out
    rc, out, _ = run(capsys, "list", "knobs", *TINY)
    assert rc == 0 and "co_tile" in out and "legal points" in out
    rc, out, _ = run(capsys, "list", "suites")
    assert rc == 0 and "resnet18" in out
    rc, out, _ = run(capsys, "list", "strategies")
    assert rc == 0 and "evolutionary" in out


@pytest.mark.parametrize("argv,msg", [
    (["tune", "conv3d", "h=6"], "unknown layer 'conv3d'"),
    (["tune", "conv2d", "hh=6"], "has no parameter 'hh'"),
    (["tune", "conv2d", "h"], "not of the form name=value"),
    (["tune", "conv2d", "h=-1"], "bad Conv2d parameters"),
    (["tune", *TINY, "--template", "conv2d/nope", "--trials", "1"], "unknown template 'conv2d/nope'"),
    (["tune", *TINY, "--strategy", "nope", "--trials", "1"], "unknown strategy"),
    (["tune", "--suite", "nope"], "unknown suite"),
    (["tune"], "give a layer"),
    (["compile", *TINY, "--template", "conv2d/nhwc_direct", "--knob", "co_tile=5"], "outside its space"),
    (["compile", *TINY, "--knob", "no_such_knob=1"], "unknown knob"),
    (["compile", *TINY, "--template", "conv2d/nope"], "unknown template"),
    (["tune", *TINY, "--rpc-tracker", "127.0.0.1:1", "--rpc-key", "k"], "not reachable"),
    (["bench", *TINY, "--target", "pentium"], "unknown target"),
])
def test_bad_input_is_a_clear_error(capsys, tmp_path, argv, msg):
    rc, out, err = run(capsys, *argv, *(["--log", str(tmp_path)] if argv[0] in ("tune", "compile", "bench")
                                        else []))
    assert rc == 2 and msg in err and "Traceback" not in err


def test_compile_bench_show_plot(capsys, tmp_path):
    rc, out, _ = run(capsys, "compile", *TINY, "--template", "conv2d/nhwc_direct", "--knob", "ow_tile=2",
                     "--bench", "--log", str(tmp_path))
    assert rc == 0 and "matches the numpy reference" in out and "ow_tile=2" in out and "GFLOP/s" in out
    rc, out, _ = run(capsys, "show", "--log", str(tmp_path))
    assert rc == 0 and "no records" in out
    # a log with two workloads: show prints the best of each, --plot draws best-so-far curves
    host = cs.target.host()
    path = records.log_path(host, tmp_path)
    t = cs.schedule.get_template("conv2d/nhwc_direct")
    for layer in (cs.layers.Conv2d(h=6, w=6, cin=8, cout=16), cs.layers.Conv2d(h=6, w=6, cin=8, cout=8)):
        d = t.defaults(layer, host)
        for i, ms in enumerate((3.0, 1.0, 2.0)):
            records.append(path, records.make_record(
                layer, host, t.name, {**d, "unroll_kw": bool(i % 2)}, "ok",
                timing={"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 3}, rate=1 / ms, unit="GFLOP/s"))
    png = tmp_path / "best.png"
    rc, out, _ = run(capsys, "show", "--log", str(tmp_path), "--plot", str(png))
    assert rc == 0 and out.count("3 trials; best 1.000 ms") == 2
    assert png.stat().st_size > 1000
    rc, out, _ = run(capsys, "bench", *TINY, "--log", str(tmp_path), "--repeat", "3")
    assert rc == 0 and "tuned" in out


def test_tune_command_end_to_end(capsys, tmp_path):
    rc, out, _ = run(capsys, "tune", *TINY, "--trials", "2", "--strategy", "random", "--workers", "1",
                     "--template", "conv2d/nhwc_direct", "--log", str(tmp_path), "--quiet")
    assert rc == 0 and "best: conv2d/nhwc_direct" in out
    recs = records.read(records.log_path(cs.target.host(), tmp_path))
    searched = [r for r in recs if not records.is_confirm(r)]
    assert len(searched) == 2 and all(r["status"] == "ok" for r in recs)
    assert "confirmed over 5 interleaved rounds" in out


def test_export_command(capsys, tmp_path):
    if not hasattr(cs.Kernel, "export"):
        rc, _, err = run(capsys, "export", *TINY, "--out", str(tmp_path / "k"), "--log", str(tmp_path))
        assert rc == 2 and "export" in err
        return
    rc, out, err = run(capsys, "export", *TINY, "--out", str(tmp_path / "k"), "--log", str(tmp_path))
    assert rc == 0, err
    assert (tmp_path / "k").is_dir() and any((tmp_path / "k").iterdir())


def test_entry_point_runs():
    exe = Path(sys.executable).with_name("convsched")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "convsched.cli"]
    p = subprocess.run(cmd + ["list", "strategies"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "exhaustive" in p.stdout
