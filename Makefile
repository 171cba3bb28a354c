# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies the first time (and when
# pyproject.toml changes); nothing else needs installing by hand.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:12])')

.PHONY: demo serve test lint bench test-typescript screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev,bench]"
	# gbstats is the tests' reference for the statistics engine only; its declared
	# numpy<2/pandas<2 pins would break the product, and its stats modules do not need them.
	$(VENV)/bin/pip install --quiet --no-deps gbstats==0.8.0
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	@echo "The ramplight command is $(VENV)/bin/ramplight; 'source $(VENV)/bin/activate' puts it on PATH."
	$(VENV)/bin/ramplight demo

serve: $(STAMP)
	$(VENV)/bin/ramplight serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks spec
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

test: lint
	@# axe-core for the web UI's accessibility check, from its lockfile (one package).
	@if command -v npm >/dev/null; then cd tests/ui/axe && npm ci --silent --no-audit --no-fund; fi
	$(VENV)/bin/pytest

# Pictures of every page over the demo's data, for docs/ and the README.
screenshots: $(STAMP)
	cd tests/ui/axe && npm ci --silent --no-audit --no-fund
	RAMPLIGHT_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest tests/ui/test_accessibility.py -q

# The TypeScript SDK's own suite (Node.js 20 + npm): every spec vector, real local HTTP servers.
test-typescript:
	cd sdks/typescript && npm ci && npm test

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/evaluation.py
	$(VENV)/bin/python benchmarks/ingestion.py
