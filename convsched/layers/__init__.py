"""Layers: WHAT is computed. Each is a frozen dataclass with declare(), reference(), ops()."""
from .base import Declaration, Layer, TensorSpec
from .conv import Conv2d
from .layout import LayoutTransform
from .pool import GlobalAvgPool2d, Pool2d
from .elementwise import Add, BitDense, Dense
from .binary import (BinaryConv2d, BinaryConvPool, BitGlobalPool, BitMaxPool2d, BitPack, PopcountThreshold,
                     SegmentedBitPool)
from .loss_delta import LossDelta, LossDeltas
from .activation import PReLU, ReLU
from .backward import (BiasGrad, Conv2dDataGrad, Conv2dWeightGrad, GlobalAvgPool2dGrad, Pool2dArgmax, Pool2dGrad,
                       PReLUGrad, ReLUGrad)

__all__ = ["Layer", "Declaration", "TensorSpec", "Conv2d", "LayoutTransform", "Pool2d", "GlobalAvgPool2d", "Add", "Dense", "BitDense",
           "BitPack", "BinaryConv2d", "PopcountThreshold", "SegmentedBitPool", "BitMaxPool2d", "BitGlobalPool",
           "BinaryConvPool", "LossDelta", "LossDeltas",
           # activations and backward layers (issue 17: layer.backward(), docs/backward.md)
           "ReLU", "PReLU", "ReLUGrad", "PReLUGrad", "Pool2dArgmax", "Pool2dGrad", "GlobalAvgPool2dGrad",
           "Conv2dDataGrad", "Conv2dWeightGrad", "BiasGrad"]
