# `make run`: a demo server on SQLite. `make test`: the whole test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test bench clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app seed demo/seed.json
	@echo "Demo user: alice / tulip-quartz-harbor-917   service client: service / service-secret-change-me"
	@echo "Open http://127.0.0.1:$(PORT)/"
	FLASK_ENVIRONMENT=development $(BIN)/flask --app app run --port $(PORT)

# pytest-xdist: TEST_WORKERS processes (0: one process), each test file on one of them (its
# module-scoped servers start once); tests marked `serial` still run alone (tests/workers.py).
TEST_WORKERS ?= 3
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance/*.db
