# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo serve test check lint typecheck bench proto clean chromium faketime postgresql mariadb reportlibs sdk

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup reportlibs
	$(BIN)/opsmetrics demo

serve: setup
	$(BIN)/opsmetrics serve

lint: setup
	$(BIN)/ruff check opsmetrics tests bench
	$(BIN)/ruff format --check opsmetrics tests bench
	$(BIN)/python tests/clock_lint.py

typecheck: setup
	$(BIN)/mypy

# lint-imports: the layers contract in pyproject.toml (docs/architecture.md).
check: lint typecheck
	$(BIN)/lint-imports

# The browser tests drive Debian's Chromium (never a downloaded browser build).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# The clock tests run again under libfaketime (Debian's faketime; tests/README.md).
faketime:
	command -v faketime >/dev/null || (apt-get update && apt-get install -y faketime)

# The PostgreSQL state store tests start Debian's PostgreSQL 15 (tests/postgres_server.py).
postgresql:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)

# SQL source tests start Debian's MariaDB (mariadb-install-db + mariadbd in a temp dir).
mariadb:
	command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || (apt-get update && apt-get install -y mariadb-server)

# Reports: WeasyPrint needs pango and a font; the PDF tests read PDFs with poppler-utils.
reportlibs:
	(dpkg -s libpangoft2-1.0-0 fonts-dejavu-core >/dev/null 2>&1 && command -v pdftotext >/dev/null) || \
		(apt-get update && apt-get install -y libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils)

test: check chromium faketime postgresql mariadb reportlibs
	$(BIN)/pytest
	bash tests/faketime_runs.sh

bench: setup
	$(BIN)/python bench/ingest.py

# Regenerate the remote_write protobuf module from our own .proto.
proto: setup
	$(BIN)/python -m grpc_tools.protoc -Iopsmetrics/ingest/proto \
		--python_out=opsmetrics/ingest/proto --pyi_out=opsmetrics/ingest/proto \
		opsmetrics/ingest/proto/remote.proto opsmetrics/ingest/proto/otlp_view.proto

# The browser SDK: esbuild (pinned in sdk/js/package-lock.json, from the npm registry) builds
# sdk/js/src into opsmetrics/web/sdk/, which is committed (docs/collectors.md#browser-sdk).
sdk:
	cd sdk/js && npm ci --no-audit --no-fund && node build.mjs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache .grimp_cache
