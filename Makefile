# The two set-up commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-compare docs mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pgshift demo

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile -q --durations=20

lint: $(STAMP)
	$(BIN)/ruff check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python -m pgshift.docs

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# pgshift at a base revision against the working tree, benches interleaved (bench/compare_revisions.py):
# `make bench-compare BASE=main ONLY=backfill,lint REPEAT=5`; BASE defaults to the merge-base with main.
bench-compare: $(STAMP)
	$(BIN)/python bench/compare_revisions.py $(if $(BASE),--base $(BASE)) $(if $(ONLY),--only $(ONLY)) $(if $(REPEAT),--repeat $(REPEAT))

# Mutation testing of the safety-critical functions (mutation/targets.toml), about an hour; not in CI.
# Pick targets with `make mutation TARGETS="password-masking rehearsal-verdict"`.
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,mutation]'
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python mutation/run.py $(TARGETS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
