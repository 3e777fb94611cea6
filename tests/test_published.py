import pandas as pd
import pytest

from lpu import hardware, models, published


def test_published_table_is_well_formed():
    df = published.table()
    assert set(df.role) <= set(published.ROLES)
    assert (df.value > 0).all() and df.source.notna().all()
    known_systems = set(hardware.names())
    assert set(df.system) <= known_systems, set(df.system) - known_systems
    assert set(df.model) <= set(models.names())


def test_calibration_anchors_are_the_three_of_facts_md():
    cal = published.table().query("role == 'calibration'")
    assert sorted(zip(cal.system, cal.model, cal.metric)) == [("h100", "llama2-70b", "ttft_s"), ("lpu-v1", "llama2-70b", "output_tokens_per_s"),
                                                              ("lpu-v1", "llama2-70b", "total_time_s")]  # the third: the hosted-API term
    assert published.value("lpu-v1", "llama2-70b", "output_tokens_per_s", role="calibration") == 241
    assert published.value("lpu-v1", "llama2-70b", "total_time_s", role="calibration") == 0.8


def test_calibration_spread_rows_are_other_measurements_of_the_calibration_system():
    df = published.table()
    spread = df[df.role == "calibration-spread"]
    assert len(spread) >= 2 and set(zip(spread.system, spread.model)) == {("lpu-v1", "llama2-70b")}
    assert not spread.source.str.contains("Seed article").any()  # the seed's "internal" 300 tok/s stays a validation row
    assert published.value("lpu-v1", "llama2-70b", "output_tokens_per_s", role="validation") == 300


def test_bad_files_and_lookups(tmp_path):
    with pytest.raises(ValueError, match="found 0"):
        published.value("lpu-v1", "llama2-70b", "joules")
    p = tmp_path / "p.csv"
    pd.DataFrame({"system": ["x"]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        published.table(p)
    with pytest.raises(FileNotFoundError):
        published.table(tmp_path / "none.csv")
