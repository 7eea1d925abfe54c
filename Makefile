# The two commands the README promises: `make run` and `make test`.
# Every target creates .venv when it is missing and installs the project into it, so a fresh
# clone needs nothing but Python 3.11+ and (as root) apt for the system packages below.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := tesseract-ocr

.PHONY: run demo test check lint typecheck bench apt venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# System packages the tests need (OCR of emulator images). Installed only when missing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The demo: one high-quality image from the built-in emulator (no configuration, nothing billed);
# prints the file, the cost and the deployment. `imagegate emulator` serves the emulator on a port.
# The gateway on http://127.0.0.1:8000 with embedded defaults (emulated deployments in-process,
# SQLite and images under .imagegate/, open on loopback); it prints how to call it.
run: $(STAMP)
	$(BIN)/imagegate serve --host 127.0.0.1 --port 8000

# One image through the library with the built-in emulator: out/demo.png.
demo: $(STAMP)
	$(BIN)/imagegate generate "a red fox in the snow" -o out/demo.png

test: $(STAMP) apt
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
