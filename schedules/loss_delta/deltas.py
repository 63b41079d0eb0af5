"""Knobs of the loss-delta layer's sparse delta stage: hand-written TIR (convsched/backend/loss_delta.py), built
by the kernel with these knobs (there are no TE stages to schedule: the stage walks data-dependent sets, the
segments that can flip and their sensitive patches, which TE cannot declare).

    groups     64-lane groups of mutations whose input-bit sums G a chunk keeps in registers (uint8 lanes): more
               groups walk each patch list fewer times; at most half the vector registers, and a buffer below
               TVM's 1 KB stack limit (15 groups), else it lives in memory
    groups16   the same for int16 lanes (a segment with more than 255 sensitive patches; 7 groups at most)
    compress   build each patch list from the row mask words with vpcompressd (AVX-512: 2 instructions per 16
               patches, no branch) instead of a loop over the set bits (a mispredicted exit per row)

Measured (Xeon "rocketlake" = Sapphire Rapids class, 1 thread pinned, 2026-12-01): see docs/loss_delta.md.
"""
from convsched.schedule import tile_on_stack

LAYER = "loss_delta"
ALGORITHM = "deltas"


def _group_vectors(target) -> int:
    """Vector registers of one 64-lane uint8 group: 1 zmm, 2 ymm or 4 xmm."""
    return max(1, 512 // target.vector_bits)


def _max_groups(target, lane_bytes: int) -> int:
    regs = target.num_vector_registers // 2
    fit = regs // (_group_vectors(target) * lane_bytes)
    stack = max(g for g in range(1, 65) if tile_on_stack(64 * g, lane_bytes))
    return max(1, min(fit, stack))


def _groups_per_channel(layer, target) -> int:
    """64-lane groups of one channel's mutations: 3 rows of 3 pixels of the forward's padded words."""
    wb = layer.forward_word_bits(target)
    cp = -(-layer.cin // wb) * wb
    return 3 * -(-3 * cp // 64)


def _space(top: int, most: int) -> list:
    return sorted({g for g in (1, 2, 3, 4, 6, 8, 12, top) if g <= min(top, most)} | {min(top, most)})


KNOBS = {
    "groups": lambda layer, target: _space(_max_groups(target, 1), _groups_per_channel(layer, target)),
    "groups16": lambda layer, target: _space(_max_groups(target, 2), _groups_per_channel(layer, target)),
    "compress": lambda layer, target: [True, False] if target.has("avx512f") else [False],
}


def defaults(layer, target):
    return {"groups": KNOBS["groups"](layer, target)[-1], "groups16": KNOBS["groups16"](layer, target)[-1],
            "compress": target.has("avx512f")}


def schedule(s, layer, groups, groups16, compress):
    """Nothing to record: the kernel builds the TIR stage with the knobs (kernel/loss_delta.py, LOSS_DELTA)."""
    raise ValueError("loss_delta/deltas holds the knobs of a hand-written TIR stage; compile the layer with it "
                     "(cs.compile(layer, template='loss_delta/deltas', knobs=...)): there are no steps to record")
