# Two front-door targets (see README): `make demo` and `make test`. Each creates .venv and installs
# what is missing; a second run reuses it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dfpanel-installed
# A CUDA-enabled build on Linux (it also runs on CPU). Override for another platform, e.g.
#   make TORCH_SPEC="torch torchvision" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	# facenet-pytorch pins torch<2.3 in its metadata but runs on current torch; its MTCNN weights ship in the wheel.
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dfpanel demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
