"""Shared test setup: the reference check, the target matrix, and where tests may write.

The target matrix: kernel tests run for the host and for the named targets in MATRIX_CANDIDATES that the host
can execute (every ISA feature they use is present): on an AVX-512 host "host" + "x86-64-v3" (AVX2, emulated
popcount), on an AVX2 host "host" + "x86-64-v3" as well. Named targets the host cannot execute (NOT_EXECUTABLE,
e.g. the AVX-512 ones on an AVX2 host, or AMD's znver* with SSE4A on an Intel host) are compiled and their
assembly checked instead (test_targets.py). $CONVSCHED_TEST_TARGETS="host,x86-64-v2,..." overrides the matrix
(targets the host cannot execute are dropped from it). Expectations come from each target's model, never from
one CPU's numbers.

Tests never write into the checkout or the real home cache: the user's tuning records and the measured peaks
(and anything else XDG-cached) go to a directory of this test session, and each test gets its own records
directory. pip keeps its real cache (the wheel test installs from it).
"""
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import convsched as cs

_REAL_PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")
_SESSION_CACHE = tempfile.mkdtemp(prefix="convsched-test-cache-")
os.environ["PIP_CACHE_DIR"] = _REAL_PIP_CACHE
os.environ["XDG_CACHE_HOME"] = _SESSION_CACHE
os.environ["CONVSCHED_TUNING_LOGS"] = str(Path(_SESSION_CACHE) / "convsched" / "tuning_logs")
# Measured peaks are cached per user; tests measure into the session's cache (unless told where).
os.environ.setdefault("CONVSCHED_CACHE_DIR", str(Path(_SESSION_CACHE) / "convsched"))

MATRIX_CANDIDATES = ("x86-64-v3",)


def _matrix() -> list:
    host = cs.target.host()
    env = os.environ.get("CONVSCHED_TEST_TARGETS")
    names = [n.strip() for n in env.split(",") if n.strip()] if env else ["host", *MATRIX_CANDIDATES]
    return [n for n in dict.fromkeys(names) if n == "host" or cs.target.get(n).runs_on(host)]


MATRIX = _matrix()
NOT_EXECUTABLE = [n for n in cs.target.NAMED if not cs.target.get(n).runs_on(cs.target.host())]


def pytest_configure(config):
    # compile() warns once per workload when it falls back to the default template: expected in tests.
    warnings.filterwarnings("ignore", message="no tuning record")


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_records_dir(tmp_path_factory, monkeypatch):
    """Each test starts with an empty user records directory (a tune in one test never steers another)."""
    monkeypatch.setenv("CONVSCHED_TUNING_LOGS", str(tmp_path_factory.mktemp("user_records")))


def check_against_reference(layer, kernel, seed=0):
    """Run `kernel` on random inputs and compare with layer.reference(): exact for integer/bit layers."""
    xs = layer.random_inputs(seed)
    got = kernel(*xs)
    want = layer.reference(*xs)
    gots = got if isinstance(got, tuple) else (got,)
    wants = want if isinstance(want, tuple) else (want,)
    assert len(gots) == len(wants)
    for g, w in zip(gots, wants):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if layer.exact or np.dtype(w.dtype).kind in "iub":
            np.testing.assert_array_equal(g, w)
        else:
            rtol, atol = layer.tolerance()
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.fixture
def host():
    return cs.target.host()


@pytest.fixture(params=MATRIX)
def target(request):
    """Each target of the matrix the host can execute, as a Target."""
    return cs.target.get(request.param)


def check_nonfinite(layer, kernel, seed=0):
    """On inputs with inf, -inf and NaN planted (Layer.nonfinite_inputs) the kernel gives reference()'s answer,
    NaN and inf included (a finite-only algorithm's kernel through its exact fallback: kernel.FiniteOnly)."""
    xs = layer.nonfinite_inputs(seed)
    if xs is None:
        return
    with np.errstate(invalid="ignore", over="ignore"):         # inf - inf in the reference is the point
        why = layer.mismatch(kernel(*xs), layer.reference(*xs))
    assert why is None, f"{layer} on inf/NaN inputs: {why}"
