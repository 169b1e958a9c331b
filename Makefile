# Set-up and the two commands of the README. PYTHON may name a virtual environment's python.
PYTHON ?= python3

.PHONY: install demo test bench

# Installs the CPU build of torch only when no torch is present (an unpinned torch pulls a
# multi-GB CUDA build), then sg3probe itself with its test extras and the example plugin.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pip install -q -e examples/sg3probe-example-plugin

demo: install
	$(PYTHON) -m sg3probe run disentanglement

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_generator.py
