# The two commands a user needs: `make run` (the tour) and `make test`.
# Both create .venv with python3 if missing and (re)install the package when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lab lint bench clean serve

run: $(STAMP)
	$(PY) -m lpu

test: $(STAMP)
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

serve: $(STAMP)  # the OpenAI-compatible endpoint and the race page on http://127.0.0.1:8000/
	$(PY) -m lpu serve

lint: $(STAMP)
	$(VENV)/bin/ruff check lpu tests benchmarks scripts

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[notebooks,dev,voice,serve,sweep]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
