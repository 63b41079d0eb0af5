"""convsched outside its checkout: the pinned TVM (a clear error without it), and a wheel installed into a
fresh virtual environment that compiles, tunes, exports and runs from a directory outside the checkout."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import convsched as cs
from convsched import version

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_pins_the_versions_convsched_checks():
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"apache-tvm=={version.TVM_PIN}" in project["dependencies"]
    assert f"apache-tvm-ffi=={version.TVM_FFI_PIN}" in project["dependencies"]
    assert project["version"] == cs.__version__


def _import_convsched(prelude: str, **env) -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport convsched\nprint('imported')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_without_tvm_the_import_error_names_the_pins():
    r = _import_convsched("import sys; sys.modules['tvm'] = None   # as if TVM were not installed")
    assert r.returncode != 0 and "imported" not in r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: convsched needs Apache TVM 0.27.0.post1 with tvm-ffi 0.1.14.post1")
    assert "pip install 'apache-tvm==0.27.0.post1' 'apache-tvm-ffi==0.1.14.post1'" in last


def test_another_tvm_version_is_refused_unless_asked_for():
    prelude = "import tvm; tvm.__version__ = '0.26.0'"
    r = _import_convsched(prelude)
    assert r.returncode != 0
    assert "but this environment has TVM 0.26.0 with tvm-ffi 0.1.14.post1" in r.stderr.strip().splitlines()[-1]
    r = _import_convsched(prelude, CONVSCHED_IGNORE_TVM_VERSION="1")
    assert r.returncode == 0 and "imported" in r.stdout and "at your own risk" in r.stderr


# ------------------------------------------------------------------------------------ the wheel, installed
# Runs where a new user would: a fresh virtual environment (dependencies from pip's cache, else PyPI), a
# working directory outside the checkout, the XDG cache of its own. ~1-2 minutes, most of it installing TVM.
INSTALLED_SCRIPT = r'''
import json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np
import convsched as cs
from convsched import paths, records

site = Path(sys.argv[1]).resolve()
pkg = Path(cs.__file__).resolve().parent
assert pkg.parent == site, (pkg, site)
assert paths.shipped_templates() == pkg / "_data" / "schedules", paths.shipped_templates()
assert paths.shipped_records() == pkg / "_data" / "tuning_logs" and list(paths.shipped_records().glob("*.jsonl"))
assert "conv2d/nhwc_direct" in cs.schedule.list_templates("conv2d")
assert records.default_dir() == Path(os.environ["XDG_CACHE_HOME"]) / "convsched" / "tuning_logs"

layer = cs.layers.Conv2d(h=8, cin=8, cout=16)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    k = cs.compile(layer)
x, w = layer.random_inputs()
assert layer.mismatch(k(x, w), layer.reference(x, w)) is None
res = cs.tune(layer, trials=2, workers=1, confirm=2, confirm_rounds=2, progress=False, timeout=60)
assert res.best is not None and Path(res.log).parent == records.default_dir(), res.log
assert any(records.is_confirm(r) for r in records.read(res.log))
tuned = cs.compile(layer)
assert (tuned.schedule.template, tuned.schedule.knob_dict) == (res.best["template"], res.best["knobs"])
out = tuned.export("exported")
again = cs.load(out)
assert layer.mismatch(again(x, w), layer.reference(x, w)) is None
print(json.dumps({"log": res.log, "export": str(out.resolve())}))
'''


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _checkout_state() -> str:
    r = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def _source_copy(dst: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to dst: the wheel is built from there, so
    building leaves nothing (build/, *.egg-info) in the checkout."""
    r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout: the wheel test copies the checkout's files")
    for name in r.stdout.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).write_bytes(src.read_bytes())
    return dst


@pytest.mark.wheel
def test_the_wheel_works_in_a_fresh_venv_outside_the_checkout(tmp_path):
    before = _checkout_state()
    src = _source_copy(tmp_path / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run(pip + ["wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("convsched-*.whl")
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "convsched/_data/schedules/conv2d/nhwc_direct.py" in names
    assert any(n.startswith("convsched/_data/tuning_logs/") and n.endswith(".jsonl") for n in names)
    assert "convsched/export/shim.c" in names and not any("__pycache__" in n for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "--disable-pip-version-check", "-q", "install", str(wheel)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    installed = _tree(site)

    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CONVSCHED_TUNING_LOGS", "CONVSCHED_CACHE_DIR",
                                                              "PYTHONPATH", "CONVSCHED_SCHEDULES")}
    env.update(XDG_CACHE_HOME=str(cache), HOME=str(tmp_path / "home"), PATH=f"{venv / 'bin'}:{env['PATH']}")
    r = subprocess.run([str(py), "-c", INSTALLED_SCRIPT, str(site)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    result = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    assert Path(result["log"]).is_relative_to(cache) and Path(result["export"]).is_relative_to(work)

    # the CLI, installed: `convsched` and `python -m convsched`, from the same directory
    r = subprocess.run([str(venv / "bin" / "convsched"), "--version"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(f"convsched {cs.__version__} (TVM "), r.stderr
    r = subprocess.run([str(py), "-m", "convsched", "run", "conv2d", "h=6", "cin=8", "cout=8", "--check",
                        "--print-time", "--repeat", "3", "-o", "y.npz"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "matches the numpy reference" in r.stdout, r.stdout + r.stderr[-3000:]
    assert (work / "y.npz").is_file()

    assert _tree(site) == installed, "something was written into site-packages"
    assert _checkout_state() == before, "something was written into the checkout"
