# `make run`: a demo server on SQLite at http://127.0.0.1:$(PORT)/ (another port: `make run PORT=5001`,
# or PORT in the environment). `make test`: installs the test extra and runs the whole suite.
#
# Installs go through uv (on PyPI): from its cache it creates .venv and sets up the project in a
# second or two, where `python -m venv` and pip take most of a minute. The uv on PATH if there is
# one, else one this Makefile installs once per machine with the system's pip into the user's cache
# directory (so a fresh clone need not fetch it again); without either, venv and pip do the work.
# Either way .venv has its own pip.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
UV_BOOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/portcullis-identity/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_BOOT)/bin/uv)

.PHONY: run test bench clean

# a failed bootstrap (no pip, no network) is not an error: venv and pip take over
$(UV_BOOT)/bin/uv:
	-@$(PY) -m pip install -q --disable-pip-version-check --target "$(UV_BOOT).$$$$" uv 2>/dev/null \
	  && mkdir -p "$$(dirname "$(UV_BOOT)")" && { [ -e "$(UV_BOOT)" ] || mv "$(UV_BOOT).$$$$" "$(UV_BOOT)"; }; \
	  rm -rf "$(UV_BOOT).$$$$"

$(BIN)/python: | $(UV)
	if [ -x "$(UV)" ]; then "$(UV)" venv -q --seed --python "$$(command -v $(PY))" $(VENV); \
	else $(PY) -m venv $(VENV); fi

# pip-style arguments -> installed into .venv, by uv if there is one. Both compile to bytecode as
# they install (pip does by default), and COMPILE compiles the project's own editable sources: a
# host with PYTHONDONTWRITEBYTECODE set would otherwise compile every module from source at every
# worker's start (2.4 s to the first answer instead of 0.8 s).
INSTALL = if [ -x "$(UV)" ]; then "$(UV)" pip install -q --python $(BIN)/python $(1) --compile-bytecode; \
	else $(BIN)/pip install -q $(1); fi
COMPILE = $(BIN)/python -m compileall -q -j 0 identity api app.py

# what serving needs, and nothing else
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(call INSTALL,-e .)
	touch $@

# the test extra on top (the browser tests use Debian's Chromium, so no browser download)
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(call INSTALL,-e '.[test]')
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@$(COMPILE)
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app seed demo/seed.json
	@echo "Demo user: alice / tulip-quartz-harbor-917; demo clients and their secrets: docs/demo-clients.md"
	@echo "Open http://127.0.0.1:$(PORT)/  (another port: make run PORT=5001)"
	@if [ -n "$$FLASK_MAIL_SERVER" ]; then echo "Mail (reset links, notices) goes to $$FLASK_MAIL_SERVER"; \
	else echo "Mail (reset links, notices) is not sent: each message is written to $(CURDIR)/instance/outbox/ (one .eml file; open it in a mail program or read it as text)"; fi
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app run --port $(PORT)

# pytest-xdist: TEST_WORKERS processes (0: one process), each test file on one of them (its
# module-scoped servers start once); tests marked `serial` still run alone (tests/workers.py).
# 4 on two cores: with 3, a sixth of the CPU stayed idle while tests waited on their servers (and
# 6 were no faster than 4). The longest files first, in tests/conftest.py's order (LONGEST_FIRST).
TEST_WORKERS ?= 4
test: $(VENV)/.installed-test
	@$(COMPILE)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(call INSTALL,-e '.[bench]')
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance/*.db
