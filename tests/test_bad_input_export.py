"""Bad input, exported libraries: the C entry points return -1 with a message for every malformed argument (NULL
arrays, tensors, shapes and data; wrong ndim, shape, dtype, device, strides, byte_offset; outputs sharing
memory; bad thread counts), never crash; cs.load refuses missing, damaged and tampered directories.

The C cases run in a subprocess (ctypes and numpy only), one line of output per case, so a crash fails the test
and the last line names the case."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import convsched as cs
from convsched.export import ExportError
from convsched.export import manifest as M

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="exporting needs a C compiler (gcc)")
CONV = cs.layers.Conv2d(h=6, w=6, cin=8, cout=16)
BCONV = cs.layers.BinaryConv2d(h=5, w=5, cin=70, cout=8)


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad") / "badlib"
    cs.export.export({"conv": cs.compile(CONV), "bconv": cs.compile(BCONV)}, d)
    return d


CASES = r'''
import ctypes, json, sys
import numpy as np

lib = ctypes.CDLL(sys.argv[1])
only = sys.argv[2] if len(sys.argv) > 2 else None


class Dev(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", Dev), ("ndim", ctypes.c_int32), ("dtype", DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


call = lib.badlib_call
call.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
lib.badlib_last_error.restype = ctypes.c_char_p
conv = lib.badlib_conv
conv.argtypes = [ctypes.c_void_p] * 3
keep = []


def aligned(shape, dtype):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(n + 64, np.uint8)
    keep.append(raw)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n].view(dtype).reshape(shape)


def ints(values):
    if values is None:
        return None
    arr = (ctypes.c_int64 * len(values))(*values)
    keep.append(arr)
    return arr


CODES = {"float32": (2, 32), "uint64": (1, 64), "int32": (0, 32)}


def tensor(a, **kw):
    code, bits = CODES[a.dtype.name]
    t = Tensor(a.ctypes.data, Dev(1, 0), a.ndim, DType(code, bits, 1), ints(a.shape), None, 0)
    for k, v in kw.items():
        setattr(t, k, ints(v) if k in ("shape", "strides") else v)
    keep.append(t)
    return t


def array_of(tensors):
    arr = (ctypes.POINTER(Tensor) * max(1, len(tensors)))(*[None if t is None else ctypes.pointer(t)
                                                              for t in tensors])
    keep.append(arr)
    return ctypes.cast(arr, ctypes.c_void_p)


x, w, y = aligned((1, 6, 6, 8), "float32"), aligned((3, 3, 8, 16), "float32"), aligned((1, 6, 6, 16), "float32")
bx, bw, by = aligned((1, 5, 5, 2), "uint64"), aligned((8, 3, 3, 2), "uint64"), aligned((1, 3, 3, 8), "int32")
X = lambda **kw: [tensor(x, **kw), tensor(w), tensor(y)]        # noqa: E731
cases = {
    "ok": lambda: call(b"conv", array_of(X()), 3),
    "explicit compact strides": lambda: call(b"conv", array_of(X(strides=[288, 48, 8, 1])), 3),
    "binary ok": lambda: call(b"bconv", array_of([tensor(bx), tensor(bw), tensor(by)]), 3),
    "args NULL": lambda: call(b"conv", None, 3),
    "kernel name NULL": lambda: call(None, array_of(X()), 3),
    "unknown kernel": lambda: call(b"nope", array_of(X()), 3),
    "nargs 2": lambda: call(b"conv", array_of(X()), 2),
    "nargs -1": lambda: call(b"conv", array_of(X()), -1),
    "nargs 1000": lambda: call(b"conv", array_of(X()), 1000),
    "tensor NULL": lambda: call(b"conv", array_of([None, tensor(w), tensor(y)]), 3),
    "shape NULL": lambda: call(b"conv", array_of(X(shape=None)), 3),
    "data NULL": lambda: call(b"conv", array_of(X(data=None)), 3),
    "data misaligned": lambda: call(b"conv", array_of(X(data=x.ctypes.data + 4)), 3),
    "ndim 3": lambda: call(b"conv", array_of(X(ndim=3)), 3),
    "ndim 7": lambda: call(b"conv", array_of(X(ndim=7)), 3),
    "ndim -1": lambda: call(b"conv", array_of(X(ndim=-1)), 3),
    "shape wrong": lambda: call(b"conv", array_of(X(shape=[1, 6, 6, 9])), 3),
    "shape negative": lambda: call(b"conv", array_of(X(shape=[1, -6, 6, 8])), 3),
    "dtype int": lambda: call(b"conv", array_of(X(dtype=DType(0, 32, 1))), 3),
    "dtype float64": lambda: call(b"conv", array_of(X(dtype=DType(2, 64, 1))), 3),
    "dtype lanes 4": lambda: call(b"conv", array_of(X(dtype=DType(2, 32, 4))), 3),
    "device GPU": lambda: call(b"conv", array_of(X(device=Dev(2, 0))), 3),
    "device id 1": lambda: call(b"conv", array_of(X(device=Dev(1, 1))), 3),
    "strides not compact": lambda: call(b"conv", array_of(X(strides=[1, 1, 1, 1])), 3),
    "strides transposed": lambda: call(b"conv", array_of(X(strides=[288, 8, 48, 1])), 3),
    "byte_offset": lambda: call(b"conv", array_of(X(byte_offset=64, data=x.ctypes.data - 64)), 3),
    "output over input": lambda: call(b"conv", array_of([tensor(x), tensor(w), tensor(y, data=x.ctypes.data)]), 3),
    "binary dtype float": lambda: call(b"bconv", array_of([tensor(bx, dtype=DType(2, 64, 1)), tensor(bw),
                                                           tensor(by)]), 3),
    "direct x NULL": lambda: conv(None, w.ctypes.data, y.ctypes.data),
    "direct misaligned": lambda: conv(x.ctypes.data + 16, w.ctypes.data, y.ctypes.data),
    "direct output over input": lambda: conv(x.ctypes.data, w.ctypes.data, x.ctypes.data + 64),
    "direct output over weights": lambda: conv(x.ctypes.data, w.ctypes.data, w.ctypes.data),
    "threads -1": lambda: lib.badlib_set_num_threads(-1),
}
for name, run in cases.items():
    if only and name != only:
        continue
    print(json.dumps({"case": name}), flush=True)      # the last line names a case that crashed
    rc = run()
    print(json.dumps({"case": name, "rc": rc, "error": lib.badlib_last_error().decode()}), flush=True)
'''

# case -> what its message must say (every case but the ok ones returns -1)
EXPECT = {
    "args NULL": "argument array is NULL", "kernel name NULL": "kernel name is NULL",
    "unknown kernel": "no kernel named 'nope'", "nargs 2": "takes 3 tensors, got 2",
    "nargs -1": "takes 3 tensors, got -1", "nargs 1000": "takes 3 tensors, got 1000",
    "tensor NULL": "tensor 0 (x) is NULL", "shape NULL": "shape is NULL", "data NULL": "data is NULL",
    "data misaligned": "not 64-byte aligned", "ndim 3": "has ndim 3, expected 4", "ndim 7": "has ndim 7",
    "ndim -1": "has ndim -1", "shape wrong": "shape[3] is 9, expected 8", "shape negative": "shape[1] is -6",
    "dtype int": "dtype (code 0, bits 32", "dtype float64": "bits 64", "dtype lanes 4": "lanes 4",
    "device GPU": "device (2, 0)", "device id 1": "device (1, 1)", "strides not compact": "strides[2] is 1",
    "strides transposed": "strides[2] is 48, expected 8", "byte_offset": "byte_offset is 64",
    "output over input": "output 'y' shares memory with argument 'x'",
    "binary dtype float": "tensor 0 (x): dtype (code 2, bits 64",
    "direct x NULL": "argument 'x' is NULL", "direct misaligned": "not 64-byte aligned",
    "direct output over input": "output 'y' shares memory with argument 'x'",
    "direct output over weights": "output 'y' shares memory with argument 'w'",
    "threads -1": "number of threads must be >= 0",
}


def run_cases(lib_dir, *args, **env):
    r = subprocess.run([sys.executable, "-c", CASES, str(lib_dir / "libbadlib.so"), *args], capture_output=True,
                       text=True, timeout=120, env={**os.environ, **env})
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0, f"crashed ({r.returncode}) in case {lines[-1]['case'] if lines else '?'}: {r.stderr}"
    return {d["case"]: d for d in lines if "rc" in d}


def test_malformed_arguments_return_minus_one_with_a_message(lib_dir):
    got = run_cases(lib_dir)
    assert {k: got[k]["rc"] for k in ("ok", "explicit compact strides", "binary ok")} == {
        "ok": 0, "explicit compact strides": 0, "binary ok": 0}
    for case, msg in EXPECT.items():
        assert got[case]["rc"] == -1 and msg in got[case]["error"], (case, got[case])


@pytest.mark.parametrize("var,value", [("CONVSCHED_NUM_THREADS", "abc"), ("CONVSCHED_NUM_THREADS", "0"),
                                       ("TVM_NUM_THREADS", "-2"), ("TVM_NUM_THREADS", "1.5")])
def test_thread_variables_that_are_no_counts_are_an_error_of_the_first_call(lib_dir, var, value):
    got = run_cases(lib_dir, "ok", **{var: value})
    assert got["ok"]["rc"] == -1 and f"{var} must be a positive integer" in got["ok"]["error"]


def test_load_reports_a_bad_thread_variable_at_the_first_call(lib_dir, tmp_path, monkeypatch):
    copy = shutil.copytree(lib_dir, tmp_path / "badlib")            # a fresh library: first call still to come
    k = cs.load(copy, name="conv")
    monkeypatch.setenv("CONVSCHED_NUM_THREADS", "many")
    with pytest.raises(cs.ConvschedError, match="CONVSCHED_NUM_THREADS must be a positive integer"):
        k(*CONV.random_inputs(0))


def _rewrite(directory, change):
    """Edit manifest.json and recompute its digest: damaged in a way the digest cannot see."""
    m = json.loads((directory / "manifest.json").read_text())
    change(m)
    m["manifest_digest"] = M.digest(m)
    (directory / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("what,damage,msg", [
    ("missing", lambda d: shutil.rmtree(d), "no such export directory"),
    ("a file", lambda d: (shutil.rmtree(d), d.write_text("x")), "no such export directory"),
    ("no manifest", lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    ("manifest not JSON", lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
    ("manifest a list", lambda d: (d / "manifest.json").write_text("[]"), "not a convsched export manifest"),
    ("manifest a directory", lambda d: ((d / "manifest.json").unlink(), (d / "manifest.json").mkdir()),
     "no manifest.json"),
    ("manifest edited", lambda d: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace('"h": 6', '"h": 7', 1)), "modified after export"),
    ("library missing", lambda d: (d / "libbadlib.so").unlink(), "is missing"),
    ("library edited", lambda d: (d / "libbadlib.so").write_bytes((d / "libbadlib.so").read_bytes() + b"x"),
     "modified after export"),
    ("kernels a string", lambda d: _rewrite(d, lambda m: m.update(kernels="conv")), "kernels is not a list"),
    ("library elsewhere", lambda d: _rewrite(d, lambda m: m.update(library="../../libc.so.6")), "is not libbadlib"),
    ("name not C", lambda d: _rewrite(d, lambda m: m.update(name="bad lib")), "not a C identifier"),
    ("target a string", lambda d: _rewrite(d, lambda m: m.update(target="host")), "target is not"),
    ("arguments malformed", lambda d: _rewrite(d, lambda m: m["kernels"][0].update(arguments=[1])),
     "arguments are malformed"),
    ("layer malformed", lambda d: _rewrite(d, lambda m: m["kernels"][0].update(layer="Conv2d")),
     "layer or schedule is malformed"),
])
def test_load_refuses_missing_damaged_and_tampered_directories(lib_dir, tmp_path, what, damage, msg):
    d = shutil.copytree(lib_dir, tmp_path / "badlib")
    damage(d)
    with pytest.raises(ExportError, match=msg):
        cs.load(d, name="conv")


def test_load_wants_a_path_and_a_kernel_it_has(lib_dir):
    for bad in (None, 5, ["x"]):
        with pytest.raises(ExportError, match="is a path"):
            cs.load(bad)
    with pytest.raises(ExportError, match="holds 2 kernels"):
        cs.load(lib_dir)
    with pytest.raises(ExportError, match="no kernel named 'nope'"):
        cs.load(lib_dir, name="nope")
    k = cs.load(lib_dir, name="bconv")
    xs = BCONV.random_inputs(0)
    assert np.array_equal(k(*xs), BCONV.reference(*xs))
