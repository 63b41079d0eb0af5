"""Knobs of the loss-delta layer's sparse delta stage: hand-written TIR (convsched/backend/loss_delta.py), built
by the kernel with these knobs (there are no TE stages to schedule: the stage walks data-dependent sets, the
segments that can flip and their sensitive patches, which TE cannot declare).

    unit_bits  width of the bit-sliced counter vectors (128 / 256 / 512, at most the target's vectors): one
               patch row of 3 pixels is 3*Cp mutation lanes, ceil(3*Cp / unit_bits) vectors, or rows of at most
               half a vector share one in 128- or 256-bit slots (32 channels: 3 rows of 96 lanes in one zmm)
    units      counter vectors summed per pass over a patch list: their ones / twos / fours / eights planes
               stay in registers (4 per vector, beside ~8 for the carry-save adders' inputs and carries), the
               planes above in memory; more per pass walk each list fewer times
    compress   build each patch list from the row mask words with vpcompressd (AVX-512: 2 instructions per 16
               patches, no branch) instead of a loop over the set bits (a mispredicted exit per row)

Measured (Xeon "rocketlake" = Sapphire Rapids class, 1 thread pinned, 2026-12-01): see docs/loss_delta.md.
"""
from convsched.schedule import tile_on_stack

LAYER = "loss_delta"
ALGORITHM = "deltas"

ADDER_REGISTERS = 8        # inputs and carries of the carry-save adders, besides the counter planes
PLANES = 4                 # counter planes per vector in registers: ones, twos, fours, eights


def _row_bits(layer, target) -> int:
    """Mutation lanes of one patch row: 3 pixels of the forward's padded words."""
    return 3 * layer.forward_words(target) * layer.forward_word_bits(target)


def _unit_bits(layer, target) -> list:
    return [u for u in (128, 256, 512) if u <= target.vector_bits]


def _max_units(target, unit_bits) -> int:
    """Counter vectors whose PLANES planes fit the registers left beside the adders, the plane buffer below TVM's
    stack limit (tile_on_stack)."""
    fit = max(1, (target.num_vector_registers - ADDER_REGISTERS) // PLANES)
    return max(u for u in range(1, fit + 1) if tile_on_stack(PLANES * u * unit_bits // 8, 1))


def _units(layer, target) -> list:
    most = max(_max_units(target, u) for u in _unit_bits(layer, target))
    return list(range(1, most + 1))


KNOBS = {
    "unit_bits": _unit_bits,
    "units": _units,
    "compress": lambda layer, target: [True, False] if target.has("avx512f") else [False],
}


def constraint(layer, target, unit_bits, units, compress):
    if units > _max_units(target, unit_bits):
        return f"{units} counter vectors of {unit_bits} bits pass the register budget"
    return True


def defaults(layer, target):
    """The target's widest counter vectors (rows of at most half a vector share one: backend/loss_delta.py), as
    many per pass as the registers hold and a channel has. Global 32->32 (rows of 96 bits), delta stage alone:
    512-bit vectors (the 3 rows in one) 5.8 us/example, 256-bit 7.4, 128-bit (a row each) 8.2; segmented 2x2
    12.6 / 14.4 / 15.6 (Xeon "rocketlake", 1 thread pinned, CPU time, best of 9, 2026-12-01)."""
    unit = target.vector_bits
    row = _row_bits(layer, target)
    per_channel = 1 if 2 * row <= unit else 3 * -(-row // unit)
    return {"unit_bits": unit, "units": min(_max_units(target, unit), per_channel),
            "compress": target.has("avx512f")}


def schedule(s, layer, unit_bits, units, compress):
    """Nothing to record: the kernel builds the TIR stage with the knobs (kernel/loss_delta.py, LOSS_DELTA)."""
    raise ValueError("loss_delta/deltas holds the knobs of a hand-written TIR stage; compile the layer with it "
                     "(cs.compile(layer, template='loss_delta/deltas', knobs=...)): there are no steps to record")
