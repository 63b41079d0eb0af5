"""Targets: which CPU a kernel is built for, and the stable key its tuning records are filed under.

    t = target.host()                 # this machine: LLVM's name for the CPU, its real feature set, its cores
    t = target.get("skylake-avx512")  # a named target, for cross-compilation (features from LLVM's CPU table)
    t.key                             # "x86_64-unknown-linux-gnu_znver3_1f2e3d4c_2c": triple, mcpu, feature hash, cores
    t.lanes("float32")                # 16 with AVX-512, 8 with AVX2, 4 with SSE: templates derive vector widths from it

The feature set of the host comes from CPUID (via LLVM), not from the CPU name: a virtual machine may report
"znver4" and still mask AVX-512, and a kernel built from the name alone would then die of SIGILL.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import TargetError

TRIPLE = "x86_64-unknown-linux-gnu"

# Named targets accepted by compile(target=...) and `--target`. The value is the LLVM CPU name.
NAMED = {
    "znver4": "znver4",
    "znver3": "znver3",
    "skylake-avx512": "skylake-avx512",
    "icelake-server": "icelake-server",
    "sapphirerapids": "sapphirerapids",
    "x86-64-v4": "x86-64-v4",
    "x86-64-v3": "x86-64-v3",
    "x86-64-v2": "x86-64-v2",
    "generic": "x86-64",
}

# Per-core ceilings that k.benchmark() reports "% of peak" against, measured per CPU kind (benchmarks measure
# their own ceiling in the same run and print both). fp32: FMA peak (2 FMA pipes x vector lanes x 2 flops x clock);
# bits: xor + popcount + add.
#   znver4: ../shared/PEERS.md ~117.7 GFLOP/s; vpopcntq 1.24 T bit-MAC/s (../shared/TVM_NOTES.md)
#   znver3 (AVX2, no VPOPCNTDQ; the machine these numbers were taken on): 102.6 GFLOP/s
#           (benchmarks/common.py), 322 G bit-MAC/s with the vpshufb popcount (backend.binary.bit_gemm_peak)
FP32_PEAK_GFLOPS_PER_CORE = {"znver4": 117.7, "znver3": 102.6}
BIT_PEAK_VPOPCNT_GOPS_PER_CORE = 1240.0                 # measured on znver4; used for any VPOPCNTDQ CPU
BIT_PEAK_EMULATED_GOPS_PER_CORE = {"znver3": 322.0}     # no VPOPCNTDQ: LLVM's vpshufb popcount
# other CPUs: 2 FMA pipes x lanes x 2 flops at ~3.2 GHz; bits without VPOPCNTDQ: the znver3 rate scaled by
# vector width
_GHZ = 3.2


def host_cores() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Target:
    """An x86-64 CPU target: LLVM triple and CPU name, the ISA features the kernel may use, and cores."""

    name: str
    mcpu: str
    features: frozenset = field(repr=False)
    cores: int
    triple: str = TRIPLE
    # Features LLVM's CPU table implies for `mcpu` but this particular CPU lacks (masked by a hypervisor):
    # passed to LLVM as "-feature" so it never emits them.
    disabled: frozenset = field(default=frozenset(), repr=False)

    @property
    def feature_hash(self) -> str:
        return hashlib.sha256(",".join(sorted(self.features)).encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """Stable identity for tuning logs: same CPU model, same features, same cores -> same key."""
        return f"{self.triple}_{self.mcpu}_{self.feature_hash}_{self.cores}c"

    def has(self, *features: str) -> bool:
        return all(f in self.features for f in features)

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
        """Vector lanes of `dtype` in one register of this target."""
        bits = {"float32": 32, "int32": 32, "uint32": 32, "float64": 64, "int64": 64, "uint64": 64,
                "int8": 8, "uint8": 8, "int16": 16, "uint16": 16}[dtype]
        return self.vector_bits // bits

    @property
    def fast_popcount(self) -> bool:
        """Vector popcount on 64-bit lanes (AVX-512 VPOPCNTDQ); without it popcount is emulated."""
        return self.has("avx512vpopcntdq")

    def fp32_peak_gflops(self, threads: int | None = None) -> float:
        """fp32 FMA ceiling of this CPU kind, GFLOP/s (measured where known, else modelled; see the table)."""
        per_core = FP32_PEAK_GFLOPS_PER_CORE.get(self.mcpu) or 2 * self.lanes("float32") * 2 * _GHZ
        return per_core * (threads or self.cores)

    def bit_peak_gops(self, threads: int | None = None) -> float:
        """xor + popcount + add ceiling, G bit-MAC/s (measured where known, else modelled; see the table)."""
        if self.fast_popcount:
            per_core = BIT_PEAK_VPOPCNT_GOPS_PER_CORE
        else:
            per_core = (BIT_PEAK_EMULATED_GOPS_PER_CORE.get(self.mcpu)
                        or BIT_PEAK_EMULATED_GOPS_PER_CORE["znver3"] * self.vector_bits / 256)
        return per_core * (threads or self.cores)

    def to_tvm(self) -> dict:
        """The target dict TVM takes (strings are rejected in 0.27)."""
        d = {"kind": "llvm", "mtriple": self.triple, "mcpu": self.mcpu, "num-cores": self.cores}
        if self.disabled:
            d["mattr"] = ["-" + f for f in sorted(self.disabled)]
        return d

    def to_json(self) -> dict:
        return {"name": self.name, "triple": self.triple, "mcpu": self.mcpu,
                "feature_hash": self.feature_hash, "cores": self.cores, "key": self.key,
                "features": sorted(self.features)}

    def missing_on(self, other: "Target") -> list[str]:
        """ISA features this target's code may use that `other` (usually the host) lacks."""
        return sorted(f for f in self.features if f in ISA_FEATURES and f not in other.features)


# Features that change which instructions may be emitted (others in LLVM's tables are tuning hints).
ISA_FEATURES = frozenset("""
sse sse2 sse3 ssse3 sse4.1 sse4.2 sse4a avx avx2 fma fma4 f16c popcnt lzcnt bmi bmi2 movbe adx aes pclmul
vaes vpclmulqdq gfni sha avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2
avx512vnni avx512bitalg avx512vpopcntdq avx512bf16 avx512fp16 avxvnni amx-tile amx-int8 amx-bf16 xop
""".split())


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


@lru_cache(maxsize=None)
def host() -> Target:
    from . import backend
    mcpu = backend.host_cpu_name()
    real = backend.host_cpu_features()              # {feature: bool} from CPUID
    implied = backend.cpu_features(mcpu, TRIPLE)    # what LLVM assumes for that CPU name
    features = frozenset(f for f, on in real.items() if on)
    disabled = frozenset(f for f in implied if f in ISA_FEATURES and real.get(f) is False)
    return Target("host", mcpu, features, host_key_cores(), disabled=disabled)


@lru_cache(maxsize=None)
def _named(name: str, cores: int) -> Target:
    from . import backend
    mcpu = NAMED[name]
    return Target(name, mcpu, frozenset(backend.cpu_features(mcpu, TRIPLE)), cores)


def get(target: "str | Target | None" = "host", cores: int | None = None) -> Target:
    """Resolve "host", a named target ("znver4", "x86-64-v3", "generic", ...) or a Target."""
    if isinstance(target, Target):
        return target
    if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool) or cores < 1):
        raise TargetError(f"cores must be a positive integer, got {cores!r}")
    if target is not None and not isinstance(target, str):
        raise TargetError(f"a target is 'host', a name ({', '.join(NAMED)}) or a Target, got {target!r}")
    if target is None or target == "host":
        t = host()
        return t if cores is None else Target(t.name, t.mcpu, t.features, cores, t.triple, t.disabled)
    if target not in NAMED:
        raise TargetError(f"unknown target '{target}'; known: host, {', '.join(NAMED)}")
    return _named(target, cores or host_cores())
