"""Sample layers per layer kind: every shipped template is tested on each sample it applies to.

Add your layer kind here when you add templates for it; keep shapes small (tests build many kernels).
"""
import convsched as cs

L = cs.layers

SAMPLES = {
    "conv2d": [
        L.Conv2d(h=8, w=8, cin=16, cout=32),
        L.Conv2d(h=17, w=23, cin=3, cout=5, stride=2, pad=1),
        L.Conv2d(h=9, w=14, cin=8, cout=16, stride=1, pad=2, dilation=2, bias=True, act="relu"),
        L.Conv2d(n=2, h=7, w=7, cin=32, cout=16, kh=1, kw=1, pad=0),
        L.Conv2d(h=8, w=8, cin=16, cout=32, layout="NCHW"),
        L.Conv2d(h=17, w=23, cin=5, cout=4, stride=2, pad=1, layout="NCHW", bias=True, act="relu"),
        L.Conv2d(h=10, w=10, cin=8, cout=8, groups=8, layout="NHWC"),
        # conv family: residual epilogue, Winograd-eligible odd sizes with batch > 1, depthwise with
        # stride 2 and an epilogue, the blocked NCHWc layout
        L.Conv2d(n=2, h=9, w=11, cin=8, cout=16, bias=True, residual=True, act="relu"),
        L.Conv2d(h=17, w=23, cin=16, cout=16, groups=16, stride=2, pad=1, bias=True, act="relu"),
        L.Conv2d(n=2, h=13, w=9, cin=16, cout=16, groups=16, layout="NCHW", residual=True),
        L.Conv2d(h=17, w=23, cin=8, cout=16, stride=2, pad=1, layout="NCHWc", bias=True, residual=True, act="relu"),
        L.Conv2d(n=2, h=7, w=9, cin=16, cout=8, kh=1, kw=1, pad=0, layout="NCHWc"),
        L.Conv2d(h=7, w=7, cin=24, cout=32, stride=1, pad=1, wpack=16, bias=True, act="relu"),   # packed panels
    ],
    "layout_transform": [
        L.LayoutTransform(n=2, c=16, h=5, w=7, src="NHWC", dst="NCHWc"),
        L.LayoutTransform(c=24, h=6, w=3, src="NCHWc", dst="NHWC"),
        L.LayoutTransform(c=16, h=9, w=16, src="NCHW", dst="NCHWc"),
        L.LayoutTransform(c=8, h=4, w=5, src="NCHWc", dst="NCHW"),
    ],
    "pool2d": [
        L.Pool2d(h=16, w=16, c=16, kind="max", k=2, stride=2),
        L.Pool2d(h=17, w=23, c=5, kind="avg", k=3, stride=2, pad=1),
        L.Pool2d(n=2, h=9, w=9, c=24, kind="max", k=3, stride=1, pad=1),
    ],
    "global_avg_pool2d": [
        L.GlobalAvgPool2d(h=7, w=7, c=64),
        L.GlobalAvgPool2d(n=2, h=5, w=3, c=12),
    ],
    "add": [
        L.Add(h=5, w=6, c=16),
        L.Add(n=2, h=3, w=3, c=7, act="relu"),
    ],
    "bit_dense": [
        L.BitDense(h=2, w=2, c=64, classes=10),
        L.BitDense(n=3, h=1, w=3, c=70, classes=4),
    ],
    "fused": [],   # filled below from small graphs (FusedLayer instances)
    "dense": [
        L.Dense(c=64, cout=10),
        L.Dense(n=2, h=2, w=3, c=5, cout=16, bias=False, act="relu"),
        L.Dense(c=32, cout=24, act="relu"),
    ],
}


def _fused_samples():
    """Fused layers of small graphs: conv+bias+ReLU -> max pool, conv+bias -> residual add + ReLU, and a
    depthwise -> pointwise pair (no planner template: fused/sequential only)."""
    G = cs.graph
    g = G.Graph("conv_pool")
    x = g.input("x", (1, 8, 8, 8))
    g.add("c", L.Conv2d(h=8, w=8, cin=8, cout=16, bias=True, act="relu"), x)
    g.add("p", L.Pool2d(h=8, w=8, c=16, kind="max", k=2, stride=2), "c")
    g.output("p")
    h = G.Graph("residual")
    x = h.input("x", (1, 6, 6, 16))
    h.add("c", L.Conv2d(h=6, w=6, cin=16, cout=16, bias=True), x)
    h.add("j", L.Add(h=6, w=6, c=16, act="relu"), "c", x)
    h.output("j")
    m = G.Graph("mobile")
    x = m.input("x", (1, 6, 6, 8))
    m.add("dw", L.Conv2d(h=6, w=6, cin=8, cout=8, groups=8, bias=True, act="relu"), x)
    m.add("pw", L.Conv2d(h=6, w=6, cin=8, cout=16, kh=1, kw=1, pad=0, bias=True, act="relu"), "dw")
    m.output("pw")
    return [g.fused_layer(["c", "p"]), h.fused_layer(["c", "j"]), m.fused_layer(["dw", "pw"])]


SAMPLES["fused"] = _fused_samples()

# Binary layers: odd channel counts, odd sizes, stride 2, both pad values, both comparisons.
SAMPLES["binary_conv2d"] = [
    L.BinaryConv2d(h=9, w=11, cin=65, cout=3, pad=1, pad_value=1),
    L.BinaryConv2d(h=10, w=7, cin=100, cout=65, stride=2, pad=1, output="mismatch"),
    L.BinaryConv2d(h=8, w=8, cin=63, cout=16, kh=1, kw=1, threshold=True, compare="<="),
    L.BinaryConv2d(h=7, w=9, cin=1, cout=70, kh=3, kw=2, pad=(1, 0), pad_value=1, threshold=True),
]
SAMPLES["binary_conv_pool"] = [
    L.BinaryConvPool(h=10, w=9, cin=65, cout=20, segments=(2, 3), output="mismatch"),
    L.BinaryConvPool(h=9, w=9, cin=3, cout=64, stride=2, pad=1, pad_value=1, segments=2, compare="<="),
]
SAMPLES["bitpack"] = [L.BitPack(h=3, w=5, c=65), L.BitPack(n=2, h=2, w=2, c=1)]
SAMPLES["popcount_threshold"] = [L.PopcountThreshold(h=3, w=4, c=100), L.PopcountThreshold(h=2, w=3, c=63, compare="<=")]
SAMPLES["segmented_bit_pool"] = [L.SegmentedBitPool(h=7, w=9, c=65, segments=(2, 3)),
                                 L.SegmentedBitPool(n=2, h=6, w=6, c=3, segments=1)]
SAMPLES["bit_max_pool2d"] = [L.BitMaxPool2d(h=7, w=7, c=63, k=3, stride=2, pad=1), L.BitMaxPool2d(h=8, w=6, c=130)]
SAMPLES["bit_global_pool"] = [L.BitGlobalPool(h=5, w=5, c=100), L.BitGlobalPool(h=4, w=3, c=65, mode="or")]
SAMPLES["loss_delta"] = [
    L.LossDelta(n=2, h=6, w=7, cin=70, cout=2, classes=3),
    L.LossDelta(n=2, h=7, w=7, cin=5, cout=3, weights="ternary", head="segmented", segments=(2, 2), classes=3),
]

# Backward layers: overlapping windows with stride and padding, channel counts that are no multiple
# of the vector width (templates shrink it), batch > 1, groups, depthwise, dilation, 1x1 stride 2.
_P, _C, _G = L.Pool2d, L.Conv2d, L.GlobalAvgPool2d
SAMPLES["pool2d_argmax"] = [L.Pool2dArgmax(_P(h=9, w=11, c=24, kind="max", k=3, stride=2, pad=1)),
                            L.Pool2dArgmax(_P(n=2, h=6, w=7, c=5, kind="max", k=2, stride=1))]
SAMPLES["pool2d_grad"] = [L.Pool2dGrad(_P(h=9, w=11, c=24, kind="max", k=3, stride=2, pad=1)),
                          L.Pool2dGrad(_P(n=2, h=7, w=6, c=5, kind="avg", k=3, stride=1, pad=1)),
                          L.Pool2dGrad(_P(h=10, w=9, c=16, kind="avg", k=(3, 2), stride=(2, 3), pad=(1, 0)))]
SAMPLES["global_avg_pool2d_grad"] = [L.GlobalAvgPool2dGrad(_G(n=2, h=3, w=5, c=12))]
SAMPLES["relu"] = [L.ReLU(n=2, h=3, w=5, c=6), L.ReLU(h=4, w=4, c=32)]
SAMPLES["relu_grad"] = [L.ReLUGrad(L.ReLU(n=2, h=3, w=5, c=6))]
SAMPLES["prelu"] = [L.PReLU(n=2, h=3, w=5, c=6), L.PReLU(h=4, w=4, c=48)]
SAMPLES["prelu_grad"] = [L.PReLUGrad(L.PReLU(n=2, h=3, w=5, c=6)), L.PReLUGrad(L.PReLU(h=4, w=6, c=48))]
_CONV_GRAD_SAMPLES = [
    _C(h=8, w=8, cin=16, cout=32),                                       # Winograd and dot apply
    _C(h=9, w=11, cin=5, cout=16, stride=2, pad=1),                      # stride 2, odd sizes: pixel phases
    _C(h=9, w=14, cin=8, cout=16, pad=2, dilation=2),
    _C(h=10, w=9, cin=8, cout=8, groups=8, stride=2, pad=1),             # depthwise
    _C(n=2, h=7, w=7, cin=16, cout=32, kh=1, kw=1, pad=0, stride=2),
    _C(h=6, w=7, cin=12, cout=32, groups=4, kh=2, kw=3, pad=(1, 0)),     # groups, non-square kernel
]
SAMPLES["conv2d_data_grad"] = [L.Conv2dDataGrad(c) for c in _CONV_GRAD_SAMPLES]
SAMPLES["conv2d_weight_grad"] = [L.Conv2dWeightGrad(c) for c in _CONV_GRAD_SAMPLES]
SAMPLES["bias_grad"] = [L.BiasGrad(n=2, h=3, w=5, c=6), L.BiasGrad(h=4, w=4, c=64)]
