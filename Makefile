# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := clinic_log

.PHONY: run test lint bench dast docs-images screenshots clean

$(BIN)/python: | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# PyICU (look-alike patient identifiers, Unicode TR39) compiles against the system's ICU.
# Installed from Debian's packages when missing and we may; otherwise say what is needed.
.PHONY: system-packages
system-packages:
	@if ! pkg-config --exists icu-i18n 2>/dev/null || ! command -v g++ >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev pkg-config g++ >/dev/null \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	         apt-get install -y -qq libicu-dev pkg-config g++ >/dev/null; }; \
	  else \
	    echo "PyICU needs ICU's headers, pkg-config and a C++ compiler:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install libicu-dev pkg-config g++"; \
	    echo "  macOS: brew install icu4c pkg-config"; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python system-packages
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python system-packages
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed-run

# axe-core for the accessibility checks of the browser tests (skipped without npm).
tests/e2e/node_modules/axe-core/axe.min.js: tests/e2e/package.json tests/e2e/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/e2e --no-audit --no-fund --silent; fi

## Set up, migrate, load the demo when the database is empty, serve on 127.0.0.1:5000.
## Demo mode: the second factor is offered but not required (CLINIC_LOG_DEMO=false to require).
run: export CLINIC_LOG_DEMO ?= true
run: $(VENV)/.installed-run
	$(BIN)/flask db upgrade
	$(BIN)/flask demo --if-empty
	$(BIN)/flask run --host 127.0.0.1 --port 5000

## Set up with the test extra and run the whole suite (SQLite unless
## CLINIC_LOG_TEST_DATABASE_URL names a PostgreSQL database).
test: $(VENV)/.installed-test tests/e2e/node_modules/axe-core/axe.min.js
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check clinic_log tests bench

## Benchmarks: ratios against a bare Flask endpoint and a minimal matplotlib script.
bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/bench_chart_render.py
	$(BIN)/python bench/bench_chart_routes.py
	$(BIN)/python bench/bench_export.py
	$(BIN)/python bench/bench_pages.py
	$(BIN)/python bench/bench_review_queue.py
	$(BIN)/python bench/bench_worklist.py

## Optional DAST: sqlmap against the demo app on 127.0.0.1 (Debian's sqlmap; about 2 minutes).
dast: $(VENV)/.installed-run
	bash .ci/dast

## The README's example charts, drawn from the synthetic demo data.
docs-images: $(VENV)/.installed-run
	$(BIN)/python docs/make_images.py

## Screenshots of the main pages (desktop and tablet) for the README; needs chromium.
screenshots: $(VENV)/.installed-test
	$(BIN)/python docs/make_screenshots.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
