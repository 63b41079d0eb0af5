"""Named suites of layer shapes (`convsched bench --suite NAME`, `convsched tune --suite NAME`).

resnet18   the 11 distinct conv layers of ResNet-18 at 224x224, batch 1, NHWC (stem, 3x3 and 1x1 downsample)
resnet18-3 three of them, the tuner-vs-MetaSchedule benchmark's layers
tiny       two small layers (tests, the demo)
binary     two BinaryConv2d shapes (32x32 64->64, 16x16 128->128, 3x3 valid)
binary-bench  the 5 layers of benchmarks/binary_conv.py (3x3, pad 1 with -1 bits, output "dot")
loss-delta    LossDelta rows of benchmarks/loss_delta.py (32x32 images, 10 classes, n=1 as the benchmark
              compiles them; timed on the benchmark's batch, see LossDelta.tuning_inputs)
"""
from __future__ import annotations

from ..errors import ConvschedError
from ..layers import BinaryConv2d, Conv2d, LossDelta


def _conv(h, cin, cout, k, stride):
    return Conv2d(h=h, w=h, cin=cin, cout=cout, kh=k, kw=k, stride=stride, pad=k // 2)


def resnet18():
    return [
        _conv(224, 3, 64, 7, 2),                                   # stem
        _conv(56, 64, 64, 3, 1),                                   # layer1
        _conv(56, 64, 128, 3, 2), _conv(28, 128, 128, 3, 1), _conv(56, 64, 128, 1, 2),     # layer2
        _conv(28, 128, 256, 3, 2), _conv(14, 256, 256, 3, 1), _conv(28, 128, 256, 1, 2),   # layer3
        _conv(14, 256, 512, 3, 2), _conv(7, 512, 512, 3, 1), _conv(14, 256, 512, 1, 2),    # layer4
    ]


def resnet18_3():
    return [_conv(56, 64, 64, 3, 1), _conv(28, 128, 128, 3, 1), _conv(14, 256, 256, 3, 1)]


def tiny():
    return [_conv(8, 16, 32, 3, 1), _conv(14, 32, 32, 3, 1)]


def binary():
    """Binary (XOR-popcount) convs: the design notes' example shape and a deeper one."""
    B = BinaryConv2d
    return [B(h=32, w=32, cin=64, cout=64, kh=3, kw=3, stride=1, pad=0),
            B(h=16, w=16, cin=128, cout=128, kh=3, kw=3, stride=1, pad=0)]


def binary_bench():
    """benchmarks/binary_conv.py's SHAPES, built exactly as it builds them (same workload keys)."""
    return [BinaryConv2d(h=hw, w=hw, cin=c, cout=c, kh=3, kw=3, stride=1, pad=1, pad_value=-1)
            for hw, c in ((56, 64), (28, 128), (14, 256), (7, 512), (32, 64))]


def loss_delta():
    """benchmarks/loss_delta.py's rows (global 32->32, 64->64, 128->128, 256->32, 1024->1024; segmented 2x2
    32->32, 128->128, 1024->1024), built as it builds them: LossDelta(h=32, w=32, cin, cout, classes=10,
    head[, segments]) with n=1, so `cs.compile(layer)` there finds these records."""
    def ld(cin, cout, seg=None):
        kw = dict(h=32, w=32, cin=cin, cout=cout, classes=10, head="segmented" if seg else "global")
        if seg:
            kw["segments"] = (seg, seg)
        return LossDelta(**kw)
    return [ld(32, 32), ld(64, 64), ld(128, 128), ld(256, 32), ld(1024, 1024),
            ld(32, 32, 2), ld(128, 128, 2), ld(1024, 1024, 2)]


SUITES = {"resnet18": resnet18, "resnet18-3": resnet18_3, "tiny": tiny, "binary": binary,
          "binary-bench": binary_bench, "loss-delta": loss_delta}


def get_suite(name: str) -> list:
    if name not in SUITES:
        raise ConvschedError(f"unknown suite '{name}'; known: {', '.join(SUITES)}")
    return SUITES[name]()
