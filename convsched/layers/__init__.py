"""Layers: WHAT is computed. Each is a frozen dataclass with declare(), reference(), ops()."""
from .base import Declaration, Layer, TensorSpec
from .conv import Conv2d
from .pool import GlobalAvgPool2d, Pool2d

__all__ = ["Layer", "Declaration", "TensorSpec", "Conv2d", "Pool2d", "GlobalAvgPool2d"]
