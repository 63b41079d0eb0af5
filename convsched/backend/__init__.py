"""The one adapter to Apache TVM (pinned: apache-tvm 0.27.0.post1, apache-tvm-ffi 0.1.14.post1).

Everything TVM-specific lives in this package: TE -> PrimFunc, schedule steps -> tvm.s_tir.Schedule, build,
call, time, export. Layers declare their compute with `te` and the expression helpers re-exported here
(`expr` is tvm.tirx), and never see a schedule; nothing outside this package imports tvm.s_tir or tvm.tirx.
"""
from __future__ import annotations

import os
import re
import warnings

from ..target import host_cores
from ..version import IGNORE_ENV, tvm_mismatch, tvm_missing


def _threads_problem() -> str | None:
    """Why $TVM_NUM_THREADS is unusable (None if it is unset or a positive integer)."""
    v = os.environ.get("TVM_NUM_THREADS")
    if v is None:
        return None
    try:
        if int(v) >= 1:
            return None
    except ValueError:
        pass
    return f"TVM_NUM_THREADS must be a positive integer (threads per kernel), got {v!r}"


# The runtime's default thread count is half the hardware threads on x86 (1 on a 2-core machine), and it is
# read once, when the first parallel kernel runs: set it before TVM is imported. A user's setting wins, unless
# it is no number of threads: then TVM never sees it, and building or timing a kernel raises THREADS_ERROR.
THREADS_ERROR = _threads_problem()
if THREADS_ERROR:
    os.environ["TVM_NUM_THREADS"] = str(host_cores())
os.environ.setdefault("TVM_NUM_THREADS", str(host_cores()))

# `import convsched` without TVM, or with another TVM, says which versions to install instead of failing on
# a missing module or a renamed API somewhere inside.
try:
    import tvm  # noqa: E402
    import tvm_ffi  # noqa: E402
    from tvm import s_tir, te, tirx  # noqa: E402
except (ImportError, OSError) as e:
    raise ImportError(tvm_missing(e)) from e
_mismatch = tvm_mismatch(tvm.__version__, getattr(tvm_ffi, "__version__", "unknown"))
if _mismatch and os.environ.get(IGNORE_ENV) != "1":
    raise ImportError(_mismatch)
if _mismatch:
    warnings.warn(_mismatch, stacklevel=2)

from ..errors import BuildError, ConvschedError, ScheduleError  # noqa: E402

expr = tirx          # expression helpers for layer declarations: if_then_else, all, popcount, const, ...
TVM_VERSION = tvm.__version__

# TVM 0.27's lowering keeps a buffer of constant size below this many bytes on the stack (an alloca LLVM turns
# into registers); a larger one goes through TVMBackendAllocWorkspace, and a register tile accumulated in it is
# stored and reloaded around every tile (measured: binary conv 56x56x64, 16 zmm accumulators = 1024 B, 83% of
# the bit ceiling; 14 = 896 B, 90%; Xeon "rocketlake" (Sapphire Rapids class), 1 thread, 2026-12-01).
STACK_ALLOC_BYTES = 1024

__all__ = ["te", "expr", "TVM_VERSION", "LiveSchedule", "Built", "build", "compute_stages", "num_threads",
           "check_environment", "shrink_factors", "STACK_ALLOC_BYTES"]

# LLVM's answers about CPUs (the host's name and CPUID features, any CPU's feature table) live in backend/cpu.py,
# which registers itself with convsched.target when imported (the package root imports it first).


def check_environment() -> None:
    """ConvschedError if the environment asks for something impossible ($TVM_NUM_THREADS=abc or 0)."""
    if THREADS_ERROR:
        raise ConvschedError(THREADS_ERROR)


def num_threads() -> int:
    check_environment()
    return int(os.environ.get("TVM_NUM_THREADS", host_cores()))


# ---------------------------------------------------------------------------------------- declarations
def compute_stages(outputs) -> list:
    """The compute ops reachable from `outputs`, producers first: [(name, spatial axes, reduce axes)]."""
    order, seen = [], set()

    def visit(t):
        op = t.op
        if op.name in seen or not isinstance(op, te.ComputeOp):
            return
        seen.add(op.name)
        for u in op.input_tensors:
            visit(u)
        order.append((op.name, [iv.var.name for iv in op.axis], [iv.var.name for iv in op.reduce_axis]))

    for t in outputs:
        visit(t)
    return order


def _clean(err: Exception) -> str:
    """The cause in a TVM error, without the IR dump and the C++ backtrace."""
    msg = str(err)
    m = re.search(r"Error message:\s*(.*)", msg, re.S)
    if m:
        msg = m.group(1)
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip() and not ln.strip().startswith("File ")]
    text = " ".join(lines[:3])
    return re.sub(r"^(ScheduleError|InternalError|TVMError|ValueError):\s*", "", text)[:400]


class LiveSchedule:
    """A tvm.s_tir.Schedule driven by convsched steps, with loops named the way the steps name them.

    Loop identity is the loop variable (stable across reorder, annotation and moves); names are ours:
    TE axis names at the start, then the names each step gives. Loops that TVM creates by itself (under
    compute_at, cache_read/write) keep TVM's names (ax0, ax1, ...).
    """

    def __init__(self, inputs, outputs):
        self.func = te.create_prim_func(list(inputs) + list(outputs))
        self.sch = s_tir.Schedule(self.func)
        self.blocks, self._names, self._kinds, self.reduce_stages = {}, {}, {}, set()
        for name, spatial, reduce in compute_stages(outputs):
            block = self.sch.get_sblock(name)
            self.blocks[name] = block
            if reduce:
                self.reduce_stages.add(name)
            for loop, ax, kind in zip(self.sch.get_loops(block), spatial + reduce,
                                      "S" * len(spatial) + "R" * len(reduce)):
                self._name_loop(loop, ax, kind)
        self.applied: list = []

    # -- naming
    def _key(self, loop):
        return self.sch.get(loop).loop_var.__hash__()

    def _name_loop(self, loop, name, kind):
        var = self.sch.get(loop).loop_var
        k = var.__hash__()
        self._names[k], self._kinds[k] = name, kind
        # A Var's hash is its address: once a split or fuse drops a named loop, a loop TVM creates later (under
        # reverse_compute_at) could reuse the address and inherit the stale name. Holding every named Var keeps
        # the addresses, and so the keys, unique for this schedule's life.
        self.__dict__.setdefault("_named_vars", []).append(var)

    def axes(self, stage: str) -> list:
        """[(name, kind, LoopRV)] of the loops around `stage`, outermost first; kind S, R or ? (unknown)."""
        out = []
        for loop in self.sch.get_loops(self.blocks[stage]):
            k = self._key(loop)
            out.append((self._names.get(k) or self.sch.get(loop).loop_var.name, self._kinds.get(k, "?"), loop))
        return out

    def axis_names(self, stage: str) -> list:
        return [a[0] for a in self.axes(stage)]

    def extent(self, stage: str, axis: str) -> int | None:
        """The trip count of loop `axis` around `stage` (None when it is not a constant)."""
        for name, _, loop in self.axes(stage):
            if name == axis:
                return self._extent(loop)
        raise ScheduleError(f"stage '{stage}' has no axis '{axis}'; its loops are: "
                            f"{', '.join(self.axis_names(stage)) or '(none)'}", stage=stage, axis=axis)

    def _loop(self, step, stage, axis):
        self._block(step, stage)
        for name, kind, loop in self.axes(stage):
            if name == axis:
                return loop, kind
        raise ScheduleError(f"stage '{stage}' has no axis '{axis}'; its loops are: "
                            f"{', '.join(self.axis_names(stage)) or '(none)'}",
                            stage=stage, axis=axis, step=step.text(), **_where(step))

    def _block(self, step, stage):
        if stage not in self.blocks:
            gone = " (it was inlined)" if stage in getattr(self, "_inlined", ()) else ""
            raise ScheduleError(f"no stage '{stage}'{gone}; stages are: {', '.join(self.blocks)}",
                                stage=stage, step=step.text(), **_where(step))
        return self.blocks[stage]

    # -- steps
    def apply(self, step) -> None:
        try:
            getattr(self, "_" + step.op)(step)
        except ScheduleError:
            raise
        except Exception as e:  # TVM refused the primitive: same error, with where and why
            axis = getattr(step, "axis", None) or None
            raise ScheduleError(f"TVM rejected {step.op}: {_clean(e)}", stage=step.stage, axis=axis,
                                step=step.text(), **_where(step)) from None
        self.applied.append(step)

    def _extent(self, loop):
        ext = self.sch.get(loop).extent
        return int(ext) if isinstance(ext, tirx.IntImm) else None

    def _split(self, st):
        loop, kind = self._loop(st, st.stage, st.axis)
        _check_factors(st, st.factors)
        if len(st.names) != len(st.factors):
            raise ScheduleError(f"split into {len(st.factors)} loops needs {len(st.factors)} names",
                                stage=st.stage, axis=st.axis, step=st.text(), **_where(st))
        tail = st.tail                  # checked when the Split was made (steps.TAILS)
        factors = list(st.factors)
        extent = self._extent(loop)
        if tail != "guard" and extent is None:
            raise ScheduleError(f"tail={tail!r} needs a loop of constant extent", stage=st.stage, axis=st.axis,
                                step=st.text(), **_where(st))
        if tail == "shrink":
            factors = shrink_factors(factors, extent)
        new = self.sch.split(loop, factors=factors)
        known = 1
        for f in factors:
            known *= f or 1
        if tail == "cut" and extent % known:
            # TVM's LoopPartition pass (run before VectorizeLoop) peels the iterations of this loop where the
            # split's predicate is not always true into their own loop: whole tiles carry no test
            self.sch.annotate(new[0], _PARTITION_HINT, 1)
        for lp, nm in zip(new, st.names):
            self._name_loop(lp, nm, kind)

    def _tile(self, st):
        x, kx = self._loop(st, st.stage, st.x)
        y, ky = self._loop(st, st.stage, st.y)
        _check_factors(st, (st.fx, st.fy))
        xo, xi = self.sch.split(x, factors=[None, st.fx])
        yo, yi = self.sch.split(y, factors=[None, st.fy])
        self.sch.reorder(xo, yo, xi, yi)
        for lp, nm, k in zip((xo, yo, xi, yi), st.names, (kx, ky, kx, ky)):
            self._name_loop(lp, nm, k)

    def _reorder(self, st):
        loops = [self._loop(st, st.stage, a)[0] for a in st.axes]
        if len(set(st.axes)) != len(st.axes):
            raise ScheduleError("reorder names an axis twice", stage=st.stage, step=st.text(), **_where(st))
        self.sch.reorder(*loops)

    def _fuse(self, st):
        pairs = [self._loop(st, st.stage, a) for a in st.axes]
        # TVM fuses no annotated loop: a tail="cut" hint moves to the fused loop (LoopPartition peels what it can)
        hinted = [p[0] for p in pairs if _PARTITION_HINT in self.sch.get(p[0]).annotations]
        for lp in hinted:
            self.sch.unannotate(lp, _PARTITION_HINT)
        fused = self.sch.fuse(*[p[0] for p in pairs])
        if hinted:
            self.sch.annotate(fused, _PARTITION_HINT, 1)
        kinds = {p[1] for p in pairs}
        self._name_loop(fused, st.name, kinds.pop() if len(kinds) == 1 else "?")

    def _check_spatial(self, st, what):
        loop, kind = self._loop(st, st.stage, st.axis)
        if kind == "R":
            raise ScheduleError(f"cannot {what} reduction axis '{st.axis}': every iteration updates the same "
                                f"output element; {what} a spatial axis and keep the reduction outside it",
                                stage=st.stage, axis=st.axis, step=st.text(), **_where(st))
        return loop

    def _vectorize(self, st):
        self.sch.vectorize(self._check_spatial(st, "vectorize"))

    def _parallel(self, st):
        self.sch.parallel(self._check_spatial(st, "parallelize"))

    def _unroll(self, st):
        self.sch.unroll(self._loop(st, st.stage, st.axis)[0])

    def _annotate(self, st):
        self.sch.annotate(self._loop(st, st.stage, st.axis)[0], st.key, st.value)

    def _compute_at(self, st):
        block = self._block(st, st.stage)
        loop, _ = self._loop(st, st.target, st.axis)
        self.sch.compute_at(block, loop, preserve_unit_loops=True)

    def _reverse_compute_at(self, st):
        block = self._block(st, st.stage)
        loop, _ = self._loop(st, st.target, st.axis)
        self.sch.reverse_compute_at(block, loop, preserve_unit_loops=True)

    def _compute_inline(self, st):
        self.sch.compute_inline(self._block(st, st.stage))
        self._drop(st.stage)

    def _reverse_compute_inline(self, st):
        self.sch.reverse_compute_inline(self._block(st, st.stage))
        self._drop(st.stage)

    def _drop(self, stage):
        del self.blocks[stage]
        self.__dict__.setdefault("_inlined", set()).add(stage)

    def _new_stage(self, st, block):
        if st.name in self.blocks:
            raise ScheduleError(f"a stage named '{st.name}' already exists", stage=st.stage, step=st.text(),
                                **_where(st))
        self.blocks[st.name] = block

    def _cache_write(self, st):
        self._new_stage(st, self.sch.cache_write(self._block(st, st.stage), 0, st.scope))

    def _cache_read(self, st):
        block = self._block(st, st.stage)
        reads = [getattr(r, "buffer", None) or r.source for r in self.sch.get(block).reads]  # 0.27: .source
        reads = [b.name for b in reads]
        if st.buffer not in reads:
            raise ScheduleError(f"stage '{st.stage}' reads no buffer '{st.buffer}'; it reads {', '.join(reads)}",
                                stage=st.stage, step=st.text(), **_where(st))
        self._new_stage(st, self.sch.cache_read(block, reads.index(st.buffer), st.scope))

    def _decompose_reduction(self, st):
        block = self._block(st, st.stage)
        if st.stage not in self.reduce_stages:
            raise ScheduleError(f"stage '{st.stage}' is not a reduction", stage=st.stage, step=st.text(),
                                **_where(st))
        loop, _ = self._loop(st, st.stage, st.axis)
        init = self.sch.decompose_reduction(block, loop)
        if st.name:
            self._new_stage(st, init)

    def script(self) -> str:
        """The scheduled loop nest as TVMScript."""
        return self.sch.mod.script()


def _where(step) -> dict:
    return {"file": step.loc.file, "line": step.loc.line} if step.loc else {}


_PARTITION_HINT = "pragma_loop_partition_hint"


def shrink_factors(factors: list, extent: int) -> list:
    """tail="shrink": each given factor, innermost first, becomes the largest divisor of what is left of the
    extent that is not above it, so the split leaves no partial tile."""
    out, left = list(factors), extent
    for i in reversed(range(len(out))):
        f = out[i]
        if f is None:
            continue
        d = max(d for d in range(1, min(f, left) + 1) if left % d == 0)
        out[i] = d
        left //= d
    return out


def _check_factors(step, factors):
    nones = sum(f is None for f in factors)
    bad = [f for f in factors if f is not None and (not isinstance(f, int) or isinstance(f, bool) or f <= 0)]
    if bad or nones > 1 or not factors:
        cause = (f"split factor {bad[0]!r} is not a positive integer" if bad else
                 "at most one split factor may be None (the one inferred)" if nones > 1 else "no split factors")
        raise ScheduleError(cause, stage=step.stage, axis=getattr(step, "axis", None) or getattr(step, "x", None),
                            step=step.text(), **_where(step))


# ------------------------------------------------------------------------------------------------ build
class Built:
    """A compiled function: call it on aligned, contiguous numpy arrays or TVM tensors; time it."""

    def __init__(self, executable, target, name="main"):
        self.executable = executable
        self.module = executable.jit()
        self.name = name
        self.func = self.module[name]
        self.target = target

    def __call__(self, *arrays):
        self.func(*arrays)

    def time(self, arrays, number: int, repeat: int, min_repeat_ms: int = 0) -> list:
        """Seconds per call, one entry per repeat (each the mean of `number` calls)."""
        dev = tvm.cpu(0)
        args = [tvm.runtime.tensor(a, dev) for a in arrays]
        ev = self.module.time_evaluator(self.name, dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return list(ev(*args).results)


def build(live: LiveSchedule, target) -> Built:
    """Compile the scheduled function for `target` (a convsched Target)."""
    check_environment()
    try:
        ex = tvm.compile(live.sch.mod, target=tvm.target.Target(target.to_tvm()))
    except Exception as e:
        raise BuildError(f"TVM could not compile the scheduled function: {_clean(e)}") from None
    return Built(ex, target)
