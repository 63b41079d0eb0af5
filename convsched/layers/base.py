"""What every layer is: a frozen dataclass of its parameters with declare(), reference(), ops().

Layers say WHAT is computed, never how: declare() builds TE stages and never reads a knob.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, NamedTuple

import numpy as np


class TensorSpec(NamedTuple):
    name: str
    shape: tuple
    dtype: str


@dataclass
class Declaration:
    """TE tensors of a layer: the kernel's arguments are inputs then outputs, in this order."""
    inputs: list
    outputs: list


@dataclass(frozen=True)
class Layer:
    KIND: ClassVar[str] = "layer"           # layer kind: its templates live in schedules/<KIND>/
    op_unit: ClassVar[str] = "FLOP"         # what ops() counts x flops_per_op: FLOP or bit-MAC
    flops_per_op: ClassVar[int] = 2         # a MAC is two flops
    exact: ClassVar[bool] = False           # integer/bit outputs: tests compare exactly
    ALGORITHMS: ClassVar[tuple] = ("direct",)  # declarations declare(algorithm=...) offers; templates pick one

    # -- to be provided by each layer
    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def output_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def declare(self, algorithm: str = "direct") -> Declaration:
        """TE stages of `algorithm` (see ALGORITHMS). Same inputs and outputs whatever the algorithm."""
        raise NotImplementedError

    def reference(self, *arrays):
        raise NotImplementedError

    def ops(self) -> int:
        """MACs (or bit-MACs, compares, adds) one call performs: the numerator of throughput figures."""
        raise NotImplementedError

    def default_template(self) -> str:
        raise NotImplementedError

    # -- shared
    @property
    def workload_key(self) -> str:
        """Canonical JSON of the layer kind and its fields: tuning records are filed under it."""
        return json.dumps({"layer": self.KIND, **asdict(self)}, sort_keys=True, separators=(",", ":"))

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

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

    def prepare_inputs(self, arrays: list) -> list:
        """Convert user arrays to the kernel's argument arrays (e.g. pack bits). Default: unchanged."""
        return arrays

    def finish_outputs(self, outputs: list):
        """Turn the kernel's output buffers into what the user gets. Default: one array, or a tuple."""
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def pair(v) -> tuple[int, int]:
    """An int or a 2-sequence -> (a, b)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def check_positive(layer, **values) -> None:
    for k, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(layer).__name__}: {k} must be a positive integer, got {v!r}")
