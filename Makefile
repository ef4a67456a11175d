# The two commands of the README:
#   make demo   install everything into .venv and render examples/demo.yaml
#   make test   lint, type-check the core, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/python -m stitchcraft.demo examples/media
	$(BIN)/stitch render examples/demo.yaml

test: install
	$(BIN)/ruff check stitchcraft tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) examples/out examples/.stitchcraft .pytest_cache
