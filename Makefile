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

# JupyterLab on notebooks/, on 127.0.0.1 unless LAB_ARGS names an --ip; it prints its URL with the login token. As root
# (a container, a workshop VM) it adds --allow-root. LAB_ARGS passes flags on: make lab LAB_ARGS="--port 8890 --no-browser",
# or LAB_ARGS="--ip 0.0.0.0 --no-browser" to reach it through a container's published port.
LAB_ARGS ?=
LAB_CMD = $(VENV)/bin/jupyter lab notebooks/$(if $(findstring -ip,$(LAB_ARGS))$(findstring .ip=,$(LAB_ARGS)),, --ip 127.0.0.1)$(if $(filter 0,$(shell id -u)), --allow-root) $(LAB_ARGS)
lab: $(STAMP)
	$(LAB_CMD)

serve: $(STAMP)  # the OpenAI-compatible endpoint and the race page on http://127.0.0.1:8000/
	$(PY) -m lpu serve

lint: $(STAMP)
	$(VENV)/bin/ruff check lpu tests benchmarks scripts

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip uninstall -q -y lpu 2>/dev/null || true  # the distribution's name before lpu-explained (a venv made then)
	$(PY) -m pip install -e ".[notebooks,dev,voice,serve,sweep]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
