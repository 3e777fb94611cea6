#!/usr/bin/env bash
# What a user of the released package gets, checked outside the repository (called by .ci/run after `make test`):
#   1. build the sdist, then the wheel from the sdist (python -m build), with no packaging warnings;
#   2. the sdist holds every tracked file (git ls-files), the wheel every tracked file of lpu/ plus the LICENSE;
#   3. a fresh venv in a temporary folder gets the wheel with its core dependencies only, and runs there the tour
#      (`lpu`), `lpu bench`, `lpu generate` and a short Engine.default() generation;
#   4. the sdist's own tests of the readers, and the bundled model against its float64 reference, run against that wheel.
# PYTHON=/path/to/python3.10 bash scripts/check_wheel.sh checks another interpreter. Uses pip's cache; ~1 min when warm.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { echo "check_wheel: [$((SECONDS - start)) s] $*"; }
pipq() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

step "$("$PYTHON" --version) in $work"
"$PYTHON" -m venv "$work/tools"
pipq "$work/tools" build
"$work/tools/bin/python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# Python warnings (SetuptoolsDeprecationWarning..., shown by build as "WARNING ..." in a "!!" banner); distutils' lowercase "warning:" notes (a MANIFEST.in pattern that
# matched nothing in a clean tree, byte-compiling off under PYTHONDONTWRITEBYTECODE) say nothing about the package
if grep -E "[A-Za-z]Warning\b|^WARNING|^!!" "$work/build.log"; then
    echo "check_wheel: the build printed warnings (above)"; exit 1
fi
sdist=$(ls "$work"/dist/*.tar.gz) wheel=$(ls "$work"/dist/*.whl)
step "built $(basename "$sdist") and $(basename "$wheel") (from the sdist)"

if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$repo" && git ls-files | grep -v '^\.gitignore$' | sort) >"$work/tracked"
    tar tzf "$sdist" | sed 's|^[^/]*/||' | grep -v '/$' | sort >"$work/in_sdist"
    missing=$(comm -23 "$work/tracked" "$work/in_sdist")
    [ -z "$missing" ] || { echo "check_wheel: tracked files missing from the sdist:"; echo "$missing"; exit 1; }
    "$work/tools/bin/python" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel" | sort >"$work/in_wheel"
    missing=$( (grep '^lpu/' "$work/tracked"; echo "LICENSE") | while read -r f; do
        grep -qx -e "$f" -e "[^/]*\.dist-info/licenses/$f" "$work/in_wheel" || echo "$f"; done)
    [ -z "$missing" ] || { echo "check_wheel: files missing from the wheel:"; echo "$missing"; exit 1; }
    step "sdist holds all $(wc -l <"$work/tracked") tracked files; wheel holds lpu/ ($(grep -c '^lpu/' "$work/tracked") files) and the LICENSE"
fi

"$PYTHON" -m venv "$work/user"
pipq "$work/user" "$wheel"
cd "$work"  # nothing of the repository on the path from here on
lpu=$work/user/bin/lpu
"$lpu" >tour.txt
grep -q "Validation (lpu bench)" tour.txt && grep -q "Simulated on LPU systems" tour.txt
step "lpu (the tour): $(wc -l <tour.txt) lines; $(grep 'Validation (lpu bench)' tour.txt | cut -c1-110)..."
"$lpu" bench >bench.txt
step "lpu bench: $(tail -1 bench.txt | cut -c1-120)"
"$lpu" generate --prompt "ROMEO:" --max-new-tokens 24 >gen.txt 2>gen.err
step "lpu generate: $(head -c 120 gen.txt | tr '\n' ' ')"
step "  $(tail -1 gen.err | cut -c1-140)"
"$work/user/bin/python" - <<'EOF'
import sys
from importlib.metadata import metadata

import lpu

meta = metadata("lpu-explained")
assert meta["Version"] == lpu.__version__ and meta["License-Expression"] == "MIT", (meta["Version"], meta["License-Expression"])
assert lpu.DATA_DIR.is_relative_to(sys.prefix), f"data read from {lpu.DATA_DIR}, not from the installed package under {sys.prefix}"
eng = lpu.Engine.default()
events = list(eng.generate("ROMEO:", max_new_tokens=16, temperature=0.0))
assert len(events) == 16 and all(e.t_sim_s > 0 for e in events)
print(f"check_wheel: Engine.default() ({eng.config.name}, data in {lpu.DATA_DIR}): ROMEO:{''.join(e.text for e in events)!r}")
from lpu import design

grid = design.load()  # notebook 07's CSV, from the package data
r = lpu.simulate("llama2-7b", system="lpu-whatif-4nm", chips=64, ranges=False)
print(f"check_wheel: design space: {len(grid):,} configurations; llama2-7b on 64 lpu-whatif-4nm chips: {r.output_tokens_per_s:,.0f} tok/s per user")
EOF

mkdir src && tar xzf "$sdist" -C src --strip-components 1 && rm -r src/lpu  # so that the tests can only import the wheel
pipq "$work/user" pytest hypothesis
(cd src && "$work/user/bin/pytest" -q -p no:cacheprovider -o addopts= tests/test_checkpoint.py tests/test_properties.py \
    tests/test_runtime.py::test_forward_matches_float64_reference_on_the_bundled_model) >tests.txt 2>&1 || { cat tests.txt; exit 1; }
step "the sdist's reader tests and float64 reference against the wheel: $(tail -1 tests.txt)"
step "ok"
