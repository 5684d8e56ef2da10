# `make demo` installs into .venv and runs the pipeline on generated sample clips; `make test` runs the tests.
# `make test-fast` skips the slow end-to-end tests; `make lint` is what CI checks before testing.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo sample shared-model shared-faces test test-fast lint format constraints clean

install: $(VENV)/.installed

# constraints.txt pins every package the install resolves to (`make constraints` refreshes it), so a new
# release of a dependency (say scikit-learn, which decides the data split) changes nothing until chosen.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

# The clip the demo asks about: a manipulated one from the sample data.
DEMO_CLIP ?= data/sample/astronaut_1_expression_warp.mp4

# The demo's clips are made once, outside the pipeline, so `dvc repro` on real data never makes them.
sample: install
	@test -f data/sample/metadata.json || $(BIN)/deepfake make-sample

# The recommended model: the recipe in params.yaml trained on ../shared/data (real-faces photos and the
# real-videos clips) in build/shared-model, registered here as the champion. About 45-60 minutes on 2 cores.
SHARED ?= $(abspath ../shared/data)
shared-model: install
	$(BIN)/python -m flows.shared_model $(SHARED)

# The same workspace up to its face crops, without training (about 4 minutes): what each
# `bench/quality.py --train` recipe trains on.
shared-faces: install
	$(BIN)/python -m flows.shared_model $(SHARED) --faces-only

demo: sample
	dvc repro
	@echo
	@$(BIN)/deepfake summary
	@echo
	$(BIN)/deepfake predict $(DEMO_CLIP)

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

constraints: install
	echo "# Every package \`make install\` resolves to, pinned (pip install -c). Refresh: make constraints." > constraints.txt
	$(BIN)/pip freeze --exclude-editable | grep -v '^deepfake-pipeline' >> constraints.txt

clean:
	rm -rf data/sample data/interim .dvc/cache .dvc/tmp
