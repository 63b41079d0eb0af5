"""Every shipped template, over sampled knob points, against each sample layer's reference(), on random inputs
and on inputs with inf, -inf and NaN, on every target of the matrix (conftest.MATRIX): the host with 3 sampled
points besides the defaults, the other targets with their defaults only (the sweep in test_sweep.py covers
their defaults over channel counts; this keeps the suite's time in budget)."""
import itertools
import random

import pytest

import convsched as cs
from conftest import check_against_reference, check_nonfinite
from layer_samples import SAMPLES

POINTS_PER_LAYER = 3


def _points(tmpl, layer, target, n, seed):
    space = tmpl.knob_space(layer, target)
    keys = sorted(space)
    allp = [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]
    legal = [p for p in allp if tmpl.constraint(layer, target, p) is True]
    rnd = random.Random(seed)
    pts = rnd.sample(legal, min(n, len(legal)))
    return [tmpl.defaults(layer, target)] + pts


CASES = [(name, i) for kind, layers in SAMPLES.items() for name in cs.schedule.list_templates(kind)
         for i in range(len(layers))]


@pytest.mark.parametrize("name,idx", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_template_sampled_knobs(name, idx, target):
    tmpl = cs.schedule.get_template(name)
    layer = SAMPLES[tmpl.layer_kind][idx]
    if tmpl.applies(layer, target) is not True:
        pytest.skip(f"{name} does not apply to {layer}")
    points = POINTS_PER_LAYER if target.name == "host" else 0
    for knobs in _points(tmpl, layer, target, points, seed=idx):
        k = cs.compile(layer, template=name, knobs=knobs, target=target)
        check_against_reference(layer, k, seed=idx)
        check_nonfinite(layer, k, seed=idx)


def test_every_kind_with_templates_has_samples():
    # shipped templates only: tests of user template directories register more kinds in this process
    builtin = cs.schedule.template.BUILTIN_DIR
    kinds = {d.name for d in builtin.iterdir() if d.is_dir() and any(d.glob("*.py"))}
    assert kinds <= set(SAMPLES), f"template kinds without sample layers: {kinds - set(SAMPLES)}"
