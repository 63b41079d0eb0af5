"""A binary conv net trained by mutation with the loss-delta layer on real data: scikit-learn's 8x8 digits.

    .venv/bin/python -m pip install -e '.[examples]'        # scikit-learn (the data ships inside it), matplotlib
    .venv/bin/python examples/train_digits.py [--out out/train_digits] [--layers 2] [--epochs 15] [--numpy-epochs 2]

Recipe (docs/training.md says why): 1,797 digits, a fixed stratified 75/25 split; each grey level (0..16) as an
8-bit thermometer code, padded by one pixel of zeros to 10x10x8. Layer 1: a binary 3x3 conv, 64 channels, under
a segmented 4x4 head of 10 classes (cs.layers.LossDelta), trained by convsched.mutation.train_layer: minibatches
of 64, each step applies the conv flips with the most negative loss deltas (one per channel; 32 per step
annealed to 4) and the best FC flips (128 annealed to 16), checked against the minibatch loss. Then frozen;
its output bits (8x8x64, padded to 10x10) feed layer 2, trained the same way with its own head. Test-time
classes: the argmax of a layer's head scores; and, once a layer is trained, the same head format refitted
with 8 rows per class (Hamming k-means, Trained.with_prototypes) on the frozen bits.

Then the same training with the loss deltas from LossDelta.fast_numpy (the same algorithm in numpy), for the
first --numpy-epochs epochs of every layer (default 2: fast_numpy takes ~1 min per epoch of layer 2) on the same
layer inputs: both delta functions are exact, so it takes exactly the kernel run's first steps (checked), and
the time difference on those steps is what the compiler buys end to end. Baselines: a float logistic
regression (scikit-learn) on the grey levels, and 8 Hamming prototypes per class on the input bits themselves.
Prints per epoch train loss, train and test accuracy, seconds; writes test accuracy vs seconds (PNG) and every
number (JSON) to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np

import convsched as cs
from convsched.mutation import Net, fit_prototypes, hamming, pad_bits, train_layer

warnings.filterwarnings("ignore", message="no tuning record")


@dataclass
class Config:
    levels: int = 8              # thermometer bits per pixel
    layers: int = 2
    channels: int = 64
    segments: int = 4            # segmented head, segments x segments (1: global head)
    epochs: int = 15             # per layer
    batch: int = 64
    flips: tuple = (32, 4)       # conv flips per step: start, end (geometric annealing)
    fc_flips: tuple = (128, 16)
    accept: str = "check"
    prototypes: int = 8          # head rows per class of the refitted head
    test_size: float = 0.25
    split_seed: int = 0
    seed: int = 0
    subset: int | None = None    # use only the first `subset` examples (tests)


def thermometer(images, levels: int) -> np.ndarray:
    """(N, H, W) grey levels 0..16 -> (N, H, W, levels) bits: bit i = level > (i + 0.5) * 16 / levels."""
    th = (np.arange(levels) + 0.5) * 16 / levels
    return (np.asarray(images)[..., None] > th).astype(np.uint8)


def load(cfg: Config) -> dict:
    # scikit-learn and matplotlib (the examples extra) are imported where used: the module imports without them
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    images, y = d.images, d.target
    if cfg.subset:
        images, y = images[:cfg.subset], y[:cfg.subset]
    gtr, gte, ytr, yte = train_test_split(images, y, test_size=cfg.test_size, random_state=cfg.split_seed,
                                          stratify=y)
    # one pixel of 0 bits (= grey level 0, the background) around: the valid 3x3 conv then keeps 8x8
    return dict(xtr=pad_bits(thermometer(gtr, cfg.levels)), ytr=ytr, xte=pad_bits(thermometer(gte, cfg.levels)),
                yte=yte, gtr=gtr, gte=gte)


def geometric(a, b):
    """A schedule of the training progress f in [0, 1): a at the start, b at the end."""
    return lambda f: a * (b / a) ** f


def blas_threads(n):
    """Limit numpy's BLAS threads (threadpoolctl ships with scikit-learn). Both runs use 1: with the compiled
    kernel, TVM's thread pool holds both cores and OpenBLAS threads beside it made Forward's matrix products
    ~10x slower; the fast_numpy run was faster with 1 too on the shared 2 cores (an epoch of layer 2: 49-52 s,
    65-71 s with 2 BLAS threads). The kernel keeps TVM's pool (one thread per core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(n, user_api="blas")


def train_net(data: dict, cfg: Config, deltas: str = "kernel", inputs: list | None = None,
              stop_after: int | None = None, log=print) -> dict:
    """Train cfg.layers layers one at a time. deltas: "kernel" (cs.compile) or "numpy" (fast_numpy).
    inputs: per layer (train, test) input bits to use instead of the previous layers' outputs (the numpy run
    takes the kernel run's, so that each of its layers starts from the same frozen input); stop_after: train
    each layer only for the first stop_after epochs of its schedule. Returns the net, per-epoch rows
    (seconds cumulative over layers, training only), per-layer summaries and inputs."""
    net, rows, layers, used = Net(pad=1), [], [], []
    xtr, xte, ytr, yte = data["xtr"], data["xte"], data["ytr"], data["yte"]
    seconds = compile_seconds = 0.0
    with blas_threads(1):
        for li in range(cfg.layers):
            xin, xin_te = inputs[li] if inputs is not None else (net.inputs_of(xtr), net.inputs_of(xte))
            used.append((xin, xin_te))
            seg = dict(head="segmented", segments=(cfg.segments,) * 2) if cfg.segments > 1 else dict(head="global")
            layer = cs.layers.LossDelta(h=xin.shape[1], w=xin.shape[2], cin=xin.shape[3], cout=cfg.channels,
                                        classes=10, **seg)
            t0 = time.perf_counter()
            fn = cs.compile(layer) if deltas == "kernel" else layer.fast_numpy
            compile_seconds += time.perf_counter() - t0
            base = seconds

            def on_epoch(epoch, t, row, li=li, xin_te=xin_te, base=base):
                acc = float((t.predict(xin_te) == yte).mean())
                r = dict(layer=li + 1, epoch=epoch, train_loss=row["train_loss"], train_acc=row["train_acc"],
                         test_acc=acc, seconds=base + row["seconds"], layer_seconds=row["seconds"],
                         delta_seconds=row["delta_seconds"])
                rows.append(r)
                log(f"  [{deltas}] layer {li + 1} epoch {epoch:2d}: train loss {r['train_loss']:9.0f}  "
                    f"train acc {r['train_acc']:.3f}  test acc {acc:.3f}  {r['seconds']:6.1f} s "
                    f"(deltas {r['delta_seconds']:.1f} s)")
                return dict(test_acc=acc)

            t = train_layer(layer, fn, xin, ytr, epochs=cfg.epochs, batch=cfg.batch,
                            flips=geometric(*cfg.flips), fc_flips=geometric(*cfg.fc_flips), accept=cfg.accept,
                            seed=cfg.seed + li, on_epoch=on_epoch, stop_after=stop_after)
            seconds = base + t.history[-1]["seconds"]
            t1 = time.perf_counter()
            proto = t.with_prototypes(xin, ytr, cfg.prototypes, seed=cfg.seed)
            proto_seconds = time.perf_counter() - t1
            summary = dict(layer=li + 1, epochs=t.history[-1]["epoch"], head_test_acc=t.history[-1]["test_acc"],
                           proto_train_acc=float((proto.predict(xin) == ytr).mean()),
                           proto_test_acc=float((proto.predict(xin_te) == yte).mean()),
                           proto_seconds=proto_seconds, seconds=seconds,
                           delta_seconds=t.history[-1]["delta_seconds"])
            layers.append(summary)
            log(f"  [{deltas}] layer {li + 1}: head test acc {summary['head_test_acc']:.3f}; refitted head "
                f"({cfg.prototypes} rows per class) train {summary['proto_train_acc']:.3f} test "
                f"{summary['proto_test_acc']:.3f} ({proto_seconds:.1f} s)")
            net.add(t)
    return dict(net=net, rows=rows, layers=layers, inputs=used, seconds=seconds, compile_seconds=compile_seconds,
                delta_seconds=sum(s["delta_seconds"] for s in layers))


def compare(kernel: dict, numpy_run: dict) -> dict:
    """Kernel vs fast_numpy on the same steps: for every layer, the epochs both ran (the numpy run may stop
    early; its steps are the start of the kernel run's: checked, the rows must agree exactly)."""
    same = True
    k_sec = k_delta = n_sec = n_delta = 0.0
    for ln in numpy_run["layers"]:
        e = ln["epochs"]
        pick = {name: {(r["layer"], r["epoch"]): r for r in run["rows"] if r["layer"] == ln["layer"]}
                for name, run in (("k", kernel), ("n", numpy_run))}
        for key, r in pick["n"].items():
            kr = pick["k"][key]
            same &= (r["train_loss"], r["train_acc"], r["test_acc"]) == (kr["train_loss"], kr["train_acc"],
                                                                        kr["test_acc"])
        kr, nr = pick["k"][(ln["layer"], e)], pick["n"][(ln["layer"], e)]
        k_sec += kr["layer_seconds"]
        k_delta += kr["delta_seconds"]
        n_sec += nr["layer_seconds"]
        n_delta += nr["delta_seconds"]
    if all(ln["epochs"] == kl["epochs"] for ln, kl in zip(numpy_run["layers"], kernel["layers"])):
        same &= all(np.array_equal(a.conv_w, b.conv_w) and np.array_equal(a.fc_w, b.fc_w)
                    for a, b in zip(kernel["net"].layers, numpy_run["net"].layers))
    return dict(same_steps=bool(same), kernel_seconds=k_sec, numpy_seconds=n_sec, kernel_delta_seconds=k_delta,
                numpy_delta_seconds=n_delta, speedup=n_sec / k_sec, delta_speedup=n_delta / k_delta,
                epochs=[ln["epochs"] for ln in numpy_run["layers"]])


def logistic_baseline(data: dict) -> dict:
    from sklearn.linear_model import LogisticRegression
    t0 = time.perf_counter()
    Xtr, Xte = data["gtr"].reshape(len(data["gtr"]), -1) / 16, data["gte"].reshape(len(data["gte"]), -1) / 16
    lr = LogisticRegression(max_iter=5000).fit(Xtr, data["ytr"])
    return dict(test_acc=float(lr.score(Xte, data["yte"])), train_acc=float(lr.score(Xtr, data["ytr"])),
                seconds=time.perf_counter() - t0)


def input_prototypes_baseline(data: dict, cfg: Config) -> dict:
    """The refitted head's rule (Hamming prototypes) on the input bits themselves, no conv: what the layers add."""
    fc = fit_prototypes(data["xtr"], data["ytr"], cfg.prototypes, seed=cfg.seed)
    pred = hamming(data["xte"], fc).argmax(1) // cfg.prototypes
    return dict(test_acc=float((pred == data["yte"]).mean()))


def plot(runs: dict, baselines: dict, path: str):
    """Test accuracy vs training seconds: each layer's own head per epoch, the refitted heads as stars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 5))
    names = {"kernel": "compiled kernel", "numpy": "fast_numpy"}
    for (name, run), color in zip(runs.items(), ("C0", "C1")):
        name = names.get(name, name)
        for li in sorted({r["layer"] for r in run["rows"]}):
            rs = [r for r in run["rows"] if r["layer"] == li]
            ax.plot([r["seconds"] for r in rs], [r["test_acc"] for r in rs], "o-" if li == 1 else "s--",
                    color=color, ms=3, label=f"{name}: layer {li} head")
        for s in run["layers"]:
            ax.plot([s["seconds"]], [s["proto_test_acc"]], "*", color=color, ms=12,
                    label=f"{name}: refitted heads (stars, one per layer)" if s["layer"] == 1 else None)
    ax.axhline(baselines["logistic"]["test_acc"], color="gray", ls=":", label="float logistic regression")
    ax.axhline(0.1, color="lightgray", ls=":", label="chance")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, 1.3 * max(r["seconds"] for run in runs.values() for r in run["rows"]))
    ax.set_xlabel("training seconds (loss deltas + optimiser; evaluation excluded)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Binary conv net on sklearn digits, trained by loss-delta mutation")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/train_digits", help="output directory (PNG, JSON); out/ is git-ignored")
    ap.add_argument("--layers", type=int, default=Config.layers)
    ap.add_argument("--channels", type=int, default=Config.channels)
    ap.add_argument("--epochs", type=int, default=Config.epochs, help="epochs per layer")
    ap.add_argument("--prototypes", type=int, default=Config.prototypes)
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument("--numpy-epochs", type=int, default=2,
                    help="epochs per layer of the fast_numpy run (the first ones of the same schedule, on the kernel "
                         "run's layer inputs; 0: no numpy run). fast_numpy takes ~1 min per epoch of layer 2")
    args = ap.parse_args(argv)
    cfg = replace(Config(), layers=args.layers, channels=args.channels, epochs=args.epochs,
                  prototypes=args.prototypes, seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    data = load(cfg)
    print(f"digits: {len(data['ytr'])} train / {len(data['yte'])} test, input bits {data['xtr'].shape[1:]}; "
          f"CPU {cs.target.host().mcpu}, {os.cpu_count()} cores; {cfg}")
    baselines = dict(logistic=logistic_baseline(data), input_prototypes=input_prototypes_baseline(data, cfg))
    print(f"baselines: float logistic regression test acc {baselines['logistic']['test_acc']:.3f}; "
          f"{cfg.prototypes} Hamming prototypes per class on the input bits "
          f"{baselines['input_prototypes']['test_acc']:.3f}")
    print("training with loss deltas from cs.compile (the TVM kernel)")
    runs = {"kernel": train_net(data, cfg, "kernel")}
    if args.numpy_epochs > 0:
        n = min(args.numpy_epochs, cfg.epochs)
        print(f"training with loss deltas from fast_numpy: the first {n} of {cfg.epochs} epochs of every layer")
        runs["numpy"] = train_net(data, cfg, "numpy", inputs=runs["kernel"]["inputs"], stop_after=n)
    k = runs["kernel"]
    summary = dict(config=cfg.__dict__, baselines=baselines, cpu=cs.target.host().mcpu,
                   runs={n: {key: v for key, v in r.items() if key not in ("net", "inputs")} for n, r in runs.items()})
    print("\nresults")
    print(f"  kernel: train {k['seconds']:.1f} s (loss deltas {k['delta_seconds']:.1f} s; compile "
          f"{k['compile_seconds']:.1f} s); test acc, own head: " +
          ", ".join(f"layer {s['layer']} {s['head_test_acc']:.3f}" for s in k["layers"]) +
          f"; refitted head ({cfg.prototypes} rows per class): " +
          ", ".join(f"layer {s['layer']} {s['proto_test_acc']:.3f}" for s in k["layers"]))
    if "numpy" in runs:
        c = compare(k, runs["numpy"])
        summary["comparison"] = c
        print(f"  kernel vs fast_numpy on the same steps (epochs {c['epochs']} of each layer): "
              f"{c['numpy_seconds']:.1f} s vs {c['kernel_seconds']:.1f} s = {c['speedup']:.1f}x end to end, "
              f"{c['delta_speedup']:.1f}x in the loss deltas; same steps: {c['same_steps']}")
        if not c["same_steps"]:
            print("  WARNING: the runs diverged; both delta functions are exact, so this is a bug", file=sys.stderr)
    png = os.path.join(args.out, "test_accuracy_vs_seconds.png")
    plot(runs, baselines, png)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    print(f"  wrote {png} and results.json; wall time {time.perf_counter() - t_start:.0f} s")
    return summary


if __name__ == "__main__":
    main()
