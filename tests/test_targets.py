"""Targets as machine models: the host's model follows its features, named targets and any LLVM
-mcpu are modelled, measured peaks per ISA, tail policies, and the assembly of every named target.

Every expectation is computed from a target's model or features, never a number that holds for one CPU.
"""
import ast
import json
from pathlib import Path

import pytest

import convsched as cs
from conftest import NOT_EXECUTABLE, check_against_reference
from convsched.backend import peaks
from convsched.kernel import layer_assembly

L = cs.layers
T = cs.target


# ------------------------------------------------------------------------------------------- layering
def test_target_module_imports_neither_tvm_nor_the_backend():
    src = (Path(cs.__file__).parent / "target.py").read_text()
    names = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(("." * node.level) + (node.module or ""))
    assert not [n for n in names if n.split(".")[0] == "tvm" or "backend" in n], names


# ------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("name", list(T.NAMED))
def test_named_target_model_follows_its_features(name):
    t = T.get(name)
    avx512, avx = t.has("avx512f"), t.has("avx")
    assert t.vector_bits == (512 if avx512 else 256 if avx else 128)
    assert t.num_vector_registers == (32 if avx512 else 16)
    for dtype, bits in (("float32", 32), ("uint64", 64), ("int16", 16), ("uint8", 8)):
        assert t.lanes(dtype) == t.vector_bits // bits
    assert t.popcount == ("vpopcntq" if t.has("avx512vpopcntdq") else "emulated" if t.has("ssse3") else "scalar")
    assert (t.isa_level == "x86-64-v4") == t.has("avx2", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
    assert (t.isa_level in ("x86-64-v3", "x86-64-v4")) == t.has("avx2", "fma", "bmi2", "movbe")
    assert t.fma_per_cycle >= 1 and t.fma_latency >= 3 and t.loads_per_cycle >= 1
    assert t.accumulators_for_fma_peak == t.fma_per_cycle * t.fma_latency
    assert 16 * 1024 <= t.l1d_bytes < t.l2_bytes < t.l3_bytes
    d = t.describe()
    assert d["uarch"] == t.model.name and d["popcount"] == t.popcount and d["caches_from"] == "model"
    assert json.loads(json.dumps(t.to_json()))["model"]["vector_bits"] == t.vector_bits


def test_isa_levels():
    assert [T.get(n).isa_level for n in ("generic", "x86-64-v2", "x86-64-v3", "x86-64-v4")] == \
        ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]


def test_named_names_model_their_own_microarchitecture():
    for name in ("znver2", "znver3", "znver4", "znver5", "skylake-avx512", "icelake-server", "sapphirerapids"):
        assert T.get(name).model.name == name


def test_host_model_follows_features_not_the_name():
    # a KVM guest on a Sapphire-Rapids-class Xeon reports LLVM's name "rocketlake" (an AVX-512 client core
    # with one zmm FMA pipe); AMX and AVX512-FP16 prove the server core
    rl = T.get("rocketlake")
    guest = T.Target("host", "rocketlake", rl.features | {"amx-tile", "avx512fp16"}, 2,
                     uarch=T.uarch_for("rocketlake", rl.features | {"amx-tile", "avx512fp16"}))
    assert rl.model.name == "icelake-client" and guest.model.name == "sapphirerapids"
    assert guest.fma_per_cycle == T.UARCHES["sapphirerapids"].fma_512 > rl.fma_per_cycle
    # a hypervisor that masks AVX-512 on a znver4: the ISA follows the features (no zmm, emulated popcount)
    z4 = T.get("znver4")
    masked = T.Target("host", "znver4", frozenset(f for f in z4.features if not f.startswith("avx512")), 2,
                      disabled=frozenset(f for f in z4.features if f.startswith("avx512")))
    assert masked.vector_bits == 256 and masked.popcount == "emulated" and masked.num_vector_registers == 16
    assert masked.fma_per_cycle == T.UARCHES["znver4"].fma          # two 256-bit FMAs, not one zmm
    assert "-avx512f" in masked.to_tvm()["mattr"]
    # a newer name is never moved to an older core
    assert T.uarch_for("znver5", T.get("znver5").features) == "znver5"


def test_host_target(host):
    assert host.model.name == T.uarch_for(host.mcpu, host.features)
    assert host.caches == () or dict(host.caches)["l1d"] == host.l1d_bytes
    for f in host.disabled:
        assert f not in host.features


def test_any_llvm_cpu_is_a_target_and_unknown_names_are_clear_errors():
    t = T.get("tigerlake")
    assert t.mcpu == "tigerlake" and t.model.name == "icelake-client" and t.has("avx512vpopcntdq")
    assert T.get("cascadelake").model.name == "skylake-avx512"
    assert T.get("bdver2").model.name == "generic"
    with pytest.raises(cs.TargetError, match="unknown target 'znver9'.*did you mean"):
        T.get("znver9")
    with pytest.raises(cs.TargetError, match="unknown target 'pentium9'"):
        T.get("pentium9")
    with pytest.raises(cs.TargetError, match="32-bit CPU"):          # LLVM aborts on x86_64 code for it
        T.get("pentium")


def test_modelled_peaks_come_from_the_model():
    for name in T.NAMED:
        t = T.get(name)
        m = t.model
        assert t.modelled_fp32_peak_gflops(1) == pytest.approx(t.lanes("float32") * 2 * t.fma_per_cycle * m.ghz)
        assert t.modelled_fp32_peak_gflops(3) == pytest.approx(3 * t.modelled_fp32_peak_gflops(1))
        assert t.modelled_bit_peak_gops(2) == pytest.approx(2 * t.bit_macs_per_cycle * m.ghz)
        p = peaks.peak_for(t, "bit-MAC", 1) if not t.runs_on(T.host()) else peaks._modelled("bit", t, 1)
        assert not p.measured and "modelled" in p.source
    # the same core, vpopcntq or LLVM's pshufb emulation: the native popcount models faster
    z4 = T.get("znver4")
    emu = T.Target("x", "znver4", frozenset(z4.features) - {"avx512vpopcntdq"}, 1)
    assert emu.popcount == "emulated" and z4.bit_macs_per_cycle > emu.bit_macs_per_cycle


# ---------------------------------------------------------------------------------------- measured peaks
def test_fp32_loop_keeps_its_accumulators_in_registers(target):
    isa = peaks.fp32_isa(target)
    peaks.check_fp32_loop(isa)                      # raises unless chains x register-only FMAs
    body = peaks.loop_body(peaks.fp32_loop_assembly(isa))
    assert body and not [ln for ln in body if "(%rsp)" in ln or "(%rbp)" in ln]
    spilled = ".L3:\n\tvfmadd231ps\t(%rsp), %zmm1, %zmm0\n\taddq\t$1, %rax\n\tjne\t.L3\n"
    with pytest.raises(RuntimeError, match="registers"):
        peaks.check_fp32_loop("avx512", spilled)


def test_measured_peaks_are_measured_and_cached(target, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCHED_CACHE_DIR", str(tmp_path))
    p = peaks.fp32_peak(target, 1)
    assert p.measured and p.value > 0 and p.unit == "GFLOP/s" and T.host().mcpu in p.source
    assert "-lane" in p.source and str(target.lanes("float32")) in p.source
    cache = json.loads((tmp_path / "peaks.json").read_text())
    assert any(k.startswith("fp32:") and f"target={target.key}" in k for k in cache)
    assert peaks.fp32_peak(target, 1) == p                         # from the cache, not measured again
    b = peaks.bit_peak(target)
    assert b.measured and b.value > 0 and target.popcount in b.source


def test_a_cached_peak_below_a_kernel_is_measured_again(tmp_path, monkeypatch):
    # a figure measured while the machine was busy must not make a direct kernel read > 100%
    monkeypatch.setenv("CONVSCHED_CACHE_DIR", str(tmp_path))
    host = T.host()
    low = peaks.Peak(1.0, "GFLOP/s", 1, True, "disturbed", "2000-01-01")
    peaks._write_cache(peaks._cache_key(f"fp32:{peaks.fp32_isa(host)}", host, 1), low)
    assert peaks.fp32_peak(host, 1) == low                          # cached, and nothing says it is wrong
    again = peaks.peak_for(host, "FLOP", 1, at_least=2.0)
    assert again.value > 2.0 and again.source != "disturbed"
    assert peaks.fp32_peak(host, 1) == again                        # the higher figure replaced it


def test_kernel_benchmark_reports_a_measured_peak_and_winograd_is_effective(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCHED_CACHE_DIR", str(tmp_path))
    layer = L.Conv2d(h=14, w=14, cin=32, cout=32)
    t = cs.compile(layer).benchmark(repeat=3, min_repeat_ms=5)
    assert t.peak_measured and t.peak and "GFLOP/s" in str(t) and "measured peak" in str(t)
    assert not t.effective
    w = cs.compile(layer, template="conv2d/nhwc_winograd").benchmark(repeat=3, min_repeat_ms=5)
    assert w.effective and "effective" in str(w)
    b = L.BinaryConv2d(h=8, w=8, cin=64, cout=64, pad=1)
    tb = cs.compile(b).benchmark(repeat=3, min_repeat_ms=5)
    assert tb.unit == "G bit-MAC/s" and tb.peak_measured


# --------------------------------------------------------------------------------------------- tails
def _add_schedule(tail, factor=16):
    def sch(s, layer):
        out = s["add"]
        _, i = out.split("c", factor, tail=tail)
        out.parallel(out.fuse("n", "h"))
        out.vectorize(i)
    return sch


@pytest.mark.parametrize("tail", cs.schedule.TAILS)
def test_tail_policies_compute_the_same(tail, target):
    layer = L.Add(h=5, w=3, c=70)
    k = cs.compile(layer, schedule=_add_schedule(tail, target.lanes("float32")), target=target)
    check_against_reference(layer, k)
    assert (f"tail={tail}" in k.schedule.text()) == (tail != "guard")


def test_cut_tail_keeps_vector_code(host):
    # TVM scalarizes a vector loop under a predicate ("guard": LLVM then rebuilt it from gathers and scatters on
    # AVX-512); "cut" peels the partial last vector off and the whole vectors stay plain vector code
    lanes = host.lanes("float32")
    layer = L.Add(h=4, w=4, c=3 * lanes + 5)
    reg = {512: "%zmm", 256: "%ymm", 128: "%xmm"}[host.vector_bits]
    cut = cs.compile(layer, schedule=_add_schedule("cut", lanes)).assembly()
    assert "gather" not in cut and "scatter" not in cut
    assert any(ln.split()[0].startswith(("vmovups", "vmovaps", "vaddps", "movups", "addps")) and
               (reg in ln or reg == "%xmm") for ln in cut.splitlines() if ln.startswith("\t"))


def test_shrink_tail_picks_a_divisor():
    from convsched.backend import shrink_factors
    assert shrink_factors([None, 16], 70) == [None, 14]
    assert shrink_factors([None, 4, 8], 70) == [None, 2, 7]          # innermost first: 7 | 70, then 2 | 10
    assert shrink_factors([None, 16], 64) == [None, 16]


@pytest.mark.parametrize("name", ["x86-64-v2", "x86-64-v3", "x86-64-v4", "znver5"])
def test_lanes_dividing_tiles_any_extent_without_a_tail(name):
    from convsched.schedule import lanes_dividing
    t = T.get(name)
    lanes = t.lanes("float32")
    for n in (1, 3, 8, 17, 24, 64, 70, 2 * lanes):
        v = lanes_dividing(n, t)
        assert n % v == 0 and 1 <= v <= lanes
        assert all(n % d for d in range(v + 1, lanes + 1))      # the largest such width
    assert lanes_dividing(4 * lanes, t) == lanes


def test_unknown_tail_is_a_schedule_error():
    def sch(s, layer):
        s["add"].split("c", 4, tail="round_up")
    with pytest.raises(cs.ScheduleError, match="unknown tail policy 'round_up'"):
        cs.compile(L.Add(h=2, w=2, c=8), schedule=sch)


def test_guard_splits_serialise_as_before():
    # schedules recorded before tails existed keep their JSON (and hash): "guard" is left out
    from convsched.schedule.steps import Split
    assert "tail" not in Split("conv", axis="co", factors=(None, 8), names=("a", "b")).to_json()
    d = Split("conv", axis="co", factors=(None, 8), names=("a", "b"), tail="cut").to_json()
    assert d["tail"] == "cut" and Split.from_json(d).tail == "cut"


# ------------------------------------------------------------------------ assembly of every named target
ASM_LAYERS = {
    "fp32": (L.Conv2d(h=8, w=8, cin=32, cout=64, bias=True, act="relu"), None),
    "bits": (L.BinaryConv2d(h=8, w=8, cin=128, cout=64, pad=1), "binary_conv2d/blocked"),
    "bits64": (L.BinaryConv2d(h=9, w=9, cin=64, cout=64, pad=1), "binary_conv2d/blocked"),
}


@pytest.mark.parametrize("name", list(T.NAMED))
def test_named_target_assembly_follows_its_model(name):
    """Every named target builds (whether or not the host can run it); its code uses the model's widest vectors
    and its popcount, and stores no result by scatter (LLVM's gathers + scatters were what it made of the
    binary conv's unvectorized int32 epilogue on AVX-512; the per-call weight transposition "wt" still
    gathers, which is a transposition's nature)."""
    t = T.get(name)
    reg = {512: "%zmm", 256: "%ymm", 128: "%xmm"}[t.vector_bits]
    fp32 = layer_assembly(ASM_LAYERS["fp32"][0], name)
    assert reg in fp32
    if t.vector_bits < 512:
        assert "%zmm" not in fp32
    assert "scatter" not in fp32 and "gather" not in fp32
    for key in ("bits", "bits64"):
        layer, tmpl = ASM_LAYERS[key]
        asm = layer_assembly(layer, name, template=tmpl)
        assert ("vpopcntq" in asm) == (t.popcount == "vpopcntq")
        assert "scatter" not in asm, key
    if name in NOT_EXECUTABLE:
        k = cs.compile(ASM_LAYERS["fp32"][0], target=name)
        with pytest.raises(cs.TargetError, match="lacks"):
            k(*ASM_LAYERS["fp32"][0].random_inputs())


def test_not_executable_targets_are_those_missing_features(host):
    for name in T.NAMED:
        assert (name in NOT_EXECUTABLE) == bool(T.get(name).missing_on(host))


def test_peak_loop_isas_cover_every_named_target():
    for name in T.NAMED:
        isa = peaks.fp32_isa(T.get(name))
        assert isa in ("avx512", "avx2", "avx", "sse")
        assert peaks.fp32_chains(isa) >= T.get(name).accumulators_for_fma_peak


def test_cblock_is_any_block_on_any_target(target):
    # NCHWc's block is the layout's (a layer field): whole vectors at cblock = lanes, partial ones or several
    # per block otherwise; every one runs
    lanes = target.lanes("float32")
    for cb in sorted({4, 8, lanes, 2 * lanes}):
        layer = L.Conv2d(h=7, w=9, cin=2 * cb, cout=cb, layout="NCHWc", cblock=cb, bias=True, act="relu")
        check_against_reference(layer, cs.compile(layer, target=target), seed=cb)
