"""Bad input, layer parameters: every field is typed by its annotation (layers/params.py), on every layer, shipped
and custom, and the command line reads name=value by the same rules. A bad value is a ValueError naming the
layer, the field and the value; never truncated (stride 1.5 -> 1), never taken for True ("no")."""
import json
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import pytest

import convsched as cs
from convsched.errors import ParameterError
from convsched.graph.fused import FusedLayer
from convsched.layers.custom import CustomLayer, TensorSpec
from convsched.layers.params import parse_param

L = cs.layers

# (layer class, bad parameters, a word the message must name) -- the parameters that type a field wrongly, or
# give a typed value that the layer's own checks refuse
BAD = [
    (L.Conv2d, {"stride": 1.5}, "stride"),
    (L.Conv2d, {"dilation": 2.7}, "dilation"),
    (L.Conv2d, {"pad": 0.5}, "pad"),
    (L.Conv2d, {"h": 8.0}, "h"),
    (L.Conv2d, {"h": "8"}, "h"),
    (L.Conv2d, {"h": True}, "h"),
    (L.Conv2d, {"cin": np.float32(8)}, "cin"),
    (L.Conv2d, {"bias": "no"}, "bias"),
    (L.Conv2d, {"bias": 1}, "bias"),
    (L.Conv2d, {"bias": None}, "bias"),
    (L.Conv2d, {"residual": "yes"}, "residual"),
    (L.Conv2d, {"act": 5}, "act"),
    (L.Conv2d, {"act": "Relu"}, "act"),
    (L.Conv2d, {"act": ["relu"]}, "act"),
    (L.Conv2d, {"layout": "nhwc"}, "layout"),
    (L.Conv2d, {"layout": None}, "layout"),
    (L.Conv2d, {"dtype": "float16"}, "float32"),
    (L.Conv2d, {"stride": (1, 2, 3)}, "stride"),
    (L.Conv2d, {"stride": (1.5, 1)}, "stride"),
    (L.Conv2d, {"stride": [1, "a"]}, "stride"),
    (L.Conv2d, {"stride": np.array([1, 2])}, "stride"),
    (L.Conv2d, {"stride": 0}, "stride"),
    (L.Conv2d, {"pad": -1}, "pad"),
    (L.Conv2d, {"groups": 0}, "groups"),
    (L.Conv2d, {"wpack": 1.5}, "wpack"),
    (L.Conv2d, {"wpack": -8}, "wpack"),
    (L.Conv2d, {"cblock": 2.5}, "cblock"),
    (L.Conv2d, {"n": -1}, "n"),
    (L.Conv2d, {"kh": float("nan")}, "kh"),
    (L.Pool2d, {"kind": "mean"}, "kind"),
    (L.Pool2d, {"kind": 1}, "kind"),
    (L.Pool2d, {"k": 2.5}, "k"),
    (L.Pool2d, {"stride": (2, 0)}, "stride"),
    (L.Pool2d, {"pad": (0.5, 0)}, "pad"),
    (L.Pool2d, {"layout": "NCHW"}, "NHWC"),
    (L.GlobalAvgPool2d, {"c": 64.0}, "c"),
    (L.Add, {"act": "tanh"}, "act"),
    (L.Add, {"c": np.int64(-1)}, "c"),
    (L.Dense, {"bias": "false"}, "bias"),
    (L.Dense, {"cout": 0}, "cout"),
    (L.LayoutTransform, {"src": "nhwc"}, "src"),
    (L.LayoutTransform, {"cblock": 8.0}, "cblock"),
    (L.BitPack, {"c": 1.5}, "c"),
    (L.PopcountThreshold, {"compare": "<"}, "compare"),
    (L.BinaryConv2d, {"threshold": "no"}, "threshold"),
    (L.BinaryConv2d, {"threshold": 0}, "threshold"),
    (L.BinaryConv2d, {"pad_value": True}, "pad_value"),
    (L.BinaryConv2d, {"pad_value": 1.0}, "pad_value"),
    (L.BinaryConv2d, {"pad_value": 0}, "pad_value"),
    (L.BinaryConv2d, {"output": "dots"}, "output"),
    (L.BinaryConv2d, {"stride": 1.5}, "stride"),
    (L.BinaryConvPool, {"segments": 1.7}, "segments"),
    (L.BinaryConvPool, {"segments": (2, 2, 2)}, "segments"),
    (L.BinaryConvPool, {"threshold": False}, "threshold"),
    (L.SegmentedBitPool, {"segments": 1.7}, "segments"),
    (L.SegmentedBitPool, {"segments": "2"}, "segments"),
    (L.SegmentedBitPool, {"segments": (0, 2)}, "segments"),
    (L.BitMaxPool2d, {"k": 2.0}, "k"),
    (L.BitGlobalPool, {"mode": "max"}, "mode"),
    (L.BitGlobalPool, {"mode": None}, "mode"),
    (L.BitDense, {"classes": 10.5}, "classes"),
    (L.BitDense, {"classes": 0}, "classes"),
    (L.LossDelta, {"segments": 1.7, "head": "segmented"}, "segments"),
    (L.LossDelta, {"head": "local"}, "head"),
    (L.LossDelta, {"head": "global", "segments": (2, 2)}, "segments"),     # was ignored silently
    (L.LossDelta, {"weights": "quaternary"}, "weights"),
    (L.LossDelta, {"classes": "10"}, "classes"),
    (L.LossDelta, {"n": 0}, "n"),
    (FusedLayer, {"members": 5}, "members"),
    (FusedLayer, {"members": (1, 2)}, "members"),
]


@pytest.mark.parametrize("cls,kw,field", BAD, ids=[f"{c.__name__}-{'-'.join(map(str, k))}" for c, k, _ in BAD])
def test_bad_parameter_is_a_value_error_naming_layer_field_and_value(cls, kw, field):
    with pytest.raises(ValueError) as ei:
        cls(**kw)
    msg = str(ei.value)
    assert cls.__name__ in msg or "fused layer" in msg, msg
    assert field in msg, msg
    if isinstance(ei.value, ParameterError):            # the typing layer also names the value
        assert repr(next(iter(kw.values())))[:20] in msg, msg


def test_numpy_scalars_are_normalised_to_the_same_layer_and_workload_key():
    plain = L.Conv2d(h=8, w=8, cin=8, cout=16, stride=2, bias=True)
    numpy = L.Conv2d(h=np.int64(8), w=np.int32(8), cin=np.uint8(8), cout=np.int16(16), stride=np.int64(2),
                     bias=np.bool_(True))
    assert numpy == plain and numpy.workload_key == plain.workload_key
    assert type(numpy.h) is int and type(numpy.bias) is bool
    json.loads(numpy.workload_key)                      # was: "Object of type int64 is not JSON serializable"
    pair = L.Conv2d(h=8, w=8, stride=[np.int64(2), 1])
    assert pair.stride == (2, 1) and pair.workload_key == L.Conv2d(h=8, w=8, stride=(2, 1)).workload_key
    assert L.Conv2d(h=8, w=8, stride=(1, 1)).workload_key == L.Conv2d(h=8, w=8).workload_key
    assert L.LossDelta(segments=[np.int64(2), 2], head="segmented").segments == (2, 2)


# ------------------------------------------------------------------------------------------ custom layers
@dataclass(frozen=True)
class Typed(CustomLayer):
    """Evaluated annotations (no `from __future__ import annotations` in this file): typed the same way."""
    n: int = 1
    h: int = 4
    w: int = None              # follows h when not given (the layer's own __post_init__ fills it in)
    c: int = 8
    factor: float = 2.0
    flag: bool = False
    mode: str = "a"
    note: Optional[str] = None
    stride: int | tuple = 1
    taps: tuple = (1.0, 2.0)

    KIND: ClassVar[str] = "typed_probe"

    def __post_init__(self):     # no super() call: typed anyway, before this runs
        if self.w is None:
            object.__setattr__(self, "w", self.h)
        if self.mode not in ("a", "b"):
            raise ValueError(f"Typed: mode must be 'a' or 'b', got {self.mode!r}")

    def input_specs(self):
        return [TensorSpec("x", (self.n, self.h, self.w, self.c), "float32")]

    def compute(self, te, expr, x):
        return te.compute(x.shape, lambda *i: x(*i) * self.factor, name="scale")

    def reference(self, x):
        return (x * self.factor).astype(np.float32)


CUSTOM_BAD = [{"h": 2.5}, {"h": "4"}, {"w": 4.0}, {"factor": "2"}, {"factor": True}, {"factor": float("nan")},
              {"flag": "no"}, {"flag": 0}, {"mode": 1}, {"mode": "c"}, {"note": 3}, {"stride": 1.5},
              {"stride": (1, 2, 3)}, {"taps": 5}]


@pytest.mark.parametrize("kw", CUSTOM_BAD, ids=[next(iter(k)) + "=" + repr(next(iter(k.values()))) for k in CUSTOM_BAD])
def test_custom_layer_fields_are_typed_from_their_annotations(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        Typed(**kw)


def test_custom_layer_normalisation():
    t = Typed(h=np.int64(6), factor=3, flag=np.bool_(True), note=None, stride=[2, 1], taps=[1, 2])
    assert (t.h, t.w, t.factor, t.flag, t.stride, t.taps) == (6, 6, 3.0, True, (2, 1), (1, 2))
    assert type(t.factor) is float and type(t.h) is int and type(t.w) is int
    json.loads(t.workload_key)
    assert Typed(w=5).w == 5 and Typed().w == 4


# --------------------------------------------------------------------------------------- command-line text
@pytest.mark.parametrize("text,value", [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True),
                                        ("no", False)])
def test_cli_bool_spellings(text, value):
    assert parse_param(L.Conv2d, "bias", text) is value


@pytest.mark.parametrize("field,text,value", [("stride", "2", 2), ("stride", "2,1", (2, 1)), ("act", "none", None),
                                              ("act", "relu", "relu"), ("h", "56", 56), ("layout", "NCHW", "NCHW")])
def test_cli_values_by_field_type(field, text, value):
    assert parse_param(L.Conv2d, field, text) == value


@pytest.mark.parametrize("field,text", [("bias", "Flase"), ("bias", "2"), ("h", "5.5"), ("h", "abc"), ("h", ""),
                                        ("stride", "1,2,3"), ("stride", "1.5"), ("stride", "a,b"), ("pad", "1,")])
def test_cli_bad_text_is_an_error_naming_the_field(field, text):
    with pytest.raises(ParameterError, match=f"Conv2d: {field} must be"):
        parse_param(L.Conv2d, field, text)


def test_cli_text_of_custom_fields():
    assert parse_param(Typed, "factor", "0.5") == 0.5 and parse_param(Typed, "taps", "1,2.5") == (1, 2.5)
    assert parse_param(Typed, "note", "none") is None and parse_param(Typed, "mode", "b") == "b"
    with pytest.raises(ParameterError, match="factor"):
        parse_param(Typed, "factor", "nan")
