"""Export an fp32 conv and a binary conv into ONE library (BUILD/net: libnet.so, net.h, manifest.json) and
write their inputs and numpy references as raw little-endian files in BUILD/data, for loader.c / loader.cpp.

    python make_data.py --out build            # small layers (what the tests use)
    python make_data.py --out build --bench    # ResNet-ish sizes, for benchmarks/export_c_vs_python.py

Files in BUILD/data, per kernel K (conv, bconv): K_<arg>.bin for each input argument (the kernel's own
arguments: bit tensors already packed into uint64 words), K_ref.bin (numpy reference of the output) and
K_tol.txt ("rtol atol"; "0 0" = exact).
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

import convsched as cs
from convsched.export import export

warnings.filterwarnings("ignore", message="no tuning record")


def layers(bench: bool) -> dict:
    if bench:
        return {"conv": cs.layers.Conv2d(h=56, w=56, cin=64, cout=64, kh=3, kw=3, pad=1),
                "bconv": cs.layers.BinaryConv2d(h=32, w=32, cin=256, cout=256, kh=3, kw=3, pad=0)}
    return {"conv": cs.layers.Conv2d(h=12, w=12, cin=16, cout=32, kh=3, kw=3, pad=1),
            "bconv": cs.layers.BinaryConv2d(h=10, w=10, cin=128, cout=64, kh=3, kw=3, pad=0)}


def main(out="build", bench=False, target="host", seed=0) -> Path:
    out = Path(out)
    ls = layers(bench)
    kernels = {name: cs.compile(layer, target=target) for name, layer in ls.items()}
    export(kernels, out / "net", name="net")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, layer in ls.items():
        xs = layer.random_inputs(seed)
        args = layer.prepare_inputs(list(xs))          # what the C entry point takes (bits packed)
        for spec, a in zip(layer.input_specs(), args):
            a = np.ascontiguousarray(a, dtype=spec.dtype)
            assert a.shape == tuple(spec.shape), (name, spec, a.shape)
            a.tofile(data / f"{name}_{spec.name}.bin")
        ref = np.asarray(layer.reference(*xs))
        (spec,) = layer.output_specs()
        assert ref.shape == tuple(spec.shape) and ref.dtype == np.dtype(spec.dtype), (name, spec, ref.shape, ref.dtype)
        ref.tofile(data / f"{name}_ref.bin")
        rtol, atol = (0.0, 0.0) if layer.exact else layer.tolerance()
        (data / f"{name}_tol.txt").write_text(f"{rtol} {atol}\n")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build")
    p.add_argument("--bench", action="store_true", help="benchmark-sized layers")
    p.add_argument("--target", default="host")
    a = p.parse_args()
    d = main(a.out, a.bench, a.target)
    print(f"wrote {d / 'net'} and {d / 'data'}", file=sys.stderr)
