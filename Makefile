# rgsyn: `make repro` runs the pipeline, `make test` runs the tests. Both set up first if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# torchreid 0.2.5 and facenet-pytorch 2.6.0 carry stale pins (torch<2.3); install without deps.
	$(PY) -m pip install -q --no-deps torchreid==0.2.5 facenet-pytorch==2.6.0
	touch $(STAMP)

repro: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH dvc repro

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pytest -q -o addopts="" --benchmark-only benchmarks

clean-venv:
	rm -rf $(VENV)
