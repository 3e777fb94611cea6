"""Execute every notebook and write the README's notebook run-time table (measured, never typed).

    .venv/bin/python scripts/notebook_times.py            # run all notebooks, rewrite the table in README.md
    .venv/bin/python scripts/notebook_times.py 02 05      # only these (the others keep their row)
    .venv/bin/python scripts/notebook_times.py --check    # print the times, leave README.md alone

Each notebook runs top to bottom in a fresh kernel (nbclient, the engine of `jupyter nbconvert --execute`),
into a copy: the committed notebooks are not touched. The time is the wall clock of the whole run, kernel
start included; the machine's load average is printed beside it, since other work on a shared machine
slows a run down. The table lives between the README's ``<!-- notebook-times -->`` markers.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
START, END = "<!-- notebook-times -->", "<!-- /notebook-times -->"
ROW = re.compile(r"^\| `(?P<name>\d\d_[^`]+\.ipynb)` \| (?P<shows>.*) \| (?P<time>[^|]*) \|$")


def run(path: Path, timeout_s: int = 600) -> float:
    """Seconds to execute ``path`` top to bottom in a fresh python3 kernel (raises on the first failing cell)."""
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


NOTE = "Run times measured by `scripts/notebook_times.py`"


def rewrite(readme: str, times: dict[str, float], cores: int, loads: tuple[float, float] | None = None) -> str:
    """``readme`` with the run-time column of the notebooks table set from ``times`` (name -> seconds), and a note
    with the machine's load average during the run (``loads``: lowest, highest) under the table."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md needs the markers {START} and {END} around the notebooks table")
    head, rest = readme.split(START, 1)
    table, tail = rest.split(END, 1)
    lines = []
    for line in table.strip("\n").splitlines():
        if line.startswith(NOTE):
            continue
        m = ROW.match(line)
        if m and m["name"] in times:
            line = f"| `{m['name']}` | {m['shows']} | {times[m['name']]:.0f} s |"
        elif line.startswith("| notebook |"):
            line = f"| notebook | shows | run time (measured, {cores} cores) |"
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    if loads is not None:
        lines += ["", f"{NOTE}, fresh kernel each, load average {loads[0]:.1f}-{loads[1]:.1f} on {cores} cores "
                      "(other work on the machine slows a run; rerun the script on a quiet machine for a clean table)."]
    return head + START + "\n" + "\n".join(lines) + "\n" + END + tail


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("only", nargs="*", help="notebook number prefixes, e.g. 02 05 (default: all)")
    ap.add_argument("--check", action="store_true", help="print the times only")
    a = ap.parse_args(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not a.only or p.name[:2] in a.only)
    times, loads = {}, []
    for p in paths:
        load = os.getloadavg()[0]
        loads.append(load)
        times[p.name] = run(p)
        print(f"{p.name:40s} {times[p.name]:6.1f} s   (load average at start {load:.1f})", flush=True)
    if not a.check:
        README.write_text(rewrite(README.read_text(), times, os.cpu_count() or 1, (min(loads), max(loads))))
        print(f"wrote the run-time column of {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
