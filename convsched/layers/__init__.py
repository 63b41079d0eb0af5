"""Layers: WHAT is computed. Each is a frozen dataclass with declare(), reference(), ops().

Every Layer subclass registers itself (layers/registry.py): the CLI and export find layers by KIND or class
name there, shipped and custom alike.
"""
from .activation import PReLU, ReLU
from .base import Declaration, Layer, TensorSpec
# the gradient layers; importing them registers what Pool2d/Conv2d/ReLU/PReLU.backward() return
from .backward import (BiasGrad, Conv2dDataGrad, Conv2dWeightGrad, GlobalAvgPool2dGrad, Pool2dArgmax, Pool2dGrad,
                       PReLUGrad, ReLUGrad)
from .binary import (BinaryConv2d, BinaryConvPool, BitDense, BitGlobalPool, BitMaxPool2d, BitPack, PopcountThreshold,
                     SegmentedBitPool)
from .conv import Conv2d
from .custom import CustomLayer
from .elementwise import Add, Dense
from .layout import LayoutTransform
from .loss_delta import LossDelta, LossDeltas
from .pool import GlobalAvgPool2d, Pool2d

__all__ = ["Layer", "Declaration", "TensorSpec", "Conv2d", "LayoutTransform", "Pool2d", "GlobalAvgPool2d", "Add",
           "Dense", "BitDense", "BitPack", "BinaryConv2d", "PopcountThreshold", "SegmentedBitPool", "BitMaxPool2d",
           "BitGlobalPool", "BinaryConvPool", "LossDelta", "LossDeltas", "CustomLayer",
           # activations and backward layers (layer.backward(), docs/backward.md)
           "ReLU", "PReLU", "ReLUGrad", "PReLUGrad", "Pool2dArgmax", "Pool2dGrad", "GlobalAvgPool2dGrad",
           "Conv2dDataGrad", "Conv2dWeightGrad", "BiasGrad"]
