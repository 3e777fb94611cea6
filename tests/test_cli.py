import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lpu import cli, sram
from lpu.checkpoint import read_llama2c


def test_tour_prints_the_headline_table(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "lpu-v1" in out and "230.7 MB" in out
    n = sram.chips_needed("llama2-70b", precision="fp16", context_tokens=cli.TOUR_CONTEXT_TOKENS)
    assert f"{n.chips:,}" in out and "576" in out
    for name in ("llama2-7b", "mixtral-8x7b", "stories260K"):
        assert name in out
    assert "Validation (lpu bench)" in out and "Simulated on LPU systems" in out and "tok/s/user" in out and "241" in out  # the calibrated headline


def test_chips_json_matches_the_library(capsys):
    assert cli.main(["chips", "--model", "llama2-13b", "--precision", "int8", "--context", "2048", "--batch", "4", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["chips"] == sram.chips_needed("llama2-13b", precision="int8", context_tokens=2048, batch=4).chips


def test_bad_input_is_one_clear_line(capsys):
    assert cli.main(["chips", "--model", "gpt-5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpu: error: unknown model 'gpt-5'; known models:") and "Traceback" not in err
    assert cli.main(["specs", "tpu"]) == 2


def test_python_dash_m_and_help():
    r = subprocess.run([sys.executable, "-m", "lpu", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for sub in ("tour", "chips", "specs"):
        assert sub in r.stdout
    r = subprocess.run([sys.executable, "-m", "lpu", "specs", "h100"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "3.35e+12" in r.stdout


def test_specs_show_every_field_with_its_range_and_source(capsys):
    from lpu import hardware

    for name in hardware.names():
        spec = hardware.get(name)
        assert cli.main(["specs", name]) == 0
        out = capsys.readouterr().out.split(f"{spec.name}: every field")[1]  # a chip's key facts come first
        rows = cli.spec_rows(spec)
        assert {r[0] for r in rows} == {f.name for f in dataclasses.fields(spec)} - {"name", "source", "sources", "ranges"}
        for field, value, span, source in rows:
            line = next(line for line in out.splitlines() if line.startswith(field + " "))
            assert value in line and span in line and line.endswith(source) and source == spec.source_of(field)
    h100 = {r[0]: r for r in cli.spec_rows(hardware.get("h100"))}
    r = hardware.get("h100").range("price_usd")
    assert h100["price_usd"][1:] == [f"{r.nominal:g}", f"{r.low:g}-{r.high:g}", r.source]  # the ranged field, from its own source
    assert h100["hbm_bandwidth_Bps"][1:] == ["3.35e+12", "", hardware.get("h100").source]


@pytest.mark.parametrize("argv, flag, why", [
    (["generate", "--seed", "-1"], "--seed", "must be an integer >= 0, got -1"),
    (["generate", "--max-new-tokens", "ten"], "--max-new-tokens", "expected an integer >= 0, got 'ten'"),
    (["generate", "--temperature", "nan"], "--temperature", "must be a number in [0, inf), got 'nan'"),
    (["generate", "--top-p", "0"], "--top-p", "must be a number in (0, 1], got '0'"),
    (["generate", "--top-p", "1.5"], "--top-p", "must be a number in (0, 1], got '1.5'"),
    (["chips", "--context", "-5"], "--context", "must be an integer >= 0, got -5"),
    (["chips", "--batch", "0"], "--batch", "must be an integer >= 1, got 0"),
    (["chips", "--reserve", "1"], "--reserve", "must be a number in [0, 1), got '1'"),
    (["simulate", "--chips", "0"], "--chips", "must be an integer >= 1, got 0"),
    (["simulate", "--users", "2.5"], "--users", "expected an integer >= 1, got '2.5'"),
    (["simulate", "--prompt-tokens", "0"], "--prompt-tokens", "must be an integer >= 1, got 0"),
    (["simulate", "--output-tokens", "-3"], "--output-tokens", "must be an integer >= 1, got -3"),
    (["voice", "--silence-ms", "-1"], "--silence-ms", "must be a number in [0, inf), got '-1'"),
    (["voice", "--samples", "0"], "--samples", "must be an integer >= 1, got 0"),
])
def test_numeric_flags_are_checked_naming_the_flag_before_any_output(capsys, argv, flag, why):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == "" and err.rstrip().endswith(f"error: argument {flag}: {why}")


def test_every_numeric_flag_is_typed():
    """No flag is a bare int or float: each has a type that says its range (and so argparse names the flag)."""
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.type not in (int, float), f"lpu {name} {action.option_strings}: use cli.integer() or cli.number()"


def test_voice_matches_the_library(capsys):
    from lpu import voice

    assert cli.main(["voice", "--profile", "lpu-llama2-70b", "--profile", "hosted-api", "--samples", "2000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["profile"] for r in rows] == ["lpu-llama2-70b", "hosted-api"]
    assert rows[0]["p50_s"] == pytest.approx(voice.monte_carlo("lpu-llama2-70b", n=2000).p50_s, rel=1e-9)
    assert cli.main(["voice", "--profile", "gpt-5"]) == 2
    assert "known: lpu-llama2-70b" in capsys.readouterr().err


def test_readme_checkpoint_example_runs_as_it_stands(tmp_path):
    """The README's runnable llama2.c example (rewrite the bundled model as version 2, generate from the file), run verbatim."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("This runs as it stands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:") and len(r.stdout) > 20 and "(int8 weights" in r.stderr
    assert read_llama2c(tmp_path / "tiny_q8.bin").version == 2


def test_argument_types_bounds():
    port = cli.integer(1, 65535)
    assert port("8000") == 8000 and cli.number(0, low_open=True)("1e-3") == 1e-3
    for bad, why in [("0", "must be an integer in 1..65535, got 0"), ("65536", "must be an integer in 1..65535, got 65536"),
                     ("80.5", "expected an integer in 1..65535, got '80.5'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(why)):
            port(bad)
    for bad in ("0", "inf", "-inf", "nan", "ten"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"must be a number in (0, inf), got {bad!r}")):
            cli.number(0, low_open=True)(bad)
