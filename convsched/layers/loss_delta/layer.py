"""The LossDelta layer: its parameters, geometry, arguments and tuning hooks."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ...bits import as_bits, words
from ..base import Layer, TensorSpec, check_positive, pair
from .declare import CONV_ALGORITHMS, FORWARD_ALGORITHMS, Declarations
from .definition import Definition, LossDeltas
from .fast import FastPath


@dataclass(frozen=True)
class LossDelta(Definition, FastPath, Declarations, Layer):
    """Loss deltas of every single-weight mutation (see the package docstring for the semantics).

    n is the batch used for samples and benchmarks; kernels take any batch. The class is assembled from its
    jobs: Definition (the oracle, definition.py), FastPath (the numpy glue, fast.py) and Declarations (the
    TE parts, declare.py); the compiled kernel is convsched.kernel.loss_delta.LossDeltaKernel."""

    h: int = 32
    w: int = None       # None: follows h
    cin: int = 32
    cout: int = 32
    classes: int = 10
    head: str = "global"
    segments: int | tuple = (1, 1)
    weights: str = "binary"
    n: int = 1

    KIND: ClassVar[str] = "loss_delta"
    op_unit: ClassVar[str] = "bit-MAC"   # ops() = the forward conv's bit-MACs, the floor of the work
    flops_per_op: ClassVar[int] = 1
    exact: ClassVar[bool] = True
    ALGORITHMS: ClassVar[tuple] = (*FORWARD_ALGORITHMS, *CONV_ALGORITHMS)

    def __post_init__(self):
        check_positive(self, h=self.h, w=self.w, cin=self.cin, cout=self.cout, classes=self.classes, n=self.n)
        if self.h < 3 or self.w < 3:
            raise ValueError(f"LossDelta: a valid 3x3 conv needs h, w >= 3, got {self.h}x{self.w}")
        if self.head not in ("global", "segmented"):
            raise ValueError(f"LossDelta: head must be 'global' or 'segmented', got {self.head!r}")
        if self.weights not in ("binary", "ternary"):
            raise ValueError(f"LossDelta: weights must be 'binary' or 'ternary', got {self.weights!r}")
        seg = pair(self.segments)
        if self.head == "global" and seg != (1, 1):      # would be ignored: the global head pools everything
            raise ValueError(f"LossDelta: segments={self.segments!r} needs head='segmented' (the global head pools "
                             f"the whole patch grid)")
        if min(seg) <= 0:
            raise ValueError(f"LossDelta: segments must be positive, got {self.segments}")
        if (self.h - 2) // seg[0] < 1 or (self.w - 2) // seg[1] < 1:
            raise ValueError(f"LossDelta: {seg[0]}x{seg[1]} segments do not fit the {self.h - 2}x{self.w - 2} "
                             f"patch grid")
        object.__setattr__(self, "segments", seg)

    # ------------------------------------------------------------------ geometry
    @property
    def ph(self): return self.h - 2

    @property
    def pw(self): return self.w - 2

    @property
    def nseg(self) -> int:
        return self.segments[0] * self.segments[1]

    @property
    def seg_shape(self) -> tuple:
        """Patches per segment (rows, cols); the global head is one segment of all patches."""
        if self.head == "global":
            return (self.ph, self.pw)
        return (self.ph // self.segments[0], self.pw // self.segments[1])

    @property
    def segment_grid(self) -> tuple:
        """(SX, SY): segments down and across (the global head is one segment)."""
        return tuple(self.segments) if self.head == "segmented" else (1, 1)

    @property
    def used_patches(self) -> tuple:
        """(rows, cols) of the patch grid that belong to a segment: the forward conv computes only these."""
        if self.head == "global":
            return (self.ph, self.pw)
        return (self.segments[0] * self.seg_shape[0], self.segments[1] * self.seg_shape[1])

    @property
    def mask_layout(self) -> tuple:
        """(bits per word, words per segment row) of the row masks: one uint32 word per row of a segment up to
        32 patches wide (the benchmark's 32x32 images), uint64 words otherwise."""
        ws = self.seg_shape[1]
        mb = 32 if ws <= 32 else 64
        return mb, words(ws, mb)

    @property
    def nflags(self) -> int:
        """Flags per patch in the forward's row masks: active, then per band on and sensitive."""
        return 1 + 2 * len(self.bands())

    @property
    def seg_threshold(self) -> int:
        a, b = self.seg_shape
        return (a * b) // 2

    @property
    def threshold(self) -> int:
        """T: a patch is active when its count exceeds T."""
        return 9 * self.cin if self.weights == "ternary" else (9 * self.cin) // 2

    @property
    def word_bits(self) -> int:
        """Bits per packed word of the forward conv where popcount is emulated (AVX2: LLVM's vpshufb nibble lookups,
        which count narrow lanes in fewer steps): uint8 for C <= 8, uint16 for C <= 32, else uint64. Forward alone,
        1 thread, AMD Zen 3, core pinned, 2026-11: 8->32 uint8 7.7 us/example vs 42 as uint32; 32->32 uint16
        (2 words) 35 us vs 42 as uint32; 64->64 uint64 131 us vs 141 as uint16. forward_word_bits() is the choice
        per target."""
        return 8 if self.cin <= 8 else 16 if self.cin <= 32 else 64

    def forward_word_bits(self, target) -> int:
        """The word of the forward conv on `target`: with a native vector popcount of 32-bit lanes (AVX-512
        VPOPCNTDQ) 17..32 channels take one uint32 word, because an input word is broadcast from memory for free
        as a dword/qword (a load) but costs a shuffle-port uop as a byte or word (vpbroadcastb/w), the port
        vpopcnt needs too: 2 of the 4 vector uops of a uint16 step sit on one port, a 75% cap. Narrower
        channels keep their narrow words (a uint32 word of 8 channels would popcount 4x the bits). Otherwise
        word_bits (the emulated popcount's choice)."""
        if 16 < self.cin <= 32 and target.popcount_kind(32) == "vpopcntq":
            return 32
        return self.word_bits

    def forward_algorithm(self, target) -> str:
        """The forward declaration compiled for `target` (its word type: forward_word_bits)."""
        return f"forward{self.forward_word_bits(target)}"

    def forward_words(self, target) -> int:
        """Words of forward_word_bits(target) per pixel: the input channels padded to the forward's word."""
        return words(self.cin, self.forward_word_bits(target))

    @property
    def max_delta(self) -> int:
        """A bound of one example's |loss delta| for a conv mutation: with a_k = score_k - target_k (|a_k| <=
        S*O) and d_k the change of score k (|d_k| <= S, the segments flipped), sum_k |2 a_k d_k + d_k^2|."""
        S = self.nseg
        return self.classes * (2 * S * self.cout * S + S * S)

    @property
    def conv_shape(self) -> tuple:
        s = (self.cout, 3, 3, self.cin)
        return s + (3,) if self.weights == "ternary" else s

    @property
    def fc_shape(self) -> tuple:
        if self.head == "global":
            return (self.classes, self.cout)
        return (self.classes, self.segments[0], self.segments[1], self.cout)

    def n_params(self) -> int:
        """Parameters counted as the seed does: 9*in*out + 10*out (global head), 9*in*out (segmented)."""
        conv = 9 * self.cin * self.cout
        return conv + self.classes * self.cout if self.head == "global" else conv

    # ------------------------------------------------------------------ layer API
    def input_specs(self):
        cw = ("conv_w", (self.cout, 3, 3, self.cin), "int8" if self.weights == "ternary" else "uint8")
        return [TensorSpec("images", (self.n, self.h, self.w, self.cin), "uint8"),
                TensorSpec("labels", (self.n,), "int64"), TensorSpec(*cw),
                TensorSpec("fc_w", self.fc_shape, "uint8")]

    def output_specs(self):
        return [TensorSpec("conv", self.conv_shape, "int64"), TensorSpec("fc", self.fc_shape, "int64")]

    def ops(self) -> int:
        return self.n * self.ph * self.pw * self.cout * 9 * self.cin

    def default_template(self) -> str:
        return "loss_delta/deltas"

    def random_inputs(self, seed: int = 0) -> list:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 2, (self.n, self.h, self.w, self.cin), dtype=np.uint8)
        labels = rng.integers(0, self.classes, self.n).astype(np.int64)
        if self.weights == "ternary":
            cw = rng.integers(-1, 2, (self.cout, 3, 3, self.cin)).astype(np.int8)
        else:
            cw = rng.integers(0, 2, (self.cout, 3, 3, self.cin), dtype=np.uint8)
        fc = rng.integers(0, 2, self.fc_shape, dtype=np.uint8)
        return [x, labels, cw, fc]

    # ------------------------------------------------------------------ what the tuner checks and times
    REFERENCE_MAX_WORK: ClassVar[float] = 2e8   # above this (mutations x forward bit-MACs) tuning checks fast_numpy

    def tuning_batch(self) -> int:
        """The batch the tuner checks and times a candidate on: benchmarks/loss_delta.py's batch for this shape
        (64 examples, fewer for big layers, at least 2), not n = 1: a whole call at 32->32 is ~0.1 ms per
        example, and the best schedule of the batch loops depends on the batch."""
        return max(self.n, 2, min(64, 2 ** 22 // (self.cin * self.cout)))

    def tuning_inputs(self, seed: int = 0) -> list:
        return replace(self, n=self.tuning_batch()).random_inputs(seed)

    def tuning_reference(self, images, labels, conv_w, fc_w) -> LossDeltas:
        """The tuner's oracle: reference() (the definition: mutate, recompute the whole loss) where that is
        cheap, else fast_numpy() (the fast algorithm in plain numpy, no TVM; tests/test_loss_delta.py checks it
        equals reference() exactly). reference() costs (mutations x forward bit-MACs): ~1e15 at 1024->1024,
        hours; fast_numpy takes ~2 s there. Both are exact, and the comparison is exact (int64)."""
        B = np.shape(images)[0]
        muts = int(np.prod(self.conv_shape)) + int(np.prod(self.fc_shape))
        work = muts * B * self.ph * self.pw * 9 * self.cin * self.cout
        if work <= self.REFERENCE_MAX_WORK:
            return self.reference(images, labels, conv_w, fc_w)
        return self.fast_numpy(images, labels, conv_w, fc_w)

    # ------------------------------------------------------------------ inputs
    def canon_inputs(self, images, labels, conv_w, fc_w):
        """User arrays -> (x uint8 0/1 (B,H,W,C), labels int64 (B,), conv_w uint8 bits or int8 states, fc uint8
        bits (classes, S, O)). Bits may be bool/0-1 integers or packed uint64 words (cs.bits.pack)."""
        x = as_bits(images, (self.h, self.w, self.cin), "images", batch=True)
        return x, self.canon_labels(labels, x.shape[0]), self.canon_conv_w(conv_w), self.canon_fc(fc_w)

    def canon_labels(self, labels, batch: int) -> np.ndarray:
        B = batch
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != B or lab.dtype.kind not in "iu":
            raise ValueError(f"LossDelta: labels must be a 1-D integer array of length {B} (the batch), got "
                             f"dtype {lab.dtype} shape {lab.shape}")
        if B and (lab.min() < 0 or lab.max() >= self.classes):
            raise ValueError(f"LossDelta: labels must lie in [0, {self.classes}), got {lab.min()}..{lab.max()}")
        return lab.astype(np.int64)

    def canon_conv_w(self, conv_w) -> np.ndarray:
        if self.weights == "ternary":
            w = np.asarray(conv_w)
            if w.shape != (self.cout, 3, 3, self.cin) or w.dtype.kind not in "iu":
                raise ValueError(f"LossDelta: ternary conv_w must be an integer array (-1/0/+1) of shape "
                                 f"{(self.cout, 3, 3, self.cin)}, got dtype {w.dtype} shape {w.shape}")
            if w.size and (w.min() < -1 or w.max() > 1):
                raise ValueError("LossDelta: ternary conv_w values must be -1, 0 or +1")
            return w.astype(np.int8)
        return as_bits(conv_w, (self.cout, 3, 3, self.cin), "conv_w")

    def canon_fc(self, fc_w) -> np.ndarray:
        fc = as_bits(fc_w, self.fc_shape, "fc_w")
        return fc.reshape(self.classes, self.nseg, self.cout)
