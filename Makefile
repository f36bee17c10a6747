# Two commands do everything on a fresh machine:
#   make demo   set up, generate the demo data, train the demo GN2, evaluate it, show the metrics
#   make test   set up, lint and run the test suite (make test-fast: without the slow tests)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_DATA ?= data/demo
DEMO_TRAIN ?= 300000
DEMO_VAL ?= 50000
DEMO_TEST ?= 50000

.PHONY: install demo demo-data lint test test-fast docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first and pinned, so nothing else can pull a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	# mup's declared requirements (torchvision, pandas, seaborn) serve only its examples and
	# would pull another torch: install the package alone
	$(BIN)/python -m pip install --quiet --no-deps mup==1.0.0
	touch $@

demo-data: install
	@if [ -f $(DEMO_DATA)/test.h5 ]; then echo "demo data found in $(DEMO_DATA)"; else \
	  $(BIN)/salt demo-data --out $(DEMO_DATA) --train $(DEMO_TRAIN) --val $(DEMO_VAL) --test $(DEMO_TEST); fi

demo: demo-data
	$(BIN)/salt fit --config configs/GN2.yaml --config configs/GN2_demo.yaml
	$(BIN)/salt test --config $$(ls -td logs/GN2_demo_2*/ | head -1)config.yaml
	@run=$$(ls -td logs/GN2_demo_2*/ | head -1); \
	  echo "run directory: $$run"; ls $$run/evaluation/*/; \
	  cat $$run/evaluation/*/metrics.json | head -60

lint: install
	$(BIN)/ruff check salt tests benchmarks
	$(BIN)/ruff format --check salt tests benchmarks
	$(BIN)/mypy

# one worker per core; tests sharing an expensive fixture stay on one worker (tests/conftest.py)
test: lint
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

# the tests that take seconds, not minutes (end-to-end runs are marked slow)
test-fast: install
	$(BIN)/python -m pytest -q -n auto --dist loadgroup -m "not slow"

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) logs site
