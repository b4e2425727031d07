# Aliases for ./run, which does the set-up (project .venv, torch rule) and needs only python3:
# `make sweep` = `./run sweep`, `make test` = `./run test`. ARGS are passed on, e.g.
# make test ARGS="-k wandb", make sweep ARGS="train.steps=50". PYTHON, EXTRAS and
# TORCH_INDEX_URL reach ./run from the environment or the make command line.
PYTHON3 ?= python3
ARGS ?=
export PYTHON EXTRAS TORCH_INDEX_URL

.PHONY: install sweep test lint plan

install sweep test lint plan:
	$(PYTHON3) run $@ $(ARGS)
