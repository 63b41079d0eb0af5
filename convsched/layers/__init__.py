"""Layers: WHAT is computed. Each is a frozen dataclass with declare(), reference(), ops()."""
from .base import Declaration, Layer, TensorSpec
from .conv import Conv2d
from .layout import LayoutTransform
from .pool import GlobalAvgPool2d, Pool2d
from .elementwise import Add, BitDense, Dense
from .binary import (BinaryConv2d, BinaryConvPool, BitGlobalPool, BitMaxPool2d, BitPack, PopcountThreshold,
                     SegmentedBitPool)
from .loss_delta import LossDelta, LossDeltas

__all__ = ["Layer", "Declaration", "TensorSpec", "Conv2d", "LayoutTransform", "Pool2d", "GlobalAvgPool2d", "Add", "Dense", "BitDense",
           "BitPack", "BinaryConv2d", "PopcountThreshold", "SegmentedBitPool", "BitMaxPool2d", "BitGlobalPool",
           "BinaryConvPool", "LossDelta", "LossDeltas"]
