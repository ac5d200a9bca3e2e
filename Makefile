# One command runs the demo, one passes the tests; both create .venv when it is missing and
# install the Debian packages they need (scripts/system_deps.sh, shared with .ci/run).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean-venv system-deps vendor

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch/torchvision first and pinned: on our machines these come from local disk.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[all]"
	touch $(STAMP)

system-deps:
	bash scripts/system_deps.sh

# onnxruntime-web for the web page's in-browser decoding (npm, pinned and checked; not committed)
vendor:
	bash scripts/vendor_ort_web.sh

demo: $(STAMP)
	$(BIN)/samkit demo

test: $(STAMP) system-deps
	$(MAKE) vendor
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check samkit tests benchmarks scripts
	$(BIN)/ruff format --check samkit tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
