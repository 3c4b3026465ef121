# `make book`, `make lab` and `make test` each set up the virtual environment from nothing, then do their job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= default
# torch and torchvision: the releases this project is tested with (any from 2.2 / 0.17 works).
ifeq ($(shell uname -sm),Linux x86_64)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
else
TORCH_SPEC ?= torch torchvision
endif

.PHONY: setup book lab test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

book: setup
	$(VENV)/bin/zf book --scale $(SCALE)

# JupyterLab for this machine only (127.0.0.1, never 0.0.0.0) on the chapters in book/, with the
# venv's kernel `python3`; it prints the address with its token (open it in a browser). It asks
# nothing of the network: no news feed, no update check, no extension manager on PyPI.
# `make lab LAB_PORT=8890` picks another port (taken: Jupyter tries the next ones).
LAB_PORT ?= 8888
LAB_OPTS := --LabApp.news_url=None --LabApp.extension_manager=readonly \
	--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate \
	$(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser --notebook-dir book $(LAB_OPTS)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf _build .pytest_cache
