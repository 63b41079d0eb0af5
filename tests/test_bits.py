import numpy as np
import pytest

from convsched import bits


@pytest.mark.parametrize("n", [1, 3, 63, 64, 65, 100, 128])
@pytest.mark.parametrize("dtype", [np.uint64, np.uint32, np.uint8])
def test_pack_roundtrip_and_layout(n, dtype):
    rng = np.random.default_rng(n)
    b = rng.integers(0, 2, (3, 5, n)).astype(np.uint8)
    p = bits.pack(b, dtype=dtype)
    wb = np.dtype(dtype).itemsize * 8
    assert p.dtype == dtype and p.shape == (3, 5, -(-n // wb))
    np.testing.assert_array_equal(bits.unpack(p, n), b)
    # little-endian: bit i in word i // wb at position i % wb; pad bits zero
    for i in range(n):
        np.testing.assert_array_equal((p[..., i // wb] >> dtype(i % wb)) & dtype(1), b[..., i])
    total = sum(int(np.bitwise_count(p).sum()) for _ in [0])
    assert total == int(b.sum())


def test_pack_other_axis_and_errors():
    b = np.random.default_rng(0).integers(0, 2, (70, 4)).astype(bool)
    p = bits.pack(b, axis=0)
    assert p.shape == (2, 4)
    np.testing.assert_array_equal(bits.unpack(p, 70, axis=0), b)
    with pytest.raises(ValueError, match="0 or 1"):
        bits.pack(np.array([0, 2]))
    with pytest.raises(ValueError, match="bool or 0/1 integer"):
        bits.pack(np.array([0.5]))
    with pytest.raises(ValueError, match="fewer than"):
        bits.unpack(p, 200, axis=0)


def test_sign_encoding():
    x = np.array([-2.0, -0.0, 0.0, 3.0])
    assert list(bits.from_sign(x)) == [0, 1, 1, 1]
    assert list(bits.to_pm1(bits.from_sign(x))) == [-1, 1, 1, 1]
