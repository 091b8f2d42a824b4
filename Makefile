# `make run`: a demo server on SQLite at http://127.0.0.1:$(PORT)/ (another port: `make run PORT=5001`,
# or PORT in the environment). `make test`: installs the test extra and runs the whole suite.
#
# Installs go through uv (on PyPI): from its cache it sets up the project in a second or two where
# pip takes most of a minute. The uv on PATH if there is one; else one that this Makefile installs
# once per machine with the system's pip into the user's cache directory, so a fresh clone need not
# bootstrap it again; else one installed into .venv; and without uv at all, pip does the work.
# .venv has no pip of its own: `.venv/bin/uv pip install ...` adds packages to it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
UV_BOOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/portcullis-identity/uv

.PHONY: run test bench clean

$(BIN)/python:
	$(PY) -m venv --without-pip $(VENV)

# .venv/bin/uv: a link to a uv found or bootstrapped; absent when none can be had (then pip)
$(VENV)/.uv-checked: | $(BIN)/python
	@if command -v uv >/dev/null 2>&1; then ln -sf "$$(command -v uv)" $(BIN)/uv; \
	elif [ -x "$(UV_BOOT)/bin/uv" ]; then ln -sf "$(UV_BOOT)/bin/uv" $(BIN)/uv; \
	elif $(PY) -m pip install -q --disable-pip-version-check --target "$(UV_BOOT).$$$$" uv 2>/dev/null \
	        && mkdir -p "$$(dirname "$(UV_BOOT)")" && mv -T "$(UV_BOOT).$$$$" "$(UV_BOOT)" \
	        || [ -x "$(UV_BOOT)/bin/uv" ]; then rm -rf "$(UV_BOOT).$$$$"; ln -sf "$(UV_BOOT)/bin/uv" $(BIN)/uv; \
	elif $(BIN)/python -m ensurepip >/dev/null && $(BIN)/python -m pip install -q uv; then :; \
	else echo "uv unavailable: installing with pip (slower)"; fi
	@touch $@

# pip-style arguments -> installed into .venv with uv if there is one, else with pip
INSTALL = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install -q --python $(BIN)/python $(1); \
	else $(BIN)/python -m ensurepip >/dev/null && $(BIN)/python -m pip install -q $(1); fi

# what serving needs, and nothing else
$(VENV)/.installed-run: pyproject.toml $(VENV)/.uv-checked
	$(call INSTALL,-e .)
	touch $@

# the test extra on top (the browser tests use Debian's Chromium, so no browser download)
$(VENV)/.installed-test: pyproject.toml $(VENV)/.uv-checked
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
