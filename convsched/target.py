"""Targets: the machine model a schedule is derived from, and the stable key its tuning records are filed under.

    t = target.host()                 # this machine: LLVM's CPU name, its real features (CPUID), caches (sysfs)
    t = target.get("znver5")          # a named target, modelled (features from LLVM's CPU table)
    t = target.get("tigerlake")       # any -mcpu LLVM accepts (validated: TargetError otherwise)
    t.key                             # "x86_64-unknown-linux-gnu_znver3_1f2e3d4c_2c": triple, mcpu, feature hash, cores
    t.lanes("float32")                # 16 with AVX-512, 8 with AVX2, 4 with SSE
    t.fma_per_cycle, t.fma_latency    # 2 and 4 on Zen 3; 1 zmm FMA a cycle on Zen 4 (256-bit datapaths)
    t.popcount                        # "vpopcntq" (AVX-512 VPOPCNTDQ), "emulated" (pshufb nibble lookups), "scalar"
    t.l1d_bytes, t.l2_bytes           # per core; the host's from sysfs, a named target's from its model

A Target is a machine model, not a name. What a kernel may use (vector width, registers, popcount) follows the
*features*; how fast the pieces are (FMA pipes and latency, popcount throughput, clock) follows the
*microarchitecture* (`uarch`), found from the CPU name and corrected by the features: a KVM guest on a
Sapphire-Rapids-class Xeon reports LLVM's name "rocketlake" (CPUID family 6 model 167) yet has AMX and
AVX512-FP16, which no Rocket Lake has, so it is modelled as sapphirerapids (2 zmm FMA pipes, 2 MB L2).
A hypervisor may also mask features: the host's features come from CPUID, never from the name, or a kernel
built from the name alone would die of SIGILL.

Layering: this module imports neither TVM nor convsched.backend (backend sits above target). Whatever needs
LLVM -- the host's CPU name and CPUID features, a CPU's feature table, whether LLVM knows a -mcpu -- goes
through a probe that convsched.backend.cpu registers with register_probe() when it is imported. The package
root (convsched/__init__.py) registers a lazy stand-in, so `cs.target.host()` works without importing TVM until
the first call needs LLVM.

Figures in the uarch table are a model (vendor manuals, uops.info-style port counts, llvm-mca's scheduling
models): they size register tiles and label "modelled" peaks for CPUs we cannot run. Peaks that k.benchmark()
reports against are measured on the host (convsched.backend.peaks).

Over 400 lines: the machine-model table (UARCHES) is data kept beside the code that reads it.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import TargetError

TRIPLE = "x86_64-unknown-linux-gnu"

# Named targets accepted by compile(target=...) and `--target` (any other -mcpu LLVM knows works too).
# The value is the LLVM CPU name.
NAMED = {
    "znver2": "znver2",
    "znver3": "znver3",
    "znver4": "znver4",
    "znver5": "znver5",
    "skylake-avx512": "skylake-avx512",
    "icelake-server": "icelake-server",
    "sapphirerapids": "sapphirerapids",
    "x86-64-v4": "x86-64-v4",
    "x86-64-v3": "x86-64-v3",
    "x86-64-v2": "x86-64-v2",
    "generic": "x86-64",
}

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Uarch:
    """Modelled throughput figures of one microarchitecture (per core). "_512" figures are for zmm operations;
    the others for xmm/ymm. Counts are instructions per cycle."""
    name: str
    vendor: str               # "intel", "amd" or "" (generic)
    fma: int                  # FMA instructions per cycle, 128/256-bit
    fma_512: int              # ... 512-bit (Zen 4 double-pumps zmm on its 256-bit pipes: 1)
    fma_latency: int          # cycles
    loads: int                # vector loads per cycle, 128/256-bit
    loads_512: int            # ... 512-bit
    valu: int                 # vector integer ALU ops (xor, add) per cycle, 128/256-bit
    valu_512: int             # ... 512-bit (Intel runs zmm on ports 0 and 5 only)
    popcnt_512: float         # vpopcntq zmm per cycle (where the ISA has it)
    shuffle: int              # vpshufb per cycle (the emulated popcount's lookups)
    l1d: int                  # bytes per core
    l2: int                   # bytes per core
    l3: int                   # bytes, shared
    ghz: float                # clock used for *modelled* peaks only (never for a measured figure)


_U = Uarch
UARCHES = {u.name: u for u in (
    #  name              vendor  fma f512 lat ld l512 valu v512 pc512 shuf  l1d      l2        l3       ghz
    _U("generic",        "",     2,  1,   4,  2, 1,   3,   2,   1.0,  1,   32*KiB,  512*KiB,  8*MiB,   3.0),
    _U("znver1",         "amd",  1,  0,   5,  2, 0,   4,   0,   0.0,  2,   32*KiB,  512*KiB,  8*MiB,   3.0),
    _U("znver2",         "amd",  2,  0,   5,  2, 0,   4,   0,   0.0,  2,   32*KiB,  512*KiB,  16*MiB,  3.3),
    _U("znver3",         "amd",  2,  0,   4,  2, 0,   4,   0,   0.0,  2,   32*KiB,  512*KiB,  32*MiB,  3.2),
    _U("znver4",         "amd",  2,  1,   4,  2, 1,   4,   2,   1.0,  2,   32*KiB,  1*MiB,    32*MiB,  3.7),
    _U("znver5",         "amd",  2,  2,   4,  4, 2,   4,   4,   2.0,  2,   48*KiB,  1*MiB,    32*MiB,  4.45),
    _U("haswell",        "intel", 2, 0,   5,  2, 0,   3,   0,   0.0,  1,   32*KiB,  256*KiB,  8*MiB,   3.3),
    _U("skylake",        "intel", 2, 0,   4,  2, 0,   3,   0,   0.0,  1,   32*KiB,  256*KiB,  8*MiB,   3.5),
    _U("skylake-avx512", "intel", 2, 2,   4,  2, 2,   3,   2,   0.0,  1,   32*KiB,  1*MiB,    22*MiB,  2.6),
    _U("icelake-client", "intel", 2, 1,   4,  2, 2,   3,   2,   1.0,  2,   48*KiB,  512*KiB,  8*MiB,   3.5),
    _U("icelake-server", "intel", 2, 2,   4,  2, 2,   3,   2,   1.0,  2,   48*KiB,  1280*KiB, 48*MiB,  2.8),
    _U("alderlake",      "intel", 2, 0,   4,  3, 0,   3,   0,   0.0,  2,   48*KiB,  1280*KiB, 30*MiB,  4.0),
    _U("sapphirerapids", "intel", 2, 2,   4,  3, 2,   3,   2,   1.0,  2,   48*KiB,  2*MiB,    105*MiB, 3.8),
)}

# LLVM CPU names -> the microarchitecture modelled for them (unlisted names: "generic").
UARCH_OF_CPU = {
    "znver1": "znver1", "znver2": "znver2", "znver3": "znver3", "znver4": "znver4", "znver5": "znver5",
    "haswell": "haswell", "broadwell": "haswell", "core-avx2": "haswell", "core_4th_gen_avx": "haswell",
    "core_5th_gen_avx": "haswell",
    "skylake": "skylake", "kabylake": "skylake", "coffeelake": "skylake", "cometlake": "skylake",
    "skylake-avx512": "skylake-avx512", "skylake_avx512": "skylake-avx512", "skx": "skylake-avx512",
    "cascadelake": "skylake-avx512", "cooperlake": "skylake-avx512",
    "cannonlake": "icelake-client", "icelake-client": "icelake-client", "icelake_client": "icelake-client",
    "tigerlake": "icelake-client", "rocketlake": "icelake-client",
    "icelake-server": "icelake-server", "icelake_server": "icelake-server",
    "alderlake": "alderlake", "raptorlake": "alderlake", "meteorlake": "alderlake", "arrowlake": "alderlake",
    "arrowlake-s": "alderlake", "arrowlake_s": "alderlake", "lunarlake": "alderlake", "pantherlake": "alderlake",
    "sapphirerapids": "sapphirerapids", "emeraldrapids": "sapphirerapids", "graniterapids": "sapphirerapids",
    "graniterapids-d": "sapphirerapids", "graniterapids_d": "sapphirerapids", "diamondrapids": "sapphirerapids",
}

# Features that prove a newer core than the name says (checked in order, same vendor only): the name comes
# from CPUID's family/model, which a hypervisor may report for an older model.
_UARCH_SIGNATURES = (
    ("sapphirerapids", "intel", frozenset({"amx-tile", "avx512fp16"})),
    ("znver5", "amd", frozenset({"avx512vp2intersect", "avxvnni", "avx512vpopcntdq"})),
    ("znver4", "amd", frozenset({"avx512f", "avx512vpopcntdq"})),
)

# Features that change which instructions may be emitted (others in LLVM's tables are tuning hints).
ISA_FEATURES = frozenset("""
sse sse2 sse3 ssse3 sse4.1 sse4.2 sse4a avx avx2 fma fma4 f16c popcnt lzcnt bmi bmi2 movbe adx aes pclmul
vaes vpclmulqdq gfni sha avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2
avx512vnni avx512bitalg avx512vpopcntdq avx512bf16 avx512fp16 avxvnni amx-tile amx-int8 amx-bf16 xop
""".split())

# x86-64 micro-architecture levels (psABI): each needs the previous level's features too.
ISA_LEVELS = (
    ("x86-64-v2", frozenset({"popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe"})),
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)


_SIGNATURE_RANK = {cand: i for i, (cand, _, _) in enumerate(_UARCH_SIGNATURES)}


def uarch_for(mcpu: str, features) -> str:
    """The microarchitecture to model for an LLVM CPU name and the features the CPU really has."""
    name = UARCH_OF_CPU.get(mcpu, "generic")
    vendor = UARCHES[name].vendor
    feats = frozenset(features)
    for rank, (cand, cand_vendor, needs) in enumerate(_UARCH_SIGNATURES):
        if cand_vendor != vendor or not needs <= feats:
            continue
        # the signatures are listed newest first: move to a newer core than the name says, never an older one
        return cand if rank < _SIGNATURE_RANK.get(name, len(_UARCH_SIGNATURES)) else name
    return name


# --------------------------------------------------------------------------------- the LLVM probe hook
class CpuProbe:
    """What target needs from LLVM; convsched.backend.cpu provides it (see the module docstring)."""

    def host_cpu_name(self) -> str: ...                       # LLVM's name for this CPU
    def host_cpu_features(self) -> dict: ...                  # {feature: bool} from CPUID
    def cpu_features(self, mcpu: str, triple: str) -> set: ...  # LLVM's feature table of a CPU name
    def is_valid_cpu(self, mcpu: str, triple: str) -> bool: ...
    def cpu_names(self, triple: str) -> tuple: ...            # every -mcpu LLVM knows for the triple


_probe: CpuProbe | None = None


def register_probe(probe) -> None:
    """Install the object that answers LLVM questions (convsched.backend.cpu does it on import)."""
    global _probe
    _probe = probe
    host.cache_clear()
    _named.cache_clear()


def _llvm():
    if _probe is None:
        raise TargetError("no CPU probe is registered: import convsched (its package root registers "
                          "convsched.backend.cpu, which asks LLVM about CPUs)")
    return _probe


# ------------------------------------------------------------------------------------------ host facts
def host_cores() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": KiB, "M": MiB, "G": 1024 * MiB}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * mult


def read_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> dict:
    """{"l1d", "l2", "l3"} in bytes from sysfs (Linux), for the CPU this process starts on; {} elsewhere."""
    out = {}
    base = Path(root)
    if not base.is_dir():
        return out
    for idx in sorted(base.glob("index*")):
        try:
            level = int((idx / "level").read_text())
            kind = (idx / "type").read_text().strip()
            size = _parse_size((idx / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        out[{1: "l1d", 2: "l2", 3: "l3"}.get(level, f"l{level}")] = size
    return out


@lru_cache(maxsize=None)
def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo ("AMD EPYC 9B45", "Intel(R) Xeon(R) Processor"), or "".
    Read once: every benchmark() looks up its peak by it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def host_key_cores() -> int:
    """The core count host() reports (its target key, default thread counts of tuning workers): the affinity
    mask, or $CONVSCHED_HOST_CORES. A run pinned to one core of a 2-core machine (`taskset -c 1`) sees 1 core
    and files records under ..._1c; CONVSCHED_HOST_CORES=2 keeps it on the machine's own key (..._2c), so
    records tuned pinned are found by unpinned processes (their timings say how many threads they used)."""
    env = os.environ.get("CONVSCHED_HOST_CORES")
    if not env:
        return host_cores()
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise TargetError(f"CONVSCHED_HOST_CORES must be a positive integer, got {env!r}")
    return n


# ---------------------------------------------------------------------------------------------- Target
@dataclass(frozen=True)
class Target:
    """An x86-64 CPU target: LLVM triple and CPU name, the ISA features the kernel may use, cores, and the
    machine model schedules are derived from (see the module docstring)."""

    name: str
    mcpu: str
    features: frozenset = field(repr=False)
    cores: int
    triple: str = TRIPLE
    # Features LLVM's CPU table implies for `mcpu` but this particular CPU lacks (masked by a hypervisor):
    # passed to LLVM as "-feature" so it never emits them.
    disabled: frozenset = field(default=frozenset(), repr=False)
    uarch: str = ""                   # the modelled microarchitecture; "" = from mcpu and the features
    caches: tuple = field(default=(), repr=False)   # ((level, bytes), ...) read from the host; () = modelled

    # -- identity
    @property
    def feature_hash(self) -> str:
        return hashlib.sha256(",".join(sorted(self.features)).encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """Stable identity for tuning logs: same CPU model, same features, same cores -> same key."""
        return f"{self.triple}_{self.mcpu}_{self.feature_hash}_{self.cores}c"

    def has(self, *features: str) -> bool:
        return all(f in self.features for f in features)

    # -- ISA (from the features)
    @property
    def isa_level(self) -> str:
        """The highest x86-64 psABI level whose features this target has: x86-64, x86-64-v2, -v3 or -v4."""
        level = "x86-64"
        for name, needs in ISA_LEVELS:
            if not needs <= self.features:
                break
            level = name
        return level

    @property
    def vector_bits(self) -> int:
        if self.has("avx512f"):
            return 512
        if self.has("avx"):
            return 256
        return 128

    @property
    def num_vector_registers(self) -> int:
        return 32 if self.has("avx512f") else 16

    def lanes(self, dtype: str = "float32") -> int:
        """Vector lanes of `dtype` in one register of this target (uint64: 8 on AVX-512, 4 on AVX2, 2 on SSE)."""
        bits = {"float32": 32, "int32": 32, "uint32": 32, "float64": 64, "int64": 64, "uint64": 64,
                "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "bool": 8}[dtype]
        return max(1, self.vector_bits // bits)

    @property
    def has_fma(self) -> bool:
        return self.has("fma")

    @property
    def popcount(self) -> str:
        """How a vector of 64-bit words is popcounted: "vpopcntq" (AVX-512 VPOPCNTDQ), "emulated" (LLVM's
        pshufb nibble lookups + psadbw: SSSE3/AVX2), or "scalar" (neither: shift-and-mask bit tricks)."""
        return self.popcount_kind(64)

    def popcount_kind(self, word_bits: int = 64) -> str:
        """As `popcount` for words of `word_bits` (8/16-bit lanes need AVX512-BITALG's vpopcntb/w)."""
        if self.has("avx512vpopcntdq" if word_bits >= 32 else "avx512bitalg"):
            return "vpopcntq"
        return "emulated" if self.has("ssse3") else "scalar"

    @property
    def fast_popcount(self) -> bool:
        """Vector popcount on 64-bit lanes (AVX-512 VPOPCNTDQ); without it popcount is emulated."""
        return self.popcount == "vpopcntq"

    def popcount_scratch_registers(self, word_bits: int = 64) -> int:
        """Vector registers a vector popcount occupies besides the accumulators and operands: the xor/popcount
        result with vpopcntq; the nibble table, the 0x0f mask, a zero and two temporaries for LLVM's pshufb
        sequence (one more to sum 16/32-bit words); two masks and two temporaries for the bit tricks."""
        kind = self.popcount_kind(word_bits)
        if kind == "vpopcntq":
            return 1
        if kind == "emulated":
            return 5 if word_bits in (8, 64) else 6
        return 4

    # -- the microarchitecture (modelled figures)
    @property
    def model(self) -> Uarch:
        return UARCHES[self.uarch or uarch_for(self.mcpu, self.features)]

    @property
    def fma_per_cycle(self) -> int:
        """FMA instructions per cycle at this target's vector width (zmm on Zen 4: 1; on Zen 5/SPR: 2)."""
        m = self.model
        if self.vector_bits == 512:
            return max(1, m.fma_512)
        return m.fma

    @property
    def fma_latency(self) -> int:
        return self.model.fma_latency

    @property
    def accumulators_for_fma_peak(self) -> int:
        """Independent accumulators an FMA loop needs to keep every FMA pipe busy: pipes x latency."""
        return self.fma_per_cycle * self.fma_latency

    @property
    def loads_per_cycle(self) -> int:
        """Vector loads (or load-broadcasts) per cycle at this target's vector width."""
        m = self.model
        return max(1, m.loads_512) if self.vector_bits == 512 else m.loads

    @property
    def valu_per_cycle(self) -> int:
        m = self.model
        return max(1, m.valu_512) if self.vector_bits == 512 else m.valu

    @property
    def popcount_per_cycle(self) -> float:
        """Vector popcounts of 64-bit words per cycle at this target's width (modelled): vpopcntq's own port
        count, or for the emulated/scalar sequences the ALU and shuffle ops per vector they cost."""
        kind = self.popcount
        if kind == "vpopcntq":
            return self.model.popcnt_512 or 1.0
        if kind == "emulated":           # vpsrlw, 2 vpand, 2 vpshufb, vpaddb, vpsadbw (LLVM's sequence)
            return min(self.valu_per_cycle / 7, self.model.shuffle / 2)
        return self.valu_per_cycle / 12  # SWAR: shifts, masks, adds and a multiply per 64-bit lane

    @property
    def bit_macs_per_cycle(self) -> float:
        """Modelled xor + popcount + add throughput, bit-MACs per cycle per core (vector bits x vectors)."""
        kind = self.popcount
        if kind == "vpopcntq":            # xor + add share the ALU ports with vpopcntq (Intel: port 5 only)
            per = min(self.popcount_per_cycle, self.valu_per_cycle / 3)
        elif kind == "emulated":          # + xor + the 64-bit add: 9 ALU ops, 2 of them shuffles
            per = min(self.valu_per_cycle / 9, self.model.shuffle / 2)
        else:
            per = self.valu_per_cycle / 14
        return self.vector_bits * per

    def modelled_fp32_peak_gflops(self, threads: int | None = None) -> float:
        """lanes x 2 flops x FMA pipes x the modelled clock (without FMA, x86-64-v2: a mul and an add pipe
        per FMA pipe, the same MACs per cycle)."""
        per_cycle = self.lanes("float32") * 2 * self.fma_per_cycle
        return per_cycle * self.model.ghz * (threads or self.cores)

    def modelled_bit_peak_gops(self, threads: int | None = None) -> float:
        return self.bit_macs_per_cycle * self.model.ghz * (threads or self.cores)

    # -- caches
    def _cache(self, level: str) -> int:
        got = dict(self.caches).get(level)
        return int(got) if got else getattr(self.model, level)

    @property
    def l1d_bytes(self) -> int:
        return self._cache("l1d")

    @property
    def l2_bytes(self) -> int:
        return self._cache("l2")

    @property
    def l3_bytes(self) -> int:
        return self._cache("l3")

    # -- TVM / JSON
    def to_tvm(self) -> dict:
        """The target dict TVM takes (strings are rejected in 0.27)."""
        d = {"kind": "llvm", "mtriple": self.triple, "mcpu": self.mcpu, "num-cores": self.cores}
        if self.disabled:
            d["mattr"] = ["-" + f for f in sorted(self.disabled)]
        return d

    def describe(self) -> dict:
        """The machine model as plain data (part of to_json(), so of export manifests)."""
        m = self.model
        return {"isa_level": self.isa_level, "vector_bits": self.vector_bits,
                "lanes": {d: self.lanes(d) for d in ("float32", "uint64", "int16", "uint8")},
                "vector_registers": self.num_vector_registers, "uarch": m.name,
                "fma_per_cycle": self.fma_per_cycle, "fma_latency": self.fma_latency,
                "loads_per_cycle": self.loads_per_cycle, "popcount": self.popcount,
                "popcount_per_cycle": round(self.popcount_per_cycle, 3),
                "bit_macs_per_cycle": round(self.bit_macs_per_cycle, 1),
                "l1d_bytes": self.l1d_bytes, "l2_bytes": self.l2_bytes, "l3_bytes": self.l3_bytes,
                "caches_from": "sysfs" if self.caches else "model", "cores": self.cores,
                "modelled_ghz": m.ghz}

    def to_json(self) -> dict:
        return {"name": self.name, "triple": self.triple, "mcpu": self.mcpu,
                "feature_hash": self.feature_hash, "cores": self.cores, "key": self.key,
                "features": sorted(self.features), "model": self.describe()}

    def missing_on(self, other: "Target") -> list[str]:
        """ISA features this target's code may use that `other` (usually the host) lacks."""
        return sorted(f for f in self.features if f in ISA_FEATURES and f not in other.features)

    def runs_on(self, other: "Target") -> bool:
        """Whether code built for this target may run on `other` (no missing ISA feature)."""
        return not self.missing_on(other)


@lru_cache(maxsize=None)
def host() -> Target:
    probe = _llvm()
    mcpu = probe.host_cpu_name()
    real = probe.host_cpu_features()                 # {feature: bool} from CPUID
    implied = probe.cpu_features(mcpu, TRIPLE)       # what LLVM assumes for that CPU name
    features = frozenset(f for f, on in real.items() if on)
    disabled = frozenset(f for f in implied if f in ISA_FEATURES and real.get(f) is False)
    caches = tuple(sorted(read_caches().items()))
    return Target("host", mcpu, features, host_key_cores(), disabled=disabled,
                  uarch=uarch_for(mcpu, features), caches=caches)


@lru_cache(maxsize=None)
def _named(name: str, mcpu: str, cores: int) -> Target:
    features = frozenset(_llvm().cpu_features(mcpu, TRIPLE))
    return Target(name, mcpu, features, cores, uarch=uarch_for(mcpu, features))


def _resolve_mcpu(name: str) -> str:
    if name in NAMED:
        return NAMED[name]
    probe = _llvm()
    if probe.is_valid_cpu(name, TRIPLE):
        return name
    known = list(probe.cpu_names(TRIPLE))
    if name in known:
        raise TargetError(f"unknown target '{name}': LLVM knows it, but as a 32-bit CPU that cannot run "
                          f"{TRIPLE} code")
    known = [n for n in known if probe.is_valid_cpu(n, TRIPLE)]
    close = difflib.get_close_matches(name, sorted(set(NAMED) | set(known)), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise TargetError(f"unknown target '{name}': neither a named target ({', '.join(['host', *NAMED])}) nor a "
                      f"CPU LLVM knows for {TRIPLE}{hint}")


def get(target: "str | Target | None" = "host", cores: int | None = None) -> Target:
    """Resolve "host", a named target ("znver5", "x86-64-v3", "generic", ...), any LLVM -mcpu, or a Target."""
    if isinstance(target, Target):
        return target
    if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool) or cores < 1):
        raise TargetError(f"cores must be a positive integer, got {cores!r}")
    if target is None or target == "host":
        t = host()
        return t if cores is None else dataclasses.replace(t, cores=cores)
    if not isinstance(target, str) or not target:
        raise TargetError(f"a target is 'host', a CPU name or a Target, got {target!r}")
    return _named(target, _resolve_mcpu(target), cores or host_cores())
