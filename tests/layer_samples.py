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
}
