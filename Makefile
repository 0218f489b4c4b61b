# rgsyn: `make repro` runs the pipeline, `make test` runs the tests. Both set up first if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

# --no-compile: pip would byte-compile all ~22k Python files of the environment (about 70 s of CPU
# on 2 cores); Python compiles the few thousand that the stages import on first use instead.
PIP    := $(PY) -m pip install -q --no-compile

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -c constraints.txt -e ".[dev]"
	# torchreid 0.2.5 and facenet-pytorch 2.6.0 carry stale pins (torch<2.3); install without deps.
	$(PIP) --no-deps torchreid==0.2.5 facenet-pytorch==2.6.0
	touch $(STAMP)

repro: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH dvc repro

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pytest -q -o addopts="" --benchmark-only benchmarks

clean-venv:
	rm -rf $(VENV)
