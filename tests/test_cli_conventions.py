"""The command line's conventions, after TVM's tvmc: --version, `run` with .npz inputs and outputs and
--print-time, -o/--output, --tuning-records, exit codes (0 done, 1 internal failure, 2 user error)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import convsched as cs
from convsched import cli, records
from convsched.cli import main

TINY = ["conv2d", "h=6", "cin=8", "cout=16"]         # w follows h: 6x6
LAYER = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_version_names_convsched_tvm_and_tvm_ffi(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.strip() == f"convsched {cs.__version__} (TVM {cs.version.TVM_PIN}, tvm-ffi {cs.version.TVM_FFI_PIN})"
    p = subprocess.run([sys.executable, "-m", "convsched", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == out


def test_run_with_random_inputs_prints_outputs_and_time(capsys, tmp_path):
    rc, out, _ = run(capsys, "run", *TINY, "--print-time", "--repeat", "3", "--check")
    assert rc == 0 and "y: float32 [1, 6, 6, 16]" in out and "matches the numpy reference" in out
    assert "time: " in out and "Python call" in out


def test_run_reads_inputs_by_name_and_saves_outputs(capsys, tmp_path):
    x, w = LAYER.random_inputs(5)
    np.savez(tmp_path / "in.npz", w=w, x=x)                  # by name: the order in the file does not matter
    rc, out, _ = run(capsys, "run", *TINY, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz")
    assert rc == 0 and "wrote y" in out
    with np.load(tmp_path / "out.npz") as f:
        assert f.files == ["y"]
        np.testing.assert_allclose(f["y"], LAYER.reference(x, w), rtol=1e-4, atol=1e-4)
    np.savez(tmp_path / "bad.npz", x=x, weights=w)
    rc, _, err = run(capsys, "run", *TINY, "--inputs", tmp_path / "bad.npz")
    assert rc == 2 and "missing w; unknown weights" in err and "w float32[3, 3, 8, 16]" in err
    np.savez(tmp_path / "shape.npz", x=x[:, :5], w=w)
    rc, _, err = run(capsys, "run", *TINY, "--inputs", tmp_path / "shape.npz")
    assert rc == 2 and "'x': shape is (1, 5, 6, 8)" in err and "Traceback" not in err
    rc, _, err = run(capsys, "run", *TINY, "--inputs", tmp_path / "none.npz")
    assert rc == 2 and "cannot read inputs" in err


def test_run_an_export_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "export", *TINY, "-o", tmp_path / "k")
    assert rc == 0, err
    x, w = LAYER.random_inputs(2)
    np.savez(tmp_path / "in.npz", x=x, w=w)
    rc, out, _ = run(capsys, "run", tmp_path / "k", "--inputs", tmp_path / "in.npz", "--check")
    assert rc == 0 and f"loaded from {tmp_path / 'k'}" in out and "matches the numpy reference" in out
    rc, _, err = run(capsys, "run", tmp_path / "k", "h=3")
    assert rc == 2 and "takes no layer parameters" in err


def test_tune_writes_to_output_else_to_the_user_directory(capsys, tmp_path):
    host = cs.target.host()
    args = ["tune", *TINY, "--trials", "1", "--workers", "1", "--template", "conv2d/nhwc_direct", "--quiet",
            "--confirm", "0"]
    rc, out, _ = run(capsys, *args, "-o", tmp_path / "mine.jsonl")
    assert rc == 0 and len(records.read(tmp_path / "mine.jsonl")) == 1
    rc, out, _ = run(capsys, *args)
    user = records.log_path(host)
    assert rc == 0 and str(user) in out and len(records.read(user)) == 1
    assert user.parent == records.default_dir() and str(user).startswith(os.environ["CONVSCHED_TUNING_LOGS"])


def test_tuning_records_steer_compile_and_bench(capsys, tmp_path):
    host = cs.target.host()
    tmpl = cs.schedule.get_template("conv2d/nhwc_direct")
    knobs = {**tmpl.defaults(LAYER, host), "ow_tile": 2, "unroll_kw": True}
    assert tmpl.constraint(LAYER, host, knobs) is True
    records.append(tmp_path / "r.jsonl", records.make_record(
        LAYER, host, tmpl.name, knobs, "ok", timing={"median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "runs": 3},
        rate=1.0, unit="GFLOP/s"))
    rc, out, _ = run(capsys, "compile", *TINY, "--tuning-records", tmp_path / "r.jsonl", "-o", tmp_path / "exp")
    assert rc == 0 and "ow_tile=2" in out and (tmp_path / "exp" / "manifest.json").is_file()
    rc, out, _ = run(capsys, "compile", *TINY)                  # the user's (empty) and shipped records
    assert rc == 0 and "ow_tile=2" not in out
    rc, out, _ = run(capsys, "bench", *TINY, "--tuning-records", tmp_path / "r.jsonl", "--repeat", "3")
    assert rc == 0 and " tuned " in out
    rc, out, _ = run(capsys, "show", "--tuning-records", tmp_path / "r.jsonl")
    assert rc == 0 and "1 trials; best 1.000 ms" in out


def test_exit_codes(capsys, monkeypatch):
    rc, _, err = run(capsys, "compile", "conv3d")
    assert rc == 2 and "unknown layer" in err
    with pytest.raises(SystemExit) as e:
        main(["compile", "--no-such-flag"])
    assert e.value.code == 2

    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli, "cmd_list", broken)
    rc, _, err = run(capsys, "list", "layers")
    assert rc == 1 and "RuntimeError: a bug" in err and "internal error" in err

    def build_fails(args):
        raise cs.BuildError("TVM could not compile")
    monkeypatch.setattr(cli, "cmd_list", build_fails)
    rc, _, err = run(capsys, "list", "layers")
    assert rc == 1 and "internal error: TVM could not compile" in err


def test_list_layers_shows_which_sizes_follow(capsys):
    rc, out, _ = run(capsys, "list", "layers")
    conv = next(line for line in out.splitlines() if line.startswith("conv2d "))
    assert rc == 0 and "h=56, w=(h)" in conv and "kh=3, kw=(kh)" in conv
