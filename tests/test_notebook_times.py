"""scripts/notebook_times.py: the README's run-time column is rewritten from measured times, the rest kept."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("notebook_times", ROOT / "scripts" / "notebook_times.py")
notebook_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebook_times)


def test_rewrite_sets_only_the_measured_rows():
    readme = ("intro\n<!-- notebook-times -->\n| notebook | shows | run time (2 cores) |\n|---|---|---|\n"
              "| `01_a.ipynb` | chips | ~5 s |\n| `02_b.ipynb` | schedule | ~5 s |\n<!-- /notebook-times -->\nrest\n")
    out = notebook_times.rewrite(readme, {"02_b.ipynb": 12.4}, 2)
    assert "| `02_b.ipynb` | schedule | 12 s |" in out and "| `01_a.ipynb` | chips | ~5 s |" in out
    assert "run time (measured, 2 cores)" in out and out.startswith("intro\n") and out.endswith("rest\n")


def test_rewrite_notes_the_load_once():
    readme = "<!-- notebook-times -->\n| notebook | shows | run time |\n| `01_a.ipynb` | chips | 5 s |\n<!-- /notebook-times -->\n"
    once = notebook_times.rewrite(readme, {"01_a.ipynb": 7.0}, 2, (1.0, 3.5))
    twice = notebook_times.rewrite(once, {"01_a.ipynb": 7.0}, 2, (1.0, 3.5))
    assert once == twice and once.count(notebook_times.NOTE) == 1 and "load average 1.0-3.5 on 2 cores" in once


def test_rewrite_needs_the_markers():
    with pytest.raises(ValueError, match="markers"):
        notebook_times.rewrite("no table here", {}, 2)


def test_the_readme_has_every_notebook_between_the_markers():
    readme = (ROOT / "README.md").read_text()
    table = readme.split(notebook_times.START, 1)[1].split(notebook_times.END, 1)[0]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert any(notebook_times.ROW.match(line) and nb.name in line for line in table.splitlines()), nb.name
