"""The set-up a newcomer relies on: pyproject, environment.yml and the Makefile agree; what the wheel ships; `make lab`.

The wheel itself is built and installed outside the repository by scripts/check_wheel.sh (run by .ci/run).
"""

import fnmatch
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package (the dev extra declares it for < 3.11)
    import tomli as tomllib

import lpu

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _names(specs):
    """Distribution names of requirement strings, less those only for Python < 3.11 (environment.yml pins 3.11)."""
    keep = [s for s in specs if "python_version < '3.11'" not in s.replace('"', "'")]
    return {re.split(r"[<>=!\[ ;]", s, maxsplit=1)[0].lower() for s in keep}


def test_environment_yml_lists_pyproject_dependencies():
    wanted = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["notebooks"]) | _names(PROJECT["optional-dependencies"]["dev"])
    env = (ROOT / "environment.yml").read_text()
    conda = _names(m.group(1) for m in re.finditer(r"^  - ([A-Za-z0-9_.\-]+[^\n]*)$", env, re.M))
    assert wanted <= conda, wanted - conda
    assert "-e .[notebooks,dev,voice,serve,sweep]" in env and "python=3.11" in env


def test_makefile_and_ci_use_the_readme_commands():
    make = (ROOT / "Makefile").read_text()
    for target in ("run:", "test:", "lab:"):
        assert target in make
    assert '-e ".[notebooks,dev,voice,serve,sweep]"' in make and "-m lpu" in make
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("scripts/check_wheel.sh")  # the installed wheel is checked after the tests
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_every_notebook_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert nb.name in readme, nb.name


def test_distribution_metadata():
    assert PROJECT["name"] != "lpu"  # taken on PyPI by an unrelated project; `import lpu` and the `lpu` command stay
    assert PROJECT["scripts"] == {"lpu": "lpu.cli:main"}
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]  # SPDX expression: no setuptools deprecation warning
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]  # the first setuptools that reads license-files (PEP 639)
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lpu.__version__"}
    assert PROJECT["requires-python"] == ">=3.10" and PYPROJECT["tool"]["ruff"]["target-version"] == "py310"


def test_package_data_covers_every_data_file():
    """Every file of lpu/ but its modules matches a package-data pattern, so that the wheel ships it (an installed lpu reads it there)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["lpu"]
    skip = lambda parts: any(p.startswith(".") or p == "__pycache__" for p in parts) or parts[-1].endswith(".py")  # noqa: E731
    data = [p.relative_to(ROOT / "lpu").as_posix() for p in (ROOT / "lpu").rglob("*") if p.is_file() and not skip(p.relative_to(ROOT / "lpu").parts)]
    assert "data/published.csv" in data and lpu.DATA_DIR == ROOT / "lpu" / "data"
    for f in data:
        assert any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns), f"{f} matches none of {patterns}"
    manifest = (ROOT / "MANIFEST.in").read_text()
    for folder in ("lpu", "tests", "notebooks", "benchmarks", "scripts"):  # the sdist: the repository as committed
        assert f"graft {folder}\n" in manifest


def _lab_command(lab_args: str) -> list[str]:
    """The command `make lab LAB_ARGS=...` runs (make -n; -o: never reinstall the venv for this)."""
    out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed", "lab", f"LAB_ARGS={lab_args}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return shlex.split(out.strip().splitlines()[-1])


needs_make_venv = pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "jupyter").exists(),
                                     reason="make lab needs make and the venv that make builds (.venv/bin/jupyter)")


@needs_make_venv
def test_make_lab_command_line():
    cmd = _lab_command("--port 8890 --no-browser")
    assert cmd[:3] == [".venv/bin/jupyter", "lab", "notebooks/"] and cmd[-3:] == ["--port", "8890", "--no-browser"]
    assert cmd[cmd.index("--ip") + 1] == "127.0.0.1"
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    for theirs in ("--ip 0.0.0.0", "--ip=0.0.0.0", "--ServerApp.ip=0.0.0.0"):  # theirs replaces the default: jupyter takes one ip
        cmd = _lab_command(theirs)
        assert "127.0.0.1" not in cmd and theirs.split() == cmd[-len(theirs.split()):]


@needs_make_venv
def test_make_lab_starts_on_localhost_and_prints_its_url_with_token(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_ARGS=--port {port} --no-browser"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, seen, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline and (line := proc.stdout.readline()):
            seen.append(line)
            if m := re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]+)", line):
                url, token = m.group(0), m.group(1)
        assert url, "".join(seen)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1, whatever *_proxy says
        while True:  # the URL is printed just before the server listens
            try:
                with direct.open(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10) as r:  # it serves, with that token
                    assert r.status == 200
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the jupyter server it started (its own process group)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
