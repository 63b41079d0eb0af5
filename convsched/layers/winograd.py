"""Winograd F(2x2, 3x3) for Conv2d (algorithm "winograd2x2", NHWC): the stages wino_u, wino_v, wino_m, conv.

Y = A^T [(G g G^T) * (B^T d B)] A with interpolation points 0, 1, -1 (Lavin & Gray 2015). The transforms are
written as selects over the 4x4 (or 2x2) positions of a tile, which a schedule that splits and unrolls those
axes folds into straight-line code.

Non-finite inputs: the transforms subtract input values from each other, so an inf in the input gives
inf - inf = NaN in every output of its tiles, where the direct definition (reference()) gives +-inf; the
same holds for weights. NaN stays where the definition puts it. So Conv2d lists "winograd2x2" in
FINITE_ONLY_ALGORITHMS, and compile() wraps its code in kernel.FiniteOnly: a call with an inf or NaN in a
float input runs the layer's default (direct) template instead; the tuner's check on inputs with inf and NaN
then passes, and Winograd is picked where it is fastest.
"""
from __future__ import annotations

import numpy as np

from ..backend import expr, te

WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def _lincomb(terms):
    """sum(c * t) over (c, t) with c != 0, without multiplying by +-1 (fp math would not fold those)."""
    out = None
    for c, t in terms:
        if c == 0:
            continue
        v = t if abs(c) == 1 else t * float(abs(c))
        if out is None:
            out = -v if c < 0 else v
        else:
            out = out - v if c < 0 else out + v
    return out


def _select2(i, j, table):
    """table[a][b] (TE expressions) at symbolic (i, j): a chain of selects that unrolling folds away."""
    out = None
    for a in reversed(range(len(table))):
        for b in reversed(range(len(table[0]))):
            v = table[a][b]
            out = v if out is None else expr.if_then_else(expr.all(i == a, j == b), v, out)
    return out


def winograd_conv(layer, x, wt, prefix: str):
    """The Winograd stages of `layer` (a Conv2d) on input x and weights wt; returns the "conv" stage."""
    th, tw = -(-layer.oh // 2), -(-layer.ow // 2)
    # pad up to whole 4x4 input tiles (stride 2 between tiles): (2*th + 2) x (2*tw + 2) padded rows/cols
    Hp, Wp = layer.h + 2 * layer.pads[0], layer.w + 2 * layer.pads[1]
    padded = layer.pad_stage(x, prefix, extra_h=2 * th + 2 - Hp, extra_w=2 * tw + 2 - Wp)
    G, BT, AT = WINO_G, WINO_BT, WINO_AT
    W = layer.weight_at(wt)

    def u_fn(e, u, ci, co):
        table = [[_lincomb([(G[a, i] * G[b, j], W(i, j, ci, co)) for i in range(3) for j in range(3)])
                  for b in range(4)] for a in range(4)]
        return _select2(e, u, table)

    U = te.compute((4, 4, layer.cin, layer.cout), u_fn, name=prefix + "wino_u")

    def v_fn(e, u, n, i, j, ci):
        table = [[_lincomb([(BT[a, p] * BT[b, q], padded[n, 2 * i + p, 2 * j + q, ci])
                            for p in range(4) for q in range(4)]) for b in range(4)] for a in range(4)]
        return _select2(e, u, table)

    V = te.compute((4, 4, layer.n, th, tw, layer.cin), v_fn, name=prefix + "wino_v")
    ci = te.reduce_axis((0, layer.cin), "ci")
    M = te.compute((4, 4, layer.n, th, tw, layer.cout), lambda e, u, n, i, j, co: te.sum(
        V[e, u, n, i, j, ci] * U[e, u, ci, co], axis=[ci]), name=prefix + "wino_m")

    def y_fn(n, oh, ow, co):
        i, j = oh // 2, ow // 2
        table = [[_lincomb([(AT[a, p] * AT[b, q], M[p, q, n, i, j, co]) for p in range(4) for q in range(4)])
                  for b in range(2)] for a in range(2)]
        return _select2(oh % 2, ow % 2, table)

    return te.compute(layer.y_shape(), y_fn, name=prefix + "conv")
