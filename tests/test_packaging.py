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
