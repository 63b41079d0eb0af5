"""Sample networks: a ResNet-18 basic block, a MobileNet(v1) block, a small binary net."""
from __future__ import annotations

from ..layers import (Add, BinaryConv2d, BitDense, BitMaxPool2d, BitPack, Conv2d, PopcountThreshold,
                      SegmentedBitPool)
from .graph import Graph


def resnet_basic_block(h: int = 56, c: int = 64, n: int = 1) -> Graph:
    """ResNet-18 basic block (stride 1, inference): conv3x3-BN-ReLU, conv3x3-BN, + x, ReLU, BN folded into
    each conv's bias. Planned: [c1] [c2 + join] (the residual add and ReLU inlined into c2's epilogue)."""
    g = Graph(f"resnet_block_{h}x{h}x{c}")
    x = g.input("x", (n, h, h, c))
    g.add("c1", Conv2d(n=n, h=h, w=h, cin=c, cout=c, bias=True, act="relu"), x)
    g.add("c2", Conv2d(n=n, h=h, w=h, cin=c, cout=c, bias=True), "c1")
    g.add("join", Add(n=n, h=h, w=h, c=c, act="relu"), "c2", x)
    g.output("join")
    return g


def mobilenet_block(h: int = 56, cin: int = 64, cout: int = 128, stride: int = 1, n: int = 1) -> Graph:
    """MobileNet(v1) block: depthwise 3x3 (groups = cin) + BN + ReLU, pointwise 1x1 + BN + ReLU."""
    g = Graph(f"mobilenet_block_{h}x{h}x{cin}_{cout}")
    x = g.input("x", (n, h, h, cin))
    dw = Conv2d(n=n, h=h, w=h, cin=cin, cout=cin, groups=cin, stride=stride, bias=True, act="relu")
    g.add("dw", dw, x)
    g.add("pw", Conv2d(n=n, h=dw.oh, w=dw.ow, cin=cin, cout=cout, kh=1, kw=1, pad=0, bias=True, act="relu"), "dw")
    g.output("pw")
    return g


def binary_net(h: int = 32, c: int = 64, c2: int = 128, classes: int = 10, segments: int = 2, n: int = 1) -> Graph:
    """A small binary net: bitpack -> binary conv 3x3 -> threshold -> bit max pool 2x2 -> binary conv 3x3
    (valid) + threshold -> segmented bit pool -> FC scores (popcount mismatches per class).
    Planned: [pack] [bconv1 + thr1 -> BinaryConv2d(threshold=True)] [mpool] [bconv2 + seg -> BinaryConvPool] [fc]."""
    g = Graph(f"binary_net_{h}x{h}x{c}")
    x = g.input("x", (n, h, h, c))
    g.add("pack", BitPack(n=n, h=h, w=h, c=c), x)
    g.add("bconv1", BinaryConv2d(n=n, h=h, w=h, cin=c, cout=c, kh=3, kw=3, pad=1), "pack")
    g.add("thr1", PopcountThreshold(n=n, h=h, w=h, c=c), "bconv1")
    g.add("mpool", BitMaxPool2d(n=n, h=h, w=h, c=c, k=2, stride=2), "thr1")
    b2 = BinaryConv2d(n=n, h=h // 2, w=h // 2, cin=c, cout=c2, kh=3, kw=3, pad=0, threshold=True)
    g.add("bconv2", b2, "mpool")
    g.add("seg", SegmentedBitPool(n=n, h=b2.oh, w=b2.ow, c=c2, segments=segments), "bconv2")
    g.add("fc", BitDense(n=n, h=segments, w=segments, c=c2, classes=classes), "seg")
    g.output("fc")
    return g
