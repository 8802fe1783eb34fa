# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest proto bench plots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ticklake demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# Regenerate lake/pricing_pb2.py(i) from proto/pricing.proto with the pinned protoc.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=lake --pyi_out=lake proto/pricing.proto

bench: $(STAMP)
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.journal

# Regenerate the sample charts of `ticklake plot` in docs/ from the simulator's feed.
plots: $(STAMP)
	$(BIN)/python docs/make_plots.py docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
