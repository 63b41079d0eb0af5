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
