# make demo: set up .venv and train a VAE on MNIST (TensorBoard logs in runs/)
# make test: set up .venv and the system packages the tests need (PostgreSQL, Chromium), run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Tests, CI and the offline demo read the datasets shipped beside the checkout when present.
GENMODELS_DATA ?= $(wildcard $(abspath ../shared/datasets))
export GENMODELS_DATA

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m genmodels train experiments/vae_mnist.yaml --name vae_mnist_demo $(if $(wildcard runs/vae_mnist_demo/last.pt),--resume,)
	$(PY) -m genmodels eval runs/vae_mnist_demo --split heldout --iwae-k 100
	@echo "view the curves: $(VENV)/bin/tensorboard --logdir runs"

test: install
	bash .ci/system-packages.sh
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf runs .pytest_cache
