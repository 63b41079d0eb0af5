"""Chaining layer declarations into one TE graph (the TVM side of convsched.graph's fusion).

A fused layer is one PrimFunc: each member layer's declare() runs as usual, but while it runs

  * a placeholder the member names as an input that is bound to an earlier member's output *is* that
    output tensor (so the consumer's compute reads the producer's stage directly, no copy), and
  * every other placeholder and every compute stage it creates is renamed "<member>_<name>", so two
    convolutions in one function have stages "c1_conv" and "c2_conv" and weights "c1_w" and "c2_w".

This works for any layer written with `from convsched.backend import te` (the documented way), because the
interception replaces te.placeholder / te.compute for the duration of one declare() call, and nothing else.
"""
from __future__ import annotations

import contextlib
import threading

from tvm import te

from ..errors import ConvschedError

SEP = "_"              # "<member>_<stage>": TVM turns "." in block names into "_", so use "_"
_lock = threading.RLock()


def prefixed(member: str, name: str) -> str:
    return f"{member}{SEP}{name}"


@contextlib.contextmanager
def _intercept(member: str, bound: dict, used: set):
    """Within the block, te.placeholder(name in bound) returns the bound tensor (checked) and other
    placeholders and stages get the member's prefix."""
    real_placeholder, real_compute = te.placeholder, te.compute

    def placeholder(shape, dtype="float32", name="placeholder", *a, **kw):
        if name in bound:
            t = bound[name]
            got = tuple(int(s) for s in t.shape)
            if got != tuple(int(s) for s in shape) or str(t.dtype) != str(dtype):
                raise ConvschedError(
                    f"member '{member}': input '{name}' is bound to a tensor of shape {got} {t.dtype}, but the "
                    f"layer declares it as {tuple(int(s) for s in shape)} {dtype}")
            used.add(name)
            return t
        return real_placeholder(shape, dtype, prefixed(member, name), *a, **kw)

    def compute(shape, fcompute, name="compute", *a, **kw):
        return real_compute(shape, fcompute, prefixed(member, name), *a, **kw)

    with _lock:
        te.placeholder, te.compute = placeholder, compute
        try:
            yield
        finally:
            te.placeholder, te.compute = real_placeholder, real_compute


def declare_member(member: str, layer, bound: dict, algorithm: str = "direct"):
    """layer.declare() with its inputs named in `bound` replaced by those tensors and all other names prefixed.

    Returns the member's Declaration (inputs: only the placeholders it created, i.e. unbound ones)."""
    used: set = set()
    with _intercept(member, bound, used):
        decl = layer.declare() if algorithm == "direct" else layer.declare(algorithm=algorithm)
    missing = set(bound) - used
    if missing:
        raise ConvschedError(f"member '{member}' ({type(layer).__name__}) declares no input named "
                             f"{', '.join(sorted(missing))}")
    decl.inputs = [t for t in decl.inputs if not any(t is b for b in bound.values())]
    return decl
