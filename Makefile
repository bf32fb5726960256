# Campus Energy — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench lock clean

EMULATOR := tests/firestore_emulator/node_modules/.installed

install: $(STAMP) $(EMULATOR)

# Rebuilt only when the lock file or the project metadata changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The Firestore emulator the tests start (test-only; skipped when npm is missing).
$(EMULATOR): tests/firestore_emulator/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/firestore_emulator && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the Firestore emulator tests will be skipped"; fi

test: $(STAMP) $(EMULATOR)
	$(BIN)/python -m pytest

# The long fault-injection run (10-20 minutes; `make test` runs the short one).
.PHONY: faults
faults: $(STAMP) $(EMULATOR)
	CAMPUS_ENERGY_FAULTS=long $(BIN)/python -m pytest tests/faults tests/attacks -s
	CAMPUS_ENERGY_FAULTS=long $(BIN)/python -m pytest -m long tests/integration tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/campus-energy demo

# Pictures of both dashboards on a month of simulated history (docs/screenshots/; needs chromium).
.PHONY: screenshots
screenshots: $(STAMP)
	$(BIN)/python tools/screenshots.py

# benchmarks/REPORT.md for the commit checked out: refused (exit 2) while src/ or benchmarks/
# hold uncommitted changes; `benchmarks/report.py --quick --out DIR` measures any tree elsewhere.
# The scale script (an estate of 1,000 meters, then to saturation; Firestore from the emulator)
# runs for about 50 minutes: `benchmarks/report.py --only scale` measures it alone.
bench: $(STAMP) $(EMULATOR)
	$(BIN)/python benchmarks/report.py

# Re-resolve the pinned dependency sets (needs network access to PyPI): requirements.lock, every
# extra with the development tools (what `make install` puts in .venv), and from it
# requirements-runtime.lock, the runtime extras only at the same versions (the constraints file
# of a production install: docs/deployment.md).
COMPILE := $(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras

lock:
	$(COMPILE) --allow-unsafe --all-extras --output-file requirements.lock pyproject.toml
	$(COMPILE) --extra all --constraint requirements.lock --output-file requirements-runtime.lock pyproject.toml

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
