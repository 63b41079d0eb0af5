# Two commands for a newcomer:  `make demo`  and  `make test`.
# Each creates the virtual environment from nothing (python3 -m venv + pip), then runs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench bench-lce lce-venv venv clean train-digits

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest tests

# A binary conv net trained by loss-delta mutation on sklearn's digits (docs/training.md); e.g.
# make train-digits TRAIN_ARGS="--numpy-epochs 0"
train-digits: $(STAMP)
	$(PY) -m pip install -q -e '.[examples]'
	$(PY) examples/train_digits.py $(TRAIN_ARGS)

# Benchmarks install PyTorch (exactly torch==2.13.0, the CPU wheel) as a peer.
# e.g. make bench BENCH_ARGS="--threads 1 --layers 7x7 --quick"
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/resnet18_conv.py $(BENCH_ARGS)

# Binary conv benchmark with Larq Compute Engine as a peer. LCE 0.16 needs TensorFlow 2.16, which needs
# numpy < 2: it lives in its own environment (.venv-lce) and runs as a subprocess of the benchmark.
LCE_VENV ?= .venv-lce
lce-venv:
	test -x $(LCE_VENV)/bin/python || $(PYTHON) -m venv $(LCE_VENV)
	$(LCE_VENV)/bin/python -m pip install -q "tensorflow-cpu==2.16.1" "larq-compute-engine==0.16.0" "numpy<2"

bench-lce: $(STAMP) lce-venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/binary_conv.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
