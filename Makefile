# Two front-door targets (see README): `make demo` and `make test`. Each creates .venv and installs
# what is missing; a second run reuses it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dfpanel-installed
# A CUDA-enabled build on Linux (it also runs on CPU). Override for another platform, e.g.
#   make TORCH_SPEC="torch torchvision" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

# The web service's browser tests drive Debian's chromium; `make test` installs it where apt-get can.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo test test-all bench clean

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

browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "note: no chromium and no apt-get here: the browser tests will be skipped"; fi; \
	fi

# With chromium present the browser tests must run: DFPANEL_REQUIRE_BROWSER turns a skip into a failure.
test: $(STAMP) browser
	DFPANEL_REQUIRE_BROWSER=$$(command -v chromium >/dev/null 2>&1 && echo 1) $(PY) -m pytest -q

test-all: $(STAMP) browser
	DFPANEL_REQUIRE_BROWSER=$$(command -v chromium >/dev/null 2>&1 && echo 1) $(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
