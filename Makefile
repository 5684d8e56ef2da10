# `make demo` installs into .venv and runs the pipeline on the sample data; `make test` runs the tests.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

# The clip the demo asks about: a manipulated one from the sample data.
DEMO_CLIP ?= data/sample/astronaut_1_expression_warp.mp4

demo: install
	dvc repro
	@echo
	@$(BIN)/deepfake summary
	@echo
	$(BIN)/deepfake predict $(DEMO_CLIP)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf data/sample data/interim .dvc/cache .dvc/tmp
