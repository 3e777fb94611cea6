"""lpu.sweep: grid order, rows equal to direct simulate calls, errors per configuration and before any work,
the same DataFrame from a local pool, one process and a real Dask LocalCluster on 127.0.0.1, and the CLI."""

import itertools
import json
import subprocess
import sys

import pandas as pd
import pytest

import lpu
from lpu import sweep as sweep_module

# LPU and GPU, fitting and not: llama2-7b fits 64 LPUs but not 8; 64 is no GPU server size
GRID = dict(model=["llama2-7b", "stories110M"], system=["lpu-v1", "h100"], chips=[8, 64], users=[1, 4])


@pytest.fixture(scope="module")
def local():
    return lpu.sweep(GRID, progress=False, workers=1)


def test_one_row_per_configuration_in_grid_order(local):
    combos = list(itertools.product(*GRID.values()))
    assert len(local) == len(combos)
    assert [tuple(r) for r in local[["model", "system", "chips", "users"]].itertuples(index=False)] == combos
    assert {"ttft_s", "itl_s", "output_tokens_per_s", "itl_s_low", "itl_s_high", "ttft_s_low", "ttft_s_high", "error"} <= set(local.columns)
    assert local.columns[-1] == "error"


def test_rows_are_simulate_results_and_errors(local):
    for row in local.itertuples(index=False):
        kwargs = dict(model=row.model, system=row.system, chips=row.chips, users=row.users)
        if row.error is None:
            r = lpu.simulate(**kwargs)
            assert (row.ttft_s, row.itl_s, row.precision, row.plan) == (r.ttft_s, r.itl_s, r.precision, r.as_dict()["plan"])
            assert (row.itl_s_low, row.itl_s_high) == r.ranges["itl_s"]
            assert row.itl_s_low <= row.itl_s <= row.itl_s_high
        else:  # the same message simulate raises
            with pytest.raises(ValueError) as e:
                lpu.simulate(**kwargs)
            assert str(e.value) == row.error
    failed = local[local.error.notna()]
    assert set(zip(failed.model, failed.system, failed.chips)) >= {("llama2-7b", "lpu-v1", 8), ("llama2-7b", "h100", 64)}
    assert local.error.isna().sum() >= 6


def test_local_pool_gives_the_same_frame(local):
    pd.testing.assert_frame_equal(lpu.sweep(GRID, progress=False, workers=2), local)


def test_dask_local_cluster_gives_the_same_frame(local, tmp_path):
    distributed = pytest.importorskip("distributed")
    small = dict(model=["llama2-7b"], system=["h100"], chips=[1, 2])
    (tmp_path / "grid.json").write_text(json.dumps(small))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            df = lpu.sweep(GRID, client=client, progress=False)
        out = subprocess.run([sys.executable, "-m", "lpu", "sweep", "--grid", str(tmp_path / "grid.json"), "--out", str(tmp_path / "r.csv"),
                              "--scheduler", cluster.scheduler_address], capture_output=True, text=True, timeout=300)
    pd.testing.assert_frame_equal(df, local)
    assert out.returncode == 0, out.stderr
    assert f"on {cluster.scheduler_address}" in out.stdout
    assert pd.read_csv(tmp_path / "r.csv").itl_s.tolist() == pytest.approx(lpu.sweep(small, workers=1).itl_s.tolist(), rel=1e-12)


def test_dataframe_rows_and_resolved_values(tmp_path):
    rows = pd.DataFrame(dict(model=["llama2-7b", "llama2-7b"], system=["h100", "lpu-v1"], chips=[None, 80], precision=["fp16", None],
                             users=[4, None]))
    df = lpu.sweep(rows, progress=False, workers=1)  # None / NaN: simulate's default; 80.0 (a float column) taken as 80
    assert df.error.isna().all()
    direct = [lpu.simulate("llama2-7b", "h100", None, "fp16", users=4), lpu.simulate("llama2-7b", "lpu-v1", 80)]
    assert df.chips.tolist() == [r.chips for r in direct] and df.precision.tolist() == [r.precision for r in direct]
    assert df.users.tolist() == [4, 1]
    assert df.itl_s.tolist() == [r.itl_s for r in direct]
    cfg = tmp_path / "tiny"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(dict(model_type="llama", hidden_size=288, num_hidden_layers=6, num_attention_heads=6,
                                                     intermediate_size=768, vocab_size=32000, max_position_embeddings=1024)))
    hf = lpu.sweep(dict(model=[str(cfg)], system="h100", chips=[1, 2], output_tokens=[100]), progress=False, workers=1)
    assert hf.model.tolist() == ["tiny", "tiny"] and hf.error.isna().all()


def test_bad_grids_are_refused_before_any_work(monkeypatch):
    def no_work(**kwargs):
        raise AssertionError("simulate ran")

    monkeypatch.setattr(sweep_module, "simulate", no_work)
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'chip', 'batch'; lpu.simulate takes model, system, chips"):
        lpu.sweep(dict(model=["llama2-7b"], chip=[8], batch=[2]))
    with pytest.raises(ValueError) as e:
        lpu.sweep(dict(model=["llama2-7b", "llama9-1t"], system=["lpu-v1", "tpu-v9"], users=[1, 0], precision=["fp12"], chips=[64]))
    for part in ("model='llama9-1t' (unknown model", "system='tpu-v9' (unknown hardware", "users=0 (must be a positive integer)",
                 "precision='fp12' (unknown precision"):
        assert part in str(e.value)
    for grid, match in [(dict(system=["h100"]), "give 'model'"), (dict(model=[]), r"grid\['model'\] is empty"),
                        ([("model", "x")], "grid must be a dict"),
                        (pd.DataFrame(dict(model=["llama2-7b", None])), "needs a model"),
                        (dict(model=["llama2-7b"], ranges=["yes"]), "ranges='yes' .must be True or False")]:
        with pytest.raises(ValueError, match=match):
            lpu.sweep(grid)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        lpu.sweep(dict(model=["llama2-7b"]), workers=0)
    with pytest.raises(ValueError, match="client must be a dask.distributed.Client"):
        lpu.sweep(dict(model=["llama2-7b"]), client="tcp://127.0.0.1:8786")


def test_progress_bar_on_long_sweeps(monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "PROGRESS_DELAY_S", 0.0)
    grid = dict(model=["llama2-7b"], system=["h100"], chips=[1, 2, 4, 8])
    lpu.sweep(grid, workers=1)
    err = capsys.readouterr().err
    assert "lpu.sweep" in err and "4/4" in err
    lpu.sweep(grid, workers=1, progress=False)
    assert "lpu.sweep" not in capsys.readouterr().err


def test_cli_sweep(tmp_path):
    grid = [dict(model="llama2-7b", system="h100", chips=c, precision="fp16") for c in (1, 8)] + [dict(model="llama2-70b", system="lpu-v1", chips=8)]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    run = lambda *a: subprocess.run([sys.executable, "-m", "lpu", "sweep", "--grid", str(tmp_path / "grid.json"), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    out = run("--out", str(tmp_path / "r.parquet"), "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert "3 configurations" in out.stdout and "1 did not run" in out.stdout
    got = pd.read_parquet(tmp_path / "r.parquet")
    want = lpu.sweep(pd.DataFrame(grid), progress=False, workers=1)
    assert got.itl_s.tolist()[:2] == want.itl_s.tolist()[:2]
    assert got.error.isna().tolist() == [True, True, False] and got.error[2] == want.error[2]
    out = run("--out", str(tmp_path / "r.csv"))
    assert out.returncode == 0, out.stderr
    assert pd.read_csv(tmp_path / "r.csv").chips.tolist() == [1, 8, 8]
    out = run("--out", str(tmp_path / "r.xlsx"))
    assert out.returncode == 2 and "give a .csv or .parquet file" in out.stderr
