"""Mutation-based training of a binary conv + segmented-pooling + FC head, driven by exact loss deltas.

Every step computes, with one compiled LossDelta kernel call, how the batch loss would change for EVERY single
weight mutation (conv and FC), then applies the best ones through convsched.mutation.MutationOptimizer: the
best improving flip of a few different conv channels plus the best FC flip (mutations of different channels
interact only through the loss, so the step is checked and falls back to the single best mutation if the
combination did worse). Loss falls; no gradients, no floats. A real data set: examples/train_digits.py.

    .venv/bin/python examples/bnn_mutation_training.py [--steps 40] [--per-step 4]
"""
import argparse
import time
import warnings

import numpy as np

import convsched as cs
from convsched.mutation import Forward, MutationOptimizer

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
    opt = MutationOptimizer(layer, k, flips=args.per_step, fc_flips=1, per_channel=1, accept="check", seed=0)
    # the check's loss: Forward caches the batch's patches and recomputes only the channels a step changed
    fwd, rows = Forward(layer, x), np.arange(len(x))

    def loss(cw, fw):
        return int(fwd.loss(cw, fw, labels, rows).sum())
    cur = loss(conv_w, fc_w)
    print(f"{layer}\nstep 0: loss {cur}")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        st = opt.step(x, labels, conv_w, fc_w, loss)    # deltas of all 9*16*32 + 4*4*32 mutations, summed
        if not st.flips:
            print(f"step {step}: no single mutation improves the loss: a local minimum")
            break
        conv_w, fc_w, cur = st.conv_w, st.fc_w, st.loss_after
        if step % 5 == 0 or step == 1:
            print(f"step {step}: loss {cur}  ({len(st.flips)} mutations applied{', fell back' if st.fallback else ''})")
    print(f"final loss {cur}; {time.perf_counter() - t0:.2f} s for {step} steps")


if __name__ == "__main__":
    main()
