"""The set-up a newcomer relies on: pyproject, environment.yml and the Makefile agree."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _names(specs):
    return {re.split(r"[<>=!\[ ]", s, maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_lists_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["notebooks"]) | _names(project["optional-dependencies"]["dev"])
    env = (ROOT / "environment.yml").read_text()
    conda = _names(m.group(1) for m in re.finditer(r"^  - ([A-Za-z0-9_.\-]+[^\n]*)$", env, re.M))
    assert wanted <= conda, wanted - conda
    assert "-e .[notebooks,dev,voice,serve,sweep]" in env and "python=3.11" in env


def test_makefile_and_ci_use_the_readme_commands():
    make = (ROOT / "Makefile").read_text()
    for target in ("run:", "test:", "lab:"):
        assert target in make
    assert '-e ".[notebooks,dev,voice,serve,sweep]"' in make and "-m lpu" in make
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_every_notebook_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert nb.name in readme, nb.name
