"""Mutation-based training of a binary conv + segmented-pooling + FC head, driven by exact loss deltas.

Every step computes, with one compiled LossDelta kernel call, how the batch loss would change for EVERY single
weight mutation (conv and FC), then applies the best ones: the best improving flip of a few different conv
channels plus the best FC flip (mutations of different channels interact only through the loss, so the
step is checked and falls back to the single best mutation if the combination did worse). Loss falls; no
gradients, no floats.

    .venv/bin/python examples/bnn_mutation_training.py [--steps 40] [--per-step 4]
"""
import argparse
import time
import warnings

import numpy as np

import convsched as cs

warnings.filterwarnings("ignore", message="no tuning record")


def synthetic(rng, n, classes, h, w, c, noise=0.25):
    """Each class is a random bit image; examples are its copies with `noise` of the bits flipped."""
    protos = rng.integers(0, 2, (classes, h, w, c), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    flips = (rng.random((n, h, w, c)) < noise).astype(np.uint8)
    return protos[labels] ^ flips, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--per-step", type=int, default=4, help="conv channels mutated per step")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    layer = cs.layers.LossDelta(h=12, w=12, cin=16, cout=32, classes=4, head="segmented", segments=(2, 2))
    x, labels = synthetic(rng, args.batch, layer.classes, layer.h, layer.w, layer.cin)
    conv_w = rng.integers(0, 2, (layer.cout, 3, 3, layer.cin), dtype=np.uint8)
    fc_w = rng.integers(0, 2, layer.fc_shape, dtype=np.uint8)
    k = cs.compile(layer)

    def loss(cw, fw):
        return int(layer.loss(*layer.canon_inputs(x, labels, cw, fw)).sum())

    cur = loss(conv_w, fc_w)
    print(f"{layer}\nstep 0: loss {cur}")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        d = k(x, labels, conv_w, fc_w)                  # deltas of all 9*16*32 + 4*4*32 mutations, summed
        moves = []
        flat = d.conv.reshape(layer.cout, -1)
        for o in np.argsort(flat.min(1))[:args.per_step]:  # channels with the best improving flip
            i = int(flat[o].argmin())
            if flat[o, i] < 0:
                moves.append(("conv", np.unravel_index(o * flat.shape[1] + i, d.conv.shape), int(flat[o, i])))
        j = int(d.fc.argmin())
        if d.fc.flat[j] < 0:
            moves.append(("fc", np.unravel_index(j, d.fc.shape), int(d.fc.flat[j])))
        if not moves:
            print(f"step {step}: no single mutation improves the loss: a local minimum")
            break
        cw, fw = conv_w.copy(), fc_w.copy()
        for part, idx, _ in moves:
            (cw if part == "conv" else fw)[idx] ^= 1
        new = loss(cw, fw)
        if new >= cur:                                    # combined moves interfered: take the best one alone
            part, idx, delta = min(moves, key=lambda m: m[2])
            cw, fw = conv_w.copy(), fc_w.copy()
            (cw if part == "conv" else fw)[idx] ^= 1
            new = loss(cw, fw)
            assert new - cur == delta, "a single mutation's delta is exact"
        conv_w, fc_w, cur = cw, fw, new
        if step % 5 == 0 or step == 1:
            print(f"step {step}: loss {cur}  ({len(moves)} mutations proposed)")
    print(f"final loss {cur}; {time.perf_counter() - t0:.2f} s for {step} steps")


if __name__ == "__main__":
    main()
