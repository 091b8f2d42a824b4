# `make run`: a demo server on SQLite at http://127.0.0.1:$(PORT)/ (another port: `make run PORT=5001`,
# or PORT in the environment). `make test`: installs the test extra and runs the whole suite.
#
# Installs go through uv (from PyPI, put into the virtual environment on first use, or the one on
# PATH): from its cache it sets up the project in a second or two where pip takes most of a minute.
# Without uv (none on PATH and PyPI unreachable) pip does the same work, only slower.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# uv on PATH, or one installed into the environment; empty when neither can be had (then pip)
$(VENV)/.uv: | $(BIN)/python
	@if command -v uv >/dev/null 2>&1; then command -v uv > $@; \
	elif $(BIN)/pip install -q uv; then echo $(abspath $(BIN))/uv > $@; \
	else echo "uv unavailable: installing with pip (slower)"; : > $@; fi

# pip-style arguments -> installed into .venv with uv if there is one, else with pip
INSTALL = uv=$$(cat $(VENV)/.uv); \
	if [ -n "$$uv" ]; then "$$uv" pip install -q --python $(BIN)/python $(1); else $(BIN)/pip install -q $(1); fi

# what serving needs, and nothing else
$(VENV)/.installed-run: pyproject.toml $(VENV)/.uv
	$(call INSTALL,-e .)
	touch $@

# the test extra on top (the browser tests use Debian's Chromium, so no browser download)
$(VENV)/.installed-test: pyproject.toml $(VENV)/.uv
	$(call INSTALL,-e '.[test]')
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app seed demo/seed.json
	@echo "Demo user: alice / tulip-quartz-harbor-917; demo clients and their secrets: docs/demo-clients.md"
	@echo "Open http://127.0.0.1:$(PORT)/  (another port: make run PORT=5001)"
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app run --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(call INSTALL,-e '.[bench]')
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance/*.db
