"""Bad input, arrays: read-only and big-endian arrays work (copied); object, string, masked, ragged, wrongly
shaped or typed arrays are a ValueError naming the argument; buffer helpers and bit helpers check theirs."""
import numpy as np
import pytest

import convsched as cs
from convsched import bits

L = cs.layers
CONV = L.Conv2d(h=6, w=6, cin=8, cout=16)
BCONV = L.BinaryConv2d(h=5, w=5, cin=70, cout=8, pad=1)


@pytest.fixture(scope="module")
def conv():
    return cs.compile(CONV)


@pytest.fixture(scope="module")
def bconv():
    return cs.compile(BCONV)


def read_only(a):
    a = cs.aligned(np.array(a))
    a.flags.writeable = False
    return a


def test_memory_mapped_and_read_only_arrays_work(conv, tmp_path):
    x, w = CONV.random_inputs(0)
    want = CONV.reference(x, w)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    xm, wm = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "w.npy", mmap_mode="r")
    assert not xm.flags.writeable
    assert CONV.mismatch(conv(xm, wm), want) is None                  # was a DLPack BufferError
    assert CONV.mismatch(conv(read_only(x), read_only(w)), want) is None
    assert CONV.mismatch(conv.bind(w=read_only(w))(read_only(x)), want) is None
    assert CONV.mismatch(conv(x.astype(">f4"), w.astype(">f4")), want) is None     # big-endian: same values


def test_read_only_bit_arguments_work(bconv):
    x, w = BCONV.random_inputs(0)
    want = BCONV.reference(x, w)
    assert np.array_equal(bconv(read_only(x), read_only(w)), want)
    xb = read_only(bits.unpack(x, 70))
    assert np.array_equal(bconv(xb.astype(bool), w), want)


def test_read_only_loss_delta_inputs_work():
    layer = L.LossDelta(n=2, h=5, w=5, cin=2, cout=2, classes=2)
    k = cs.compile(layer)
    xs = layer.random_inputs(0)
    want = k(*xs)
    got = k(*[read_only(a) for a in xs])
    assert np.array_equal(got.conv, want.conv) and np.array_equal(got.fc, want.fc)


X_SHAPE = (1, 6, 6, 8)
BAD_X = [
    ("object dtype", lambda: np.zeros(X_SHAPE, object), "dtype is object"),
    ("strings", lambda: np.full(X_SHAPE, "1.0"), "dtype is <U3"),
    ("float64", lambda: np.zeros(X_SHAPE), "dtype is float64"),
    ("int32", lambda: np.zeros(X_SHAPE, np.int32), "dtype is int32"),
    ("complex", lambda: np.zeros(X_SHAPE, np.complex64), "dtype is complex64"),
    ("bool", lambda: np.zeros(X_SHAPE, bool), "dtype is bool"),
    ("an extra dimension", lambda: np.zeros((1,) + X_SHAPE, np.float32), "shape is"),
    ("a missing dimension", lambda: np.zeros(X_SHAPE[1:], np.float32), "shape is"),
    ("a zero-size dimension", lambda: np.zeros((0, 6, 6, 8), np.float32), "shape is"),
    ("transposed", lambda: np.zeros((1, 8, 6, 6), np.float32), "shape is"),
    ("a scalar", lambda: np.float32(1.0), "shape is"),
    ("None", lambda: None, "dtype is object"),
    ("a masked array", lambda: np.ma.masked_array(np.zeros(X_SHAPE, np.float32)), "masked"),
    ("a ragged list", lambda: [[1.0, 2.0], [3.0]], "not an array"),
    ("a string", lambda: "x", "dtype is <U1"),
]


@pytest.mark.parametrize("what,make,msg", BAD_X, ids=[b[0] for b in BAD_X])
def test_bad_input_array_is_a_value_error_naming_the_argument(conv, what, make, msg):
    _, w = CONV.random_inputs(0)
    with pytest.raises(ValueError, match="'x'") as ei:
        conv(make(), w)
    assert msg in str(ei.value)


def test_wrong_number_of_arrays(conv):
    x, w = CONV.random_inputs(0)
    for args in ((x,), (x, w, w), ()):
        with pytest.raises(ValueError, match="takes 2 arrays"):
            conv(*args)


@pytest.mark.parametrize("bad", [np.zeros((1, 5, 5, 70), np.float32), np.full((1, 5, 5, 70), 2, np.uint8),
                                 np.zeros((1, 5, 5, 2), np.int64), np.full((1, 5, 5, 2), 2 ** 63, np.uint64),
                                 np.zeros((1, 5, 5, 3), np.uint64)],
                         ids=["floats", "not 0/1", "int64 words", "pad bits set", "too many words"])
def test_bad_bit_arguments(bconv, bad):
    _, w = BCONV.random_inputs(0)
    with pytest.raises(ValueError, match="'x'"):
        bconv(bad, w)


@pytest.mark.parametrize("shape,dtype,msg", [((-1, 4), "float32", "non-negative"),
                                             ((2.5, 4), "float32", "non-negative"),
                                             ("ab", "float32", "non-negative"), (None, "float32", "int or a tuple"),
                                             ((2, 4), object, "object"), ((2, 4), "U5", "U5"),
                                             ((2, 4), "no_such_dtype", "not a numpy dtype"),
                                             ((2, 4), "V8", "V8"), ((2,), "datetime64[s]", "datetime64")])
def test_aligned_empty_refuses_bad_shapes_and_dtypes(shape, dtype, msg):
    with pytest.raises(ValueError, match=msg):
        cs.aligned_empty(shape, dtype)


def test_aligned_helpers_edge_cases():
    assert cs.aligned_empty((0, 4), "float32").shape == (0, 4)
    assert cs.aligned_empty(np.int64(3), "uint64").shape == (3,)
    for align in (0, 3, -64, 2.0):
        with pytest.raises(ValueError, match="power of two"):
            cs.aligned_empty((4,), "float32", align=align)
    with pytest.raises(ValueError, match="object"):
        cs.aligned(np.array([1, "a"], dtype=object))
    with pytest.raises(ValueError, match="masked"):
        cs.aligned(np.ma.masked_array([1.0, 2.0], mask=[0, 1]))
    a = read_only(np.ones(16, np.float32))
    b = cs.aligned(a)
    assert b.flags.writeable and np.array_equal(a, b)


BITS_BAD = [
    ("pack floats", lambda: bits.pack(np.zeros(8, np.float32)), "bool or 0/1"),
    ("pack a 2", lambda: bits.pack(np.array([0, 2, 1])), "0 or 1"),
    ("pack into float words", lambda: bits.pack(np.zeros(8, np.uint8), dtype=np.float32), "word dtype"),
    ("pack objects", lambda: bits.pack(np.array([0, 1], dtype=object)), "bool or 0/1"),
    ("unpack n < 0", lambda: bits.unpack(np.zeros(2, np.uint64), -1), "n"),
    ("unpack n a float", lambda: bits.unpack(np.zeros(2, np.uint64), 1.5), "n"),
    ("unpack n too big", lambda: bits.unpack(np.zeros(2, np.uint64), 129), "fewer than"),
    ("unpack a scalar", lambda: bits.unpack(np.uint64(3), 8), "scalar"),
    ("unpack int64 words", lambda: bits.unpack(np.zeros(2, np.int64), 8), "words"),
    ("popcount floats", lambda: bits.popcount(np.ones(3)), "integer"),
    ("popcount negatives", lambda: bits.popcount(np.array([-1, 3])), "non-negative"),
    ("to_pm1 of a 2", lambda: bits.to_pm1(np.array([0, 2])), "0 or 1"),
    ("from_sign of strings", lambda: bits.from_sign(np.array(["a"])), "numeric"),
    ("words(-1)", lambda: bits.words(-1), "nbits"),
    ("words(1.5)", lambda: bits.words(1.5), "nbits"),
    ("words of 7-bit words", lambda: bits.words(8, 7), "word_bits"),
    ("last_word_mask(True)", lambda: bits.last_word_mask(True), "nbits"),
    ("as_packed pad bits", lambda: bits.as_packed(np.full((2, 1), 2 ** 10, np.uint64), (2, 8), "x"), "pad bits"),
    ("as_bits wrong shape", lambda: bits.as_bits(np.zeros((2, 3), np.uint8), (2, 8), "x"), "shape"),
]


@pytest.mark.parametrize("what,call,msg", BITS_BAD, ids=[b[0] for b in BITS_BAD])
def test_bits_helpers_refuse_bad_arrays(what, call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
