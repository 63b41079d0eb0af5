"""Schedule helpers shared by templates: every vector width, register budget and tile score comes from the
Target's machine model through them, so no template repeats an idiom or hard-codes a machine.

    lanes = s.target.lanes("float32")                  # 16 on AVX-512, 8 on AVX2, 4 on SSE
    v = lanes_dividing(layer.c, s.target)              # the lanes, or the largest divisor of c below them
    inner = split_lanes(conv, co_i, lanes)             # [co_v, co_l] or [co_i]: vectors of `lanes`
    conv.reorder(..., *inner); vectorize_lanes(conv, inner)
    fits_registers(target, tile_registers(target, pixels, co_tile))   # True or why not (a constraint())
    fma_efficiency(target, accumulators, loads)        # share of the FMA peak a register tile allows
    place_epilogue(s, conv, "ow_o", lanes)             # bias/residual/act folded, run per tile, vectorized

Tails: a lane split whose extent is not a multiple of the vector uses tail="cut" (whole vectors without a
test, the remainder in a loop of its own, see convsched.schedule.steps.TAILS), so a channel count that is not
a multiple of the vector width still runs vector code, and no template needs to refuse it.
"""
from __future__ import annotations

from ..backend import STACK_ALLOC_BYTES
from .knobs import divisors

EPILOGUE = ("bias", "residual", "act")


def vectors(n: int, lanes: int) -> int:
    """Vector registers holding n elements: ceil(n / lanes)."""
    return -(-int(n) // max(1, int(lanes)))


# --------------------------------------------------------------------------------------- lanes / tails
def split_lanes(stage, axis: str, lanes: int, names=None, tail: str = "cut") -> list:
    """Cut `axis` into vectors of `lanes` elements: [axis] when it has at most `lanes` iterations (one vector,
    partial if shorter), else [v, l] with l of `lanes` iterations (vectorize_lanes vectorizes l and unrolls v);
    a remainder follows `tail` (default "cut": whole vectors, then one partial vector)."""
    extent = stage.extent(axis)
    if extent is not None and extent <= lanes:
        return [axis]
    names = names or (f"{axis}_v", f"{axis}_l")
    return list(stage.split(axis, lanes, names=names, tail=tail))


def lanes_dividing(n: int, target, dtype: str = "float32") -> int:
    """The target's lanes of `dtype`, or the largest divisor of n below them: a vector width that tiles n with
    no remainder, so a template needs no tail and refuses no extent (8 channels on a 16-lane target: 8)."""
    return max(divisors(n, target.lanes(dtype)))


def vectorize_lanes(stage, axes: list) -> None:
    """Vectorize the last of `axes` (from split_lanes) and unroll the others: one vector op per register."""
    stage.vectorize(axes[-1])
    for a in axes[:-1]:
        stage.unroll(a)


def vectorize_innermost(stage, lanes: int, tail: str = "cut") -> list:
    """Vectorize the innermost loop of `stage` in vectors of `lanes` (any extent: see split_lanes)."""
    axes = split_lanes(stage, stage.axes[-1], lanes, names=(f"{stage.name}_vo", f"{stage.name}_v"), tail=tail)
    vectorize_lanes(stage, axes)
    return axes


# -------------------------------------------------------------------------------------- register budget
def tile_registers(target, rows: int, cols: int, dtype: str = "float32", broadcasts: int = 1,
                   scratch: int = 0) -> int:
    """Vector registers a register tile of rows x cols `dtype` elements needs: rows * vectors(cols)
    accumulators + vectors(cols) loaded operands (weights) + `broadcasts` (an input value) + `scratch` (e.g. the
    registers of an emulated popcount, target.popcount_scratch_registers())."""
    v = vectors(cols, target.lanes(dtype))
    return rows * v + v + broadcasts + scratch


def fits_registers(target, need: int, slack: int = 0) -> "bool | str":
    """True if `need` vector registers fit the target's register file (+ `slack`: a tile that lets one operand
    come straight from memory, an FMA's memory operand); else why not, for a template's constraint()."""
    have = target.num_vector_registers
    return need <= have + slack or f"register tile needs {need} vector registers, {target.name} has {have}"


def tile_on_stack(elements: int, itemsize: int) -> bool:
    """Whether a tile of accumulators (elements x itemsize bytes) stays on the stack, where LLVM keeps it in
    registers: larger tiles go to a heap workspace and make a store/load round trip per tile, which a short
    reduction (a 64-channel binary conv: 9 steps) cannot amortize (backend.STACK_ALLOC_BYTES)."""
    return elements * itemsize < STACK_ALLOC_BYTES


# ------------------------------------------------------------------------------------------- FMA model
def fma_efficiency(target, accumulators: int, loads: int, used: float = 1.0) -> float:
    """Share of the FMA peak a register tile allows per reduction step (one FMA per accumulator): FMA issue
    (accumulators / FMA pipes), loads (weights + broadcasts / load ports) and the latency chain of each
    accumulator (target.fma_latency) bound the step; `used` scales for lanes a narrow tile leaves idle.
    Zen 3 (2 pipes, latency 4, 2 ymm loads): >= 8 accumulators and no more loads than FMAs reach 1.0."""
    pipes, lat, ld = target.fma_per_cycle, target.fma_latency, target.loads_per_cycle
    cycles = max(accumulators / pipes, loads / ld, lat)
    return used * (accumulators / pipes) / cycles


# ------------------------------------------------------------------------------------------- epilogues
def epilogue_stages(s, names=EPILOGUE) -> list:
    """The elementwise epilogue stages this layer declared, in order (e.g. ["bias", "act"])."""
    return [n for n in names if n in s]


def inline_epilogue(s, names=EPILOGUE) -> list:
    """Fold every epilogue stage into its producer (reverse_compute_inline, last first): each output element
    is finished where it is stored."""
    epi = epilogue_stages(s, names)
    for e in reversed(epi):
        s[e].reverse_compute_inline()
    return epi


def place_epilogue(s, producer, axis: str | None, lanes: int | None = None, names=EPILOGUE, tail: str = "cut"):
    """Fold the epilogue into its first stage (the later ones reverse_compute_inline'd into it), compute that
    stage under `producer`'s loop `axis` (once per finished tile or block, while it is in cache; producer None:
    left at the root, one pass after the producer) and, with `lanes`, vectorize its innermost loop. Returns the
    stage, or None when the layer has no epilogue."""
    epi = epilogue_stages(s, names)
    if not epi:
        return None
    for e in reversed(epi[1:]):
        s[e].reverse_compute_inline()
    first = s[epi[0]]
    if producer is not None:
        first.reverse_compute_at(producer, axis)
    if lanes:
        vectorize_innermost(first, lanes, tail=tail)
    return first
