"""Exported kernels: library + header + manifest, cs.load, several kernels per library, the C and C++
example built with gcc, wrong arguments through the C entry points, missing CPU features, tampered files."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import convsched as cs
from convsched.export import ExportError, export
from convsched.kernel import load, load_all
from conftest import check_against_reference

warnings.filterwarnings("ignore", message="no tuning record")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c_loader"
L = cs.layers

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="exporting needs a C compiler (gcc)")
pytestmark = needs_gcc

CONV = L.Conv2d(h=9, w=10, cin=16, cout=24, kh=3, kw=3, pad=1)
BCONV = L.BinaryConv2d(h=8, w=9, cin=96, cout=40, kh=3, kw=3, pad=0)
POOL = L.Pool2d(h=12, w=12, c=16, kind="max", k=2, stride=2)


@pytest.fixture(scope="module")
def conv_kernel():
    return cs.compile(CONV)


@pytest.fixture(scope="module")
def conv_dir(conv_kernel, tmp_path_factory):
    return conv_kernel.export(tmp_path_factory.mktemp("exp") / "conv")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """examples/c_loader: export conv + binary conv into one library, write data, build the C and C++ loaders."""
    if shutil.which("make") is None or shutil.which("g++") is None:
        pytest.skip("the C example needs make and g++")
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_data
    finally:
        sys.path.remove(str(EXAMPLE))
    build = tmp_path_factory.mktemp("c_loader")
    make_data.main(build)
    r = subprocess.run(["make", "-s", "-C", str(EXAMPLE), f"BUILD={build}", "all"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return build


def run(cmd, **env):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


# ------------------------------------------------------------------------------------- export and load
def test_export_writes_library_header_manifest(conv_dir, conv_kernel):
    assert sorted(p.name for p in conv_dir.iterdir()) == ["conv.h", "libconv.so", "manifest.json"]
    m = json.loads((conv_dir / "manifest.json").read_text())
    (k,) = m["kernels"]
    assert k["entry"] == "conv_conv2d" and k["layer"]["class"] == "Conv2d"
    assert k["layer"]["params"]["cin"] == 16 and k["workload_key"] == CONV.workload_key
    assert [(a["name"], a["role"], tuple(a["shape"]), a["dtype"]) for a in k["arguments"]] == \
        [(s.name, r, s.shape, s.dtype) for r, ss in (("input", CONV.input_specs()), ("output", CONV.output_specs()))
         for s in ss]
    assert k["arguments"][0]["layout"] == "NHWC" and k["arguments"][1]["layout"] == "HWIO"
    assert k["schedule_text"] == conv_kernel.schedule.text()
    assert m["target"]["mcpu"] == conv_kernel.target.mcpu and "avx2" in m["required_cpu_features"]
    assert {"convsched", "tvm", "tvm_ffi", "compiler"} <= set(m["versions"])
    header = (conv_dir / "conv.h").read_text()
    assert "int conv_conv2d(const float* x, const float* w, float* y);" in header
    assert "#define CONV_CONV2D_X_SHAPE {1, 9, 10, 16}" in header and 'extern "C"' in header
    # nothing but libc (and pthreads) at run time: no TVM library
    deps = run(["ldd", conv_dir / "libconv.so"]).stdout if shutil.which("ldd") else ""
    assert "tvm" not in deps


def test_load_runs_without_recompiling(conv_dir, conv_kernel):
    k = cs.load(conv_dir)
    assert isinstance(k, cs.Kernel) and k.layer == CONV and k.schedule == conv_kernel.schedule
    assert "loaded from" in k.source and k.target.key == conv_kernel.target.key
    check_against_reference(CONV, k, seed=3)
    xs = CONV.random_inputs(4)
    np.testing.assert_array_equal(k(*xs), conv_kernel(*xs))   # the same machine code, the same bits
    with pytest.raises(ValueError, match="shape"):
        k(xs[0][:, :-1], xs[1])
    t = k.benchmark(repeat=3, min_repeat_ms=2)
    assert t.median_ms > 0


def test_concurrent_calls_from_several_threads(conv_dir):
    """ctypes releases the GIL: calls overlap, and a launch while the pool is busy runs serially."""
    from concurrent.futures import ThreadPoolExecutor
    k = cs.load(conv_dir)
    inputs = [CONV.random_inputs(s) for s in range(4)]
    want = [CONV.reference(*xs) for xs in inputs]

    def work(i):
        return all(np.allclose(k(*inputs[i % 4]), want[i % 4], *CONV.tolerance()) for _ in range(10))

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(work, range(8)))


def test_binary_conv_exact(tmp_path):
    k = cs.load(cs.compile(BCONV).export(tmp_path / "bconv"))
    assert "uint64_t" in (tmp_path / "bconv" / "bconv.h").read_text()
    for seed in (0, 1):
        check_against_reference(BCONV, k, seed=seed)


def test_several_kernels_in_one_library(tmp_path):
    ks = {"conv1": cs.compile(CONV), "pool": cs.compile(POOL), "bconv": cs.compile(BCONV)}
    d = export(ks, tmp_path / "net")
    m = json.loads((d / "manifest.json").read_text())
    assert [k["entry"] for k in m["kernels"]] == ["net_conv1", "net_pool", "net_bconv"]
    assert len({k["tvm_symbol"] for k in m["kernels"]}) == 3
    dll = ctypes.CDLL(str(d / "libnet.so"))
    for k in m["kernels"]:
        assert hasattr(dll, k["entry"])
    loaded = load_all(d)
    assert list(loaded) == ["conv1", "pool", "bconv"]
    for name, k in loaded.items():
        check_against_reference(ks[name].layer, k, seed=5)
    with pytest.raises(ExportError, match="3 kernels"):
        load(d)
    assert load(d, name="pool").layer == POOL
    with pytest.raises(ExportError, match="no kernel named"):
        load(d, name="nope")
    # a list of kernels is named after the layer kinds
    d2 = export([ks["conv1"], cs.compile(L.Conv2d(h=5, w=5, cin=8, cout=8))], tmp_path / "two")
    assert list(load_all(d2)) == ["conv2d0", "conv2d1"]


def test_export_refuses_bad_requests(conv_kernel, tmp_path):
    with pytest.raises(ExportError, match="not a C identifier"):
        export({"1conv": conv_kernel}, tmp_path / "a")
    with pytest.raises(ExportError, match="not a C identifier"):
        conv_kernel.export(tmp_path / "a-b")
    other = cs.compile(CONV, target="x86-64-v2")
    with pytest.raises(ExportError, match="share one target"):
        export({"a": conv_kernel, "b": other}, tmp_path / "c")
    with pytest.raises(ExportError, match="no C compiler"):
        export(conv_kernel, tmp_path / "d", cc="no-such-cc")


def test_export_again_into_the_same_directory(tmp_path):
    """A second export into a directory whose library this process already loaded: load() gets the new one."""
    layer = L.Conv2d(h=6, w=6, cin=8, cout=16)
    a = cs.compile(layer, template="conv2d/nhwc_direct")
    d = a.export(tmp_path / "again")
    assert cs.load(d).schedule == a.schedule
    b = cs.compile(layer, schedule=lambda s, layer: None)          # no schedule steps: other machine code
    b.export(d)
    k = cs.load(d)
    assert k.schedule == b.schedule != a.schedule
    check_against_reference(layer, k)


def test_cli_export(tmp_path):
    from convsched.cli import main
    assert main(["export", "Conv2d", "h=6", "w=6", "cin=8", "cout=8", "stride=1,1", "--out", str(tmp_path / "cli")]) == 0
    k = cs.load(tmp_path / "cli")
    assert k.layer == L.Conv2d(h=6, w=6, cin=8, cout=8)
    check_against_reference(k.layer, k)


# ------------------------------------------------------------------------------------ the C example
def test_c_and_cpp_programs_match_numpy(example):
    r = run([example / "loader", example / "data"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "conv: OK" in r.stdout and "bconv: OK" in r.stdout and "0 differ" in r.stdout
    r = run([example / "loader_cpp", example / "data"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "c++ conv: OK" in r.stdout and "c++ bconv: OK" in r.stdout


def test_c_wrong_arguments_return_error_and_message(example):
    r = run([example / "loader", example / "data", "--errors"])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {ln.split(":")[0]: ln for ln in r.stdout.splitlines() if ln.startswith("error ")}
    assert len(lines) == 7 and all("rc=-1 OK" in ln for ln in lines.values()), r.stdout
    assert "is NULL" in lines["error null-pointer"]
    assert "not 64-byte aligned" in lines["error misaligned"]
    assert "no kernel named 'no_such_kernel'" in lines["error unknown-kernel"]
    assert "takes 3 tensors, got 2" in lines["error argument-count"]
    assert "shape" in lines["error wrong-shape"] and "dtype" in lines["error wrong-dtype"]
    assert "ndim" in lines["error wrong-ndim"]


def test_c_entry_from_python_reports_misalignment(conv_dir):
    k = cs.load(conv_dir)
    fn = k._built
    x, w = CONV.random_inputs(0)
    y = np.empty(CONV.output_specs()[0].shape, np.float32)
    raw = np.zeros(x.nbytes + 64 + 4, np.uint8)
    off = (-raw.ctypes.data) % 64 + 4
    bad = raw[off: off + x.nbytes].view(np.float32).reshape(x.shape)     # 4 bytes past a 64-byte boundary
    bad[...] = x
    with pytest.raises(cs.ConvschedError, match="not 64-byte aligned"):
        fn(bad, w, y)
    np.testing.assert_allclose(k(bad, w), CONV.reference(x, w), *CONV.tolerance())  # Kernel copies it aligned


# ------------------------------------------------------------------------------------- CPU features
def test_simulated_missing_feature(example, conv_dir, monkeypatch):
    r = run([example / "loader", example / "data"], CONVSCHED_HIDE_CPU_FEATURES="sse4.2,avx2")
    assert r.returncode == 2 and "illegal instruction" in r.stderr and "avx2" in r.stderr, r.stderr
    assert "conv: OK" not in r.stdout
    monkeypatch.setenv("CONVSCHED_HIDE_CPU_FEATURES", "fma")
    with pytest.raises(cs.TargetError, match="lacks: fma"):
        cs.load(conv_dir)
    monkeypatch.delenv("CONVSCHED_HIDE_CPU_FEATURES")
    check_against_reference(CONV, cs.load(conv_dir))     # the same library works again without the hook


def test_host_export_passes_the_c_feature_check(conv_dir):
    """The shim's CPUID table agrees with LLVM's view of this host: every required feature is found."""
    m = json.loads((conv_dir / "manifest.json").read_text())
    host = cs.target.host()
    assert set(m["required_cpu_features"]) <= host.features
    dll = ctypes.CDLL(str(conv_dir / "libconv.so"))
    assert dll.conv_check_cpu() == 0


def test_real_missing_feature_avx512(tmp_path):
    if cs.target.host().has("avx512f"):
        pytest.skip("this host has AVX-512: no real missing-feature case")
    d = cs.compile(CONV, target="znver4").export(tmp_path / "z4")
    with pytest.raises(cs.TargetError, match="avx512f") as e:
        cs.load(d)
    assert "illegal instruction" in str(e.value)
    # Calling the entry point anyway (from a separate process, in case it were to crash): error code, no SIGILL.
    code = f"""
import ctypes, numpy as np
from convsched.kernel import aligned_empty
lib = ctypes.CDLL({str(d / 'libz4.so')!r})
lib.z4_last_error.restype = ctypes.c_char_p
bufs = [aligned_empty(s, 'float32') for s in ({CONV.input_specs()[0].shape}, {CONV.input_specs()[1].shape},
        {CONV.output_specs()[0].shape})]
print(lib.z4_conv2d(*[ctypes.c_void_p(b.ctypes.data) for b in bufs]), lib.z4_last_error().decode())
"""
    r = run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("-1 ") and "avx512f" in r.stdout


# --------------------------------------------------------------------------------------- tampering
def test_tampered_manifest_is_refused(conv_dir, tmp_path):
    d = tmp_path / "conv"
    shutil.copytree(conv_dir, d)
    m = json.loads((d / "manifest.json").read_text())
    m["kernels"][0]["arguments"][0]["shape"][1] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match="manifest was modified"):
        cs.load(d)
    (d / "manifest.json").write_text('{"format": "convsched-export", ')
    with pytest.raises(ExportError, match="not valid JSON"):
        cs.load(d)
    (d / "manifest.json").unlink()
    with pytest.raises(ExportError, match="no manifest.json"):
        cs.load(d)
    with pytest.raises(ExportError, match="no such export directory"):
        cs.load(tmp_path / "nothing")


def test_tampered_library_is_refused(conv_dir, tmp_path):
    d = tmp_path / "conv"
    shutil.copytree(conv_dir, d)
    lib = d / "libconv.so"
    blob = bytearray(lib.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    lib.write_bytes(bytes(blob))
    with pytest.raises(ExportError, match="library was modified"):
        cs.load(d)
    lib.unlink()
    with pytest.raises(ExportError, match="missing"):
        cs.load(d)
