# Set-up and the two commands of the README. Torch: keep the one you have; on a machine without
# torch, install the 2.13.0 CPU build first (a bare range would pull a multi-GB CUDA build).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install sweep test lint

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'

sweep: install
	$(PYTHON) ablations/launch.py grid=prune_sweep

test: install
	@WANDB_MODE=$${WANDB_MODE:-offline} $(PYTHON) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

lint:
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .
