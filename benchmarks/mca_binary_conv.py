"""llvm-mca's model of the binary conv kernels on CPUs we cannot run: % of the bit-GEMM microkernel's rate.

    .venv/bin/python benchmarks/mca_binary_conv.py x86-64-v3:znver3 znver4 znver5 host:sapphirerapids

Each argument is BUILD[:MODEL]: the kernels are compiled for target BUILD (a named target, any LLVM -mcpu, or
"host") and their assembly is fed to `llvm-mca -mcpu=MODEL` (default: BUILD's own CPU name). It is a model,
not a measurement: llvm-mca's scheduling tables, steady state, no cache misses.

For every binary-bench layer (the benchmarks/binary_conv.py shapes, convsched.tune.suites.binary_bench) with
the blocked template's defaults for BUILD: the innermost loop holding the popcounts (vpopcntq, or the psadbw
that ends LLVM's emulated popcount) is one (or several, when LLVM unrolled kw) reduction steps of a register
tile; llvm-mca gives its cycles per iteration. The straight code of each enclosing loop up to the tile loop
(the first one that stores: the int32 epilogue, accumulator set-up) is modelled the same way and counted once
per tile (the kh loop's own code three times). A tile = reduction steps x loop + that code. The ceiling is the
same analysis of the bit-GEMM microkernel's loop (convsched.backend.peaks.bit_gemm, its best register tile).
llvm-mca: $LLVM_MCA, else llvm-mca-19 / /usr/lib/llvm-19/bin/llvm-mca (Debian package llvm-19: LLVM 14's
llvm-mca has no znver4/znver5), else llvm-mca.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import convsched as cs  # noqa: E402
from convsched.backend import peaks  # noqa: E402
from convsched.tune.suites import binary_bench  # noqa: E402

TEMPLATE = "binary_conv2d/blocked"
STORE = re.compile(r"%[xyz]mm\d+, -?\w*\(%")          # a vector register stored to memory


def llvm_mca() -> str:
    for cand in (os.environ.get("LLVM_MCA"), "llvm-mca-19", "/usr/lib/llvm-19/bin/llvm-mca", "llvm-mca"):
        if cand and (shutil.which(cand) or Path(cand).exists()):
            return shutil.which(cand) or cand
    raise SystemExit("llvm-mca not found: apt-get install llvm-19 (or set LLVM_MCA)")


def mca_cycles(instrs: list, mcpu: str, iters: int = 200) -> float:
    """llvm-mca's cycles per iteration of a block of instructions."""
    if not instrs:
        return 0.0
    p = subprocess.run([llvm_mca(), f"-mcpu={mcpu}", f"-iterations={iters}", "-mtriple=x86_64-unknown-linux-gnu"],
                       input="\n".join(instrs) + "\n", capture_output=True, text=True)
    m = re.search(r"Total Cycles:\s+(\d+)", p.stdout)
    if not m:
        raise RuntimeError(f"llvm-mca failed: {p.stderr[-400:]}")
    return int(m.group(1)) / iters


def _loops(lines: list) -> list:
    """(first, last) line of every loop: a label and a later jump back to it."""
    labels = {ln[:-1]: i for i, ln in enumerate(lines) if re.match(r"^\.\w+:$", ln)}
    out = set()
    for i, ln in enumerate(lines):
        m = re.match(r"^\s+j\w+\s+(\.\w+)$", ln)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            out.add((labels[m.group(1)], i))
    return sorted(out)


def _instrs(lines: list) -> list:
    return [ln for ln in lines if ln.startswith("\t") and not ln.strip().startswith((".", "#"))
            and "call" not in ln]          # llvm-mca cannot follow calls (a memset, a workspace allocation)


def _popcounts(instrs: list) -> int:
    native = sum("vpopcntq" in ln for ln in instrs)
    return native or sum("psadbw" in ln for ln in instrs)


def tile_model(asm: str, mcpu: str, steps: int = 0, vectors_per_step: int = 0) -> dict:
    lines = [ln.rstrip() for ln in asm.splitlines()]
    loops = _loops(lines)
    hot = [lp for lp in loops if _popcounts(_instrs(lines[lp[0]:lp[1] + 1]))]
    inner = min(hot, key=lambda lp: lp[1] - lp[0])
    body = _instrs(lines[inner[0]:inner[1] + 1])
    out = {"loop_cycles": mca_cycles(body, mcpu), "popcounts": _popcounts(body)}
    if not steps:
        return out
    iters = steps * vectors_per_step / out["popcounts"]
    total, cur, levels = iters * out["loop_cycles"], inner, []
    while True:
        enclosing = [lp for lp in loops if lp[0] <= cur[0] and lp[1] >= cur[1] and lp != cur
                     and lp[1] - lp[0] > cur[1] - cur[0]]
        if not enclosing:
            break
        nxt = min(enclosing, key=lambda lp: lp[1] - lp[0])
        extra = _instrs(lines[nxt[0]:cur[0]] + lines[cur[1] + 1:nxt[1] + 1])
        is_tile = any(STORE.search(ln) for ln in extra)
        trips = 1 if is_tile else 3               # an intermediate level is the kh loop: 3 entries per tile
        c = mca_cycles(extra, mcpu)
        total += trips * c
        levels.append((len(extra), trips, round(c, 1)))
        cur = nxt
        if is_tile:
            break
    out.update(iters=iters, tile_cycles=total, levels=levels)
    return out


def microkernel(target, mcpu: str) -> tuple:
    """(bit-MACs per cycle, tile) of the bit-GEMM microkernel's best register tile under the model."""
    best = (0.0, None)
    for mt, nv in peaks.bit_tiles(target):
        ex = peaks.bit_gemm(24 * mt, nv * target.lanes("uint64"), 64, target, m_tile=mt, n_vecs=nv)
        m = tile_model(str(ex.mod.inspect_source("asm")), mcpu)
        best = max(best, (m["popcounts"] * target.vector_bits / m["loop_cycles"], (mt, nv)), key=lambda b: b[0])
    return best


def main(argv: list) -> None:
    for spec in argv or ["x86-64-v3:znver3", "znver4", "znver5"]:
        build, _, model = spec.partition(":")
        t = cs.target.get(build)
        mcpu = model or t.mcpu
        ceiling, tile = microkernel(t, mcpu)
        print(f"\n== build {build} ({t.mcpu}: {t.vector_bits}-bit vectors, {t.popcount} popcount), "
              f"llvm-mca -mcpu={mcpu}: microkernel {tile[0]} rows x {tile[1]} vectors = {ceiling:.0f} bit-MAC/cycle")
        print(f"{'layer':12} {'tile':>9} {'loop cyc':>8} {'iters':>5} {'code outside (instrs, trips, cyc)':>36} "
              f"{'bit-MAC/cyc':>11} {'% ceiling':>9}")
        for layer in binary_bench():
            knobs = cs.schedule.get_template(TEMPLATE).defaults(layer, t)
            steps, vps = layer.kh * layer.kw * layer.cin_words, knobs["ow_tile"] * knobs["co_vecs"]
            asm = cs.kernel.layer_assembly(layer, t, template=TEMPLATE)
            m = tile_model(asm, mcpu, steps, vps)
            rate = steps * vps * t.vector_bits / m["tile_cycles"]
            name = f"{layer.h}x{layer.w}x{layer.cin}"
            print(f"{name:12} {knobs['co_vecs']}v x {knobs['ow_tile']}px {m['loop_cycles']:8.2f} {m['iters']:5.0f} "
                  f"{str(m['levels']):>36} {rate:11.0f} {100 * rate / ceiling:8.0f}%", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
