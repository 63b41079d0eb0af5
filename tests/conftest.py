import warnings

import numpy as np
import pytest

import convsched as cs


def pytest_configure(config):
    # compile() warns once per workload when it falls back to the default template: expected in tests.
    warnings.filterwarnings("ignore", message="no tuning record")


def check_against_reference(layer, kernel, seed=0):
    """Run `kernel` on random inputs and compare with layer.reference(): exact for integer/bit layers."""
    xs = layer.random_inputs(seed)
    got = kernel(*xs)
    want = layer.reference(*xs)
    gots = got if isinstance(got, tuple) else (got,)
    wants = want if isinstance(want, tuple) else (want,)
    assert len(gots) == len(wants)
    for g, w in zip(gots, wants):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if layer.exact or np.dtype(w.dtype).kind in "iub":
            np.testing.assert_array_equal(g, w)
        else:
            rtol, atol = layer.tolerance()
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.fixture
def host():
    return cs.target.host()


def check_nonfinite(layer, kernel, algorithm="direct", seed=0):
    """On inputs with inf, -inf and NaN planted (Layer.nonfinite_inputs) the kernel gives reference()'s answer,
    NaN and inf included; an algorithm the layer documents as finite-only is caught by the tuner's check."""
    xs = layer.nonfinite_inputs(seed)
    if xs is None:
        return
    with np.errstate(invalid="ignore", over="ignore"):         # inf - inf in the reference is the point
        why = layer.mismatch(kernel(*xs), layer.reference(*xs))
    if algorithm in layer.FINITE_ONLY_ALGORITHMS:
        assert why is not None and "NaN or inf" in why, f"{layer}: {algorithm} is documented finite-only"
    else:
        assert why is None, f"{layer} on inf/NaN inputs: {why}"
