"""TVM pieces of the binary layers: the generated assembly of a kernel, and a bit-GEMM microbenchmark that
measures this machine's xor + popcount + add ceiling (the peak binary-conv figures are quoted against).

    from convsched.backend import binary as bb
    bb.assembly(built)                        # the x86 assembly TVM/LLVM generated for a compiled function
    bb.bit_gemm_peak(target, threads=1)       # {"gops": G bit-MAC/s, "ms": ..., "shape": ..., "popcount": ...}

(Kernel.assembly() and convsched.kernel.layer_assembly(layer, "znver4") build on assembly().)
"""
from __future__ import annotations

import numpy as np

from . import tvm, te, tirx, s_tir


def assembly(built) -> str:
    """The assembly of a compiled function (a Built, or anything holding its `executable`), e.g. to look for
    vpopcntq."""
    ex = getattr(built, "executable", None)
    if ex is None:
        raise ValueError("assembly(): no compiled module here (a kernel loaded from an export directory runs "
                         "the library's machine code): compile the layer for the target instead")
    return str(ex.mod.inspect_source("asm"))


def bit_gemm(m: int, n: int, k_words: int, target, m_tile: int = 4, n_vecs: int = 2):
    """Compile C[i, j] = sum_k popcount(A[i, k] ^ B[k, j]) (uint64 words, B with j contiguous): the binary
    conv's inner loop without the convolution. Tiles: m_tile rows unrolled x n_vecs vectors of uint64
    lanes (vectorized), rows in parallel, the reduction outside the tile (accumulators stay in registers)."""
    lanes = max(1, target.vector_bits // 64)
    a = te.placeholder((m, k_words), "uint64", name="A")
    b = te.placeholder((k_words, n), "uint64", name="B")
    r = te.reduce_axis((0, k_words), "k")
    c = te.compute((m, n), lambda i, j: te.sum(tirx.popcount(a[i, r] ^ b[r, j]), axis=r), name="C")
    sch = s_tir.Schedule(te.create_prim_func([a, b, c]))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    io, ii = sch.split(i, [None, m_tile])
    jo, jv, jl = sch.split(j, [None, n_vecs, lanes])
    sch.reorder(io, jo, kk, ii, jv, jl)
    sch.parallel(io)
    sch.unroll(ii)
    sch.unroll(jv)
    sch.vectorize(jl)
    sch.decompose_reduction(blk, kk)
    return tvm.compile(sch.mod, target=tvm.target.Target(target.to_tvm()))


def bit_gemm_peak(target, threads: int | None = None, m: int = 256, n: int = 8, k_words: int = 64,
                  repeat: int = 300) -> dict:
    """G bit-MAC/s of bit_gemm on a cache-resident problem (A: m x k_words words, 128 KB; B: 4 KB) on the
    current thread setting (TVM_NUM_THREADS): the ceiling for xor + popcount + add. The best of `repeat`
    single calls (each ~50 us): on a shared machine short samples are the ones that run undisturbed,
    the way benchmarks time the kernels compared with it."""
    lanes = max(1, target.vector_bits // 64)
    ex = bit_gemm(m, n, k_words, target, m_tile=4, n_vecs=max(1, n // lanes))
    mod = ex.jit()
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    a = tvm.runtime.tensor(rng.integers(0, 2**63, (m, k_words), dtype=np.uint64), dev)
    b = tvm.runtime.tensor(rng.integers(0, 2**63, (k_words, n), dtype=np.uint64), dev)
    c = tvm.runtime.empty((m, n), "uint64", dev)
    mod["main"](a, b, c)
    want = np.bitwise_count(a.numpy()[:, :, None] ^ b.numpy()[None]).sum(axis=1)
    if not np.array_equal(c.numpy(), want):
        raise AssertionError("bit_gemm microbenchmark computed a wrong answer")
    ev = mod.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=0)
    best = min(ev(a, b, c).results)
    ops = m * n * k_words * 64
    return {"gops": ops / best / 1e9, "ms": best * 1e3, "shape": (m, n, k_words * 64),
            "popcount": "vpopcntq" if target.fast_popcount else "emulated (vpshufb/vpsadbw)"}
