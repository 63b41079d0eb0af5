"""The one layer registry: every Layer subclass, found by class name or by KIND.

Layer classes register themselves when they are defined (Layer.__init_subclass__), so the shipped layers,
custom layers and layers of user modules are all here once their module is imported. The CLI builds layers
from it (`convsched tune conv2d h=56 ...`), export rebuilds the layer of a loaded kernel from it, and the
template search asks it for the template directories custom layers name.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

_classes: list = []
_backward: dict = {}      # layer class -> build(layer) -> Backward (layers/backward/)


def register(cls) -> None:
    """Called by Layer.__init_subclass__ for every subclass (before @dataclass has run on it)."""
    _classes.append(cls)


def layer_classes() -> list:
    """Registered layer classes that can be built from parameters: dataclasses not named _Private."""
    return [c for c in _classes if dataclasses.is_dataclass(c) and not c.__name__.startswith("_")]


def by_name() -> dict:
    """{name: class}: each class under its lowered class name and under its KIND.

    Several classes may share a KIND (a subclass keeps its parent's templates); the class whose lowered name
    is the KIND wins, else the first one defined."""
    reg: dict = {}
    for cls in layer_classes():
        lower, kind = cls.__name__.lower(), cls.KIND
        reg.setdefault(lower, cls)
        if kind != "layer" and (kind not in reg or lower == kind):
            reg[kind] = cls
    return reg


def layer_class(name: str):
    """The class registered under `name` (a KIND or a class name, any case); LookupError if none."""
    reg = by_name()
    cls = reg.get(name) or reg.get(name.lower())
    if cls is None:
        kinds = sorted({c.KIND for c in reg.values()})
        raise LookupError(f"unknown layer '{name}'; known: {', '.join(kinds)} (or a class name: "
                          f"{', '.join(sorted({c.__name__ for c in reg.values()}))})")
    return cls


def template_dirs() -> list[Path]:
    """Template directories named by registered layer classes (CustomLayer.TEMPLATES), in definition order."""
    out: list[Path] = []
    for cls in _classes:
        d = cls.template_dir()
        if d is not None and d not in out:
            out.append(d)
    return out


def register_backward(cls, build) -> None:
    """layer.backward() of `cls` and its subclasses returns build(layer) (a layers.backward.Backward). The
    gradient modules (layers/backward/) register theirs, so the forward layers' modules never import them."""
    _backward[cls] = build


def backward_builder(layer):
    """The registered build(layer) for the closest class of `layer` that has one, or None."""
    for cls in type(layer).__mro__:
        if cls in _backward:
            return _backward[cls]
    return None
