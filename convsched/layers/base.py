"""What every layer is: a frozen dataclass of its parameters with declare(), reference(), ops().

Layers say WHAT is computed, never how: declare() builds TE stages and never reads a knob. A declaration takes
its input tensors, as TOPI's computes do: declare(inputs={"x": producer_stage}, prefix="c2_") reads an earlier
layer's stage instead of a placeholder and names its own stages "c2_conv", "c2_bias", ...; that is all a
fused kernel needs to chain several layers in one function.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, NamedTuple

import numpy as np

from ..backend import expr, te
from . import registry
from .params import check_params


class TensorSpec(NamedTuple):
    name: str
    shape: tuple
    dtype: str


@dataclass
class Declaration:
    """TE tensors of a layer: the kernel's arguments are inputs then outputs, in this order. inputs holds the
    placeholders the declaration created (arguments given as tensors by the caller are not among them)."""
    inputs: list
    outputs: list


@dataclass(frozen=True)
class Layer:
    KIND: ClassVar[str] = "layer"           # layer kind: its templates live in schedules/<KIND>/
    op_unit: ClassVar[str] = "FLOP"         # what ops() counts x flops_per_op: FLOP or bit-MAC
    flops_per_op: ClassVar[int] = 2         # a MAC is two flops
    exact: ClassVar[bool] = False           # integer/bit outputs: tests compare exactly
    ALGORITHMS: ClassVar[tuple] = ("direct",)  # declarations declare(algorithm=...) offers; templates pick one
    # algorithms whose code differs from reference() on inf/NaN inputs: their kernels check the float inputs and
    # run the default template on non-finite ones (kernel.FiniteOnly)
    FINITE_ONLY_ALGORITHMS: ClassVar[tuple] = ()
    # Sizes that default to another field: a field declared `w: int = None` takes h's value when not given, so
    # Conv2d(h=28) is 28x28 and Conv2d(kh=1) is 1x1, while an explicit w or kw wins. Resolved before any
    # __post_init__ check runs, so workload keys hold the resolved ints (equal to the keys of explicit layers).
    FOLLOWS: ClassVar[dict] = {"w": "h", "kw": "kh"}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        registry.register(cls)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_after_layer_checks", False):
            cls.__post_init__ = _after_layer_checks(own)

    def __post_init__(self):
        """The checks every layer gets, before its own __post_init__ (ValueError naming the field): sizes named
        in FOLLOWS are resolved, then each field is typed by its annotation (layers/params.py). A subclass's own
        __post_init__ runs after this one whether or not it calls super().__post_init__()
        (Layer.__init_subclass__)."""
        self.resolve_follows()
        check_params(self)

    def resolve_follows(self) -> None:
        """Give each FOLLOWS field left at None its leader's value (in place: the dataclass is frozen)."""
        for name, leader in self.FOLLOWS.items():
            if name in self.__dataclass_fields__ and getattr(self, name) is None:
                object.__setattr__(self, name, getattr(self, leader))

    # -- to be provided by each layer
    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def output_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def declare(self, algorithm: str = "direct", *, inputs: dict | None = None, prefix: str = "") -> Declaration:
        """TE stages of `algorithm` (see ALGORITHMS); same inputs and outputs whatever the algorithm.

        inputs: {argument name: TE tensor} for arguments computed elsewhere (they must match the argument's
        spec); the other arguments become placeholders. prefix: prepended to every placeholder and stage name."""
        raise NotImplementedError

    def reference(self, *arrays):
        raise NotImplementedError

    def ops(self) -> int:
        """MACs (or bit-MACs, compares, adds) one call performs: the numerator of throughput figures."""
        raise NotImplementedError

    def default_template(self) -> str:
        raise NotImplementedError

    def backward(self):
        """The backward pass: a Backward (layers/backward/base.py), the training forward and the gradient steps
        with their arguments (docs/backward.md lists every layer's). NotImplementedError for kinds without one."""
        build = registry.backward_builder(self)
        if build is None:
            raise NotImplementedError(f"{type(self).__name__} has no backward pass (docs/backward.md lists the "
                                      f"layers that have one; custom layers declare theirs in GRADIENTS)")
        return build(self)

    @classmethod
    def template_dir(cls):
        """A directory of templates for this layer kind besides the shipped ones (custom layers), or None."""
        return None

    # -- shared
    def cached(self, name: str, compute):
        """compute() the first time, then the stored value: for what a layer derives from its (frozen) fields
        and would otherwise rebuild on every use, e.g. argument specs that run a declaration, constant tensors.
        Kept out of the fields (workload key, equality, hash) and out of pickles (tuning workers)."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            memo = {}
            object.__setattr__(self, "_memo", memo)
        if name not in memo:
            memo[name] = compute()
        return memo[name]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_memo", None)
        return state

    @property
    def workload_key(self) -> str:
        """Canonical JSON of the layer kind and its fields: tuning records are filed under it."""
        return json.dumps({"layer": self.KIND, **asdict(self)}, sort_keys=True, separators=(",", ":"))

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_params(cls, params: dict, layer_class=None) -> "Layer":
        """The layer of `params` (as params() gives them, e.g. read back from JSON: lists become tuples).
        layer_class(name) -> a layer class: how layers made of other layers find their members' classes."""
        return cls(**{k: _tuples(v) for k, v in params.items()})

    def arguments(self, inputs: dict | None, prefix: str) -> tuple[dict, list]:
        """({argument name: tensor}, [new placeholders]) for every argument of input_specs(): the tensor
        `inputs` gives for it (checked against the spec), else a new placeholder named prefix + name."""
        inputs = dict(inputs or {})
        specs = self.input_specs()
        unknown = sorted(set(inputs) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"{type(self).__name__} declares no input named {', '.join(unknown)} "
                             f"(its inputs are {', '.join(s.name for s in specs)})")
        args, fresh = {}, []
        for s in specs:
            t = inputs.get(s.name)
            if t is None:
                t = te.placeholder(tuple(s.shape), s.dtype, name=prefix + s.name)
                fresh.append(t)
            else:
                got = tuple(int(d) for d in t.shape)
                if got != tuple(int(d) for d in s.shape) or str(t.dtype) != str(s.dtype):
                    raise ValueError(f"{type(self).__name__}: input '{s.name}' is given a tensor of shape {got} "
                                     f"{t.dtype}, but the layer declares it as {tuple(s.shape)} {s.dtype}")
            args[s.name] = t
        return args, fresh

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Random inputs in the kernel's argument order (floats in [-1, 1), ints and bits uniform)."""
        rng = np.random.default_rng(seed)
        out = []
        for spec in self.input_specs():
            dt = np.dtype(spec.dtype)
            if dt.kind == "f":
                out.append(rng.uniform(-1, 1, spec.shape).astype(dt))
            elif dt == np.bool_:
                out.append(rng.integers(0, 2, spec.shape).astype(bool))
            else:
                info = np.iinfo(dt)
                out.append(rng.integers(info.min, info.max, spec.shape, dtype=dt, endpoint=True))
        return out

    def tolerance(self) -> tuple[float, float]:
        """(rtol, atol) for comparing float outputs with reference()."""
        return (1e-4, 1e-4)

    def mismatch(self, got, want) -> str | None:
        """None if a kernel's outputs equal reference()'s (exactly for integer and bit outputs, within
        tolerance() for floats), else why not: what the tuner and `convsched compile` check before timing."""
        gots = got if isinstance(got, tuple) else (got,)
        wants = want if isinstance(want, tuple) else (want,)
        if len(gots) != len(wants):
            return f"{len(gots)} outputs, reference has {len(wants)}"
        for i, (g, w) in enumerate(zip(gots, wants)):
            g, w = np.asarray(g), np.asarray(w)
            if g.shape != w.shape:
                return f"output {i}: shape {g.shape}, reference {w.shape}"
            if self.exact or np.dtype(w.dtype).kind in "iub":
                if not np.array_equal(g, w, equal_nan=g.dtype.kind == w.dtype.kind == "f"):
                    return f"output {i}: {int(np.sum(g != w))} of {g.size} elements differ from the reference"
            else:
                rtol, atol = self.tolerance()
                # NaN where the reference has NaN, and inf of the reference's sign, are right answers
                bad = ~np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
                if bad.any():
                    special = bad & ~(np.isfinite(g) & np.isfinite(w))
                    if special.any():
                        at = tuple(int(j) for j in np.argwhere(special)[0])
                        return (f"output {i}: {int(special.sum())} of {g.size} elements are NaN or inf where the "
                                f"reference is not, or the other way round (first at {at}: {g[at]} vs {w[at]})")
                    err = float(np.max(np.abs(g[bad].astype(np.float64) - w[bad])))
                    return f"output {i}: max abs error {err:.3g} exceeds tolerance (rtol {rtol}, atol {atol})"
        return None

    def nonfinite_inputs(self, seed: int = 0) -> list | None:
        """random_inputs(seed) with inf, -inf and NaN planted in the first float argument, or None when the layer
        has no float argument. The tuner checks every candidate on these as well as on random_inputs(), so a
        schedule or algorithm that treats them otherwise than reference() is never what the search picks."""
        xs = self.random_inputs(seed)
        for i, (a, spec) in enumerate(zip(xs, self.input_specs())):
            if np.dtype(spec.dtype).kind == "f" and a.size >= 3:
                a = np.array(a)
                spots = np.random.default_rng(seed + 1).choice(a.size, 3, replace=False)
                a.reshape(-1)[spots] = [np.inf, -np.inf, np.nan]
                xs[i] = a
                return xs
        return None

    def prepare_inputs(self, arrays: list) -> list:
        """Convert user arrays to the kernel's argument arrays (e.g. pack bits). Default: unchanged."""
        return arrays

    def finish_outputs(self, outputs: list):
        """Turn the kernel's output buffers into what the user gets. Default: one array, or a tuple."""
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def relu(value, dtype: str):
    """max(value, 0) as a TE expression that keeps NaN, as numpy and PyTorch do: TVM lowers max(x, 0) to
    select(x > 0, x, 0), which turns NaN into 0 (a NaN input would vanish behind a fused ReLU). An eager Select
    vectorizes like max (Add 56x56x64 + ReLU: 0.92x the time of max(x, 0); if_then_else: 2.2x), 1 thread,
    rocketlake, 2026-12."""
    zero = expr.const(0.0, dtype)
    return expr.Select(value < zero, zero, value)


def _after_layer_checks(post_init):
    """A subclass's own __post_init__, preceded by Layer.__post_init__: its range checks then see typed
    values (stride 2, never 1.5 truncated to 1), and a custom layer that forgets super() is typed too."""
    @functools.wraps(post_init)
    def run(self):
        Layer.__post_init__(self)
        post_init(self)
    run._after_layer_checks = True
    return run


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def pair(v) -> tuple[int, int]:
    """An int or a 2-sequence -> (a, b)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def canon_pair(v):
    """Pairs with equal halves are stored as one int, so equal layers have equal workload keys."""
    if isinstance(v, (list, tuple)):
        a, b = pair(v)
        return a if a == b else (a, b)
    return v


def conv_out_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def check_positive(layer, **values) -> None:
    for k, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(layer).__name__}: {k} must be a positive integer, got {v!r}")


def check_choice(layer, field: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{type(layer).__name__}: {field} must be one of {choices}, got {value!r}")
