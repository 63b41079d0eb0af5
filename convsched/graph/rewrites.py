"""Rewrite rules of the fusion planner: a producer and its only consumer replaced by one layer that computes
both (where a layer of its own exists for the pair, fusing by rewrite beats a fused template).

A rule takes (producer layer, consumer layer) and returns None, or (the new layer, {argument of the new
layer: (0 = the producer's | 1 = the consumer's, argument name)}).
"""
from __future__ import annotations

from dataclasses import replace

from ..layers import BinaryConv2d, BinaryConvPool, PopcountThreshold, SegmentedBitPool


def _rw_bconv_threshold(p, c):
    """BinaryConv2d(int32 out) -> PopcountThreshold  =>  BinaryConv2d(threshold=True): the count never leaves
    registers; bits are packed as they are produced."""
    # type() is: a subclass (BinaryConvPool) computes something else
    if type(p) is BinaryConv2d and not p.threshold and isinstance(c, PopcountThreshold):
        return replace(p, threshold=True, compare=c.compare), {"x": (0, "x"), "w": (0, "w"),
                                                                "thresholds": (1, "thresholds")}
    return None


def _rw_bconv_segpool(p, c):
    """BinaryConv2d(threshold=True) -> SegmentedBitPool  =>  BinaryConvPool: activations counted per
    segment, never stored."""
    if type(p) is BinaryConv2d and p.threshold and isinstance(c, SegmentedBitPool):
        return BinaryConvPool(**p.params(), segments=c.segments), {"x": (0, "x"), "w": (0, "w"),
                                                                    "thresholds": (0, "thresholds")}
    return None


REWRITES = [_rw_bconv_threshold, _rw_bconv_segpool]
