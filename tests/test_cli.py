import json
import subprocess
import sys

import pytest

from lpu import cli, sram


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
    assert r.returncode == 0 and "3350000000000" in r.stdout


def test_voice_matches_the_library(capsys):
    from lpu import voice

    assert cli.main(["voice", "--profile", "lpu-llama2-70b", "--profile", "hosted-api", "--samples", "2000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["profile"] for r in rows] == ["lpu-llama2-70b", "hosted-api"]
    assert rows[0]["p50_s"] == pytest.approx(voice.monte_carlo("lpu-llama2-70b", n=2000).p50_s, rel=1e-9)
    assert cli.main(["voice", "--profile", "gpt-5"]) == 2
    assert "known: lpu-llama2-70b" in capsys.readouterr().err
