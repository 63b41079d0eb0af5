"""Layer parameters, typed by their dataclass annotations: checked and normalised before a layer's own checks.

Every layer (shipped, custom, fused) gets this from Layer.__post_init__; the CLI parses `name=value` text with
the same rules (parse_param), so `stride=1.5`, `bias="no"` or `h=np.int64(8)` mean the same thing everywhere:

    annotation     accepts                                         stored as
    int            int, numpy integer (not bool, not 1.5, not 2.0)  int
    float          int, float, numpy number (not bool, not NaN)    float
    bool           bool, numpy bool (not 1, not "no")              bool
    str            str                                             str
    int | tuple    an int or a pair (tuple/list of 2 ints)         int, or a tuple of 2 ints
    tuple          a tuple or a list                               tuple
    X | None       None, or what X accepts
    anything else  not checked here (the layer's own __post_init__ checks it)

A field whose default is None but whose annotation has no None (e.g. `w: int = None`, filled in from another
field) is typed once it holds a value; while it is None the layer's own normalisation decides. Ranges and
enumerations (layout, act, stride > 0, ...) are each layer's own checks, which now see typed values.
Anything else is a ValueError naming the layer, the field and the value (ParameterError).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import lru_cache

import numpy as np

from ..errors import ParameterError

# annotation words this module types; a field annotated with anything else is left to the layer
_KNOWN = frozenset({"int", "float", "bool", "str", "tuple", "None"})
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts: a set of annotation words, e.g. {"int", "tuple"} or {"str", "None"}."""
    name: str
    words: frozenset
    default_is_none: bool

    @property
    def pair(self) -> bool:
        """`int | tuple`: an int or a pair of ints (stride, pad, dilation, k, segments)."""
        return "int" in self.words and "tuple" in self.words

    def describe(self) -> str:
        parts = []
        if self.pair:
            parts.append("an integer or a pair of integers")
        else:
            parts += [{"int": "an integer", "float": "a number", "bool": "True or False", "str": "a string",
                       "tuple": "a tuple"}[w] for w in ("int", "float", "bool", "str", "tuple") if w in self.words]
        if "None" in self.words:
            parts.append("None")
        return " or ".join(parts)


def _words_of_string(text: str) -> frozenset | None:
    """Annotation words of a string annotation ("int | tuple", "Optional[str]", "tuple[int, int]"), or None
    when it names something this module does not type."""
    text = text.strip()
    if text.startswith(("Optional[", "typing.Optional[")) and text.endswith("]"):
        inner = _words_of_string(text[text.index("[") + 1:-1])
        return None if inner is None else inner | {"None"}
    words = set()
    depth, start = 0, 0
    pieces = []
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    for p in pieces:
        p = p.strip()
        base = p.split("[", 1)[0].strip()
        if base in ("NoneType", "None"):
            base = "None"
        if base == "Tuple":
            base = "tuple"
        if base not in _KNOWN:
            return None
        words.add(base)
    return frozenset(words)


def _words_of_type(tp) -> frozenset | None:
    """Annotation words of an evaluated annotation (a custom layer's module without `from __future__ import
    annotations`), or None when it names something this module does not type."""
    if tp is None or tp is type(None):
        return frozenset({"None"})
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        words = set()
        for a in typing.get_args(tp):
            w = _words_of_type(a)
            if w is None:
                return None
            words |= w
        return frozenset(words)
    if origin is tuple or tp is tuple:
        return frozenset({"tuple"})
    name = getattr(tp, "__name__", None)
    return frozenset({name}) if name in _KNOWN else None


@lru_cache(maxsize=None)
def rules(cls) -> dict:
    """{field name: Rule} of the fields of layer class `cls` that this module types."""
    out = {}
    for f in dataclasses.fields(cls):
        ann = f.type
        words = _words_of_string(ann) if isinstance(ann, str) else _words_of_type(ann)
        if words:
            out[f.name] = Rule(f.name, words, f.default is None)
    return out


def _short(value) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _error(layer_name: str, rule: Rule, value, why: str = "") -> ParameterError:
    return ParameterError(f"{layer_name}: {rule.name} must be {rule.describe()}, got {_short(value)}"
                          f"{' (' + why + ')' if why else ''}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def typed_value(layer_name: str, rule: Rule, value):
    """`value` checked against `rule` and normalised (numpy scalars to Python, lists to tuples); else
    ParameterError naming the layer, the field and the value."""
    w = rule.words
    if value is None:
        if "None" in w or rule.default_is_none:
            return None
        raise _error(layer_name, rule, value)
    if isinstance(value, (bool, np.bool_)):
        if "bool" in w:
            return bool(value)
        raise _error(layer_name, rule, value)
    if _is_int(value):
        if "int" in w:
            return int(value)
        if "float" in w:
            return float(value)
        raise _error(layer_name, rule, value)
    if isinstance(value, (float, np.floating)):
        if "float" in w:
            if math.isnan(value):
                raise _error(layer_name, rule, value, "NaN")
            return float(value)
        raise _error(layer_name, rule, value, "not a whole number" if "int" in w and not float(value).is_integer()
                     else "a float, not an integer" if "int" in w else "")
    if isinstance(value, str):
        if "str" in w:
            return str(value)
        raise _error(layer_name, rule, value)
    if isinstance(value, (tuple, list)):
        if rule.pair:
            if len(value) != 2 or not all(_is_int(v) for v in value):
                raise _error(layer_name, rule, value, "a pair is two integers: (along h, along w)")
            return (int(value[0]), int(value[1]))
        if "tuple" in w:
            return tuple(value)
    raise _error(layer_name, rule, value)


def check_params(layer) -> None:
    """Type every annotated field of `layer` in place (frozen dataclass: object.__setattr__)."""
    name = type(layer).__name__
    for field, rule in rules(type(layer)).items():
        old = getattr(layer, field)
        new = typed_value(name, rule, old)
        if new is not old:
            object.__setattr__(layer, field, new)


# ---------------------------------------------------------------------------------------------- text
def parse_value(text: str):
    """A value from text when nothing says its type: integers, floats, true/false, none, pairs as 1,2,
    anything else a string (knob values, fields this module does not type)."""
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    if "," in text:
        return tuple(parse_value(t) for t in text.split(",") if t != "")
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _parse_int(layer_name: str, rule: Rule, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _error(layer_name, rule, text) from None


def parse_param(cls, name: str, text: str):
    """The value of field `name` of layer class `cls` from command-line text, by the field's annotation:
    `bias=true|false|1|0|yes|no`, `stride=2` or `stride=2,1`, `act=none`, `h=56`; ParameterError otherwise
    (`bias=Flase`, `h=5.5`, `stride=1,2,3`). Fields this module does not type: parse_value()."""
    rule = rules(cls).get(name)
    if rule is None:
        return parse_value(text)
    layer_name, w, s = cls.__name__, rule.words, text.strip()
    if "None" in w and s.lower() in ("none", "null"):
        return None
    if "bool" in w and s.lower() in _TRUE + _FALSE:
        return s.lower() in _TRUE
    if rule.pair and "," in s:
        parts = [p for p in s.split(",")]
        if len(parts) != 2:
            raise _error(layer_name, rule, text, "a pair is two integers: 2,1")
        return tuple(_parse_int(layer_name, rule, p) for p in parts)
    if "int" in w:
        try:
            return int(s)
        except ValueError:
            pass
    if "float" in w:
        try:
            return typed_value(layer_name, rule, float(s))
        except ValueError:
            pass
    if "tuple" in w and not rule.pair:
        return tuple(parse_value(p.strip()) for p in s.split(",") if p.strip() != "")
    if "str" in w:
        return text
    raise _error(layer_name, rule, text)
