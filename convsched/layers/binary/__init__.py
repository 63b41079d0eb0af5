"""Binary (1-bit) layers: bit packing, XOR-popcount convolution, popcount thresholds, bit pooling.

Bit encoding (the same everywhere in convsched, see convsched/bits.py): bit 1 = +1, bit 0 = -1. Bit tensors
are NHWC with the channel axis packed little-endian into uint64 words: channel c lives in word c // 64 at
bit c % 64; pad bits (channels >= C in the last word) are 0 in weights and inputs alike, so
popcount(w XOR x) counts exactly the mismatching channels.

At the kernel API a bit input may be given either
  * as logical bits: a bool or 0/1 integer array of the logical shape (..., C) (packed here), or
  * pre-packed: a uint64 array of shape (..., ceil(C / 64)) made by cs.bits.pack(a, axis=-1); its pad bits
    must be 0 (checked: a ValueError names the tensor otherwise).
Bit outputs are returned packed (uint64 words, pad bits 0): cs.bits.unpack(y, C) gives the 0/1 array.

Layers (KIND = the schedules/<KIND>/ directory of their templates):
  BitPack              float NHWC -> packed sign bits (bit = x >= 0).                  kind "bitpack"
  PopcountThreshold    int32 counts + per-channel thresholds -> packed bits.            kind "popcount_threshold"
  BinaryConv2d         XOR-popcount conv on packed NHWC bits; output the +-1 dot product, the mismatch
                       count, or (threshold=True) packed bits of `value > t[co]`.       kind "binary_conv2d"
  BinaryConvPool       conv + threshold + segmented pool, fused: the pooled bits are the only output.
                                                                                        kind "binary_conv_pool"
  SegmentedBitPool     majority vote per segment of an SX x SY grid -> packed bits.     kind "segmented_bit_pool"
  BitMaxPool2d         max pooling of bits = OR of the packed words of each window.     kind "bit_max_pool2d"
  BitGlobalPool        majority (count > floor(HW/2)) or OR over the whole image.       kind "bit_global_pool"
  BitDense             popcount mismatch scores against per-class weight bits.          kind "bit_dense"

The TE stages they share (pack, sign_pack, binary_conv_count) are in binary/stages.py.
"""
from .conv import BinaryConv2d, BinaryConvPool
from .dense import BitDense
from .pack import BitPack, PopcountThreshold
from .pool import BitGlobalPool, BitMaxPool2d, SegmentedBitPool
from .stages import binary_conv_count, pack_stage, segment_majority, sign_pack

__all__ = ["BitPack", "PopcountThreshold", "BinaryConv2d", "BinaryConvPool", "SegmentedBitPool", "BitMaxPool2d",
           "BitGlobalPool", "BitDense", "pack_stage", "sign_pack", "binary_conv_count", "segment_majority"]
