import dataclasses

import pytest

from lpu import hardware


def test_lpu_v1_published_figures():
    c = hardware.get("lpu-v1")
    assert c.sram_bytes == 220 * 2**20  # 220 MiB, ISCA 2022 / ALCF
    assert c.lanes == 320 and c.vxm_alus == 5120
    assert c.n_queues == 144  # ISCA 2020
    # 409,600 MACs/cycle at 0.9 GHz gives 737 TOPS, consistent with the published 750
    assert c.mxm_macs_per_cycle * 2 * c.clock_hz == pytest.approx(c.peak_int8_ops_per_s, rel=0.03)
    # 16 links x 4 lanes x 30 Gb/s = 240 GB/s per direction
    assert c.c2c_links * c.c2c_link_bandwidth_Bps == pytest.approx(240e9)
    # the derived usable streaming bandwidth (SHIP) is the low end of the published range
    assert c.streams * c.word_bytes * c.clock_hz == pytest.approx(c.range("sram_bandwidth_Bps").low, rel=0.01)


def test_every_field_has_a_source():
    for spec in (hardware.get(n) for n in hardware.names()):
        for f in dataclasses.fields(spec):
            if f.name not in ("sources", "ranges", "source"):
                assert spec.source_of(f.name), (spec.name, f.name)


def test_ranges_are_ordered_and_corners_apply():
    c = hardware.get("lpu-v1")
    for field in ("clock_hz", "sram_bandwidth_Bps", "power_w", "c2c_bandwidth_Bps"):
        r = c.range(field)
        assert r.low <= getattr(c, field) == r.nominal <= r.high
    assert c.corner("high").clock_hz == 1.25e9 and c.corner("low").power_w == 215
    assert c.corner("nominal") == c
    with pytest.raises(ValueError, match="corner"):
        c.corner("typical")
    with pytest.raises(ValueError, match="low <= nominal <= high"):
        hardware.Range(2, 1, 3, "x")


def test_stream_bandwidth_never_exceeds_published_sram_bandwidth():
    c = hardware.get("lpu-v1")
    for corner in ("low", "nominal", "high"):
        cc = c.corner(corner)
        assert cc.stream_bandwidth_Bps <= cc.sram_bandwidth_Bps


def test_gpus_and_racks():
    h100, h200, a100 = (hardware.get(n) for n in ("h100", "h200", "a100"))
    assert h100.hbm_bandwidth_Bps == 3.35e12 and h200.memory_bytes == 141 * 2**30
    assert h200.peak_ops_per_s("fp8") == pytest.approx(2 * h200.peak_ops_per_s("bf16"), rel=1e-3)
    with pytest.raises(ValueError, match="no FP8"):
        a100.peak_ops_per_s("fp8")
    rack = hardware.get("groqrack")
    assert rack.chips == 72 and rack.compute_chips == 64 and rack.node.chips == 8
    assert 8 * rack.chips == 576  # the Llama 2 70B system: 8 racks, spare nodes used


def test_registry_aliases_and_errors():
    assert hardware.get("H100-SXM") is hardware.get("h100")
    assert hardware.get(hardware.LPU_V1) is hardware.LPU_V1
    with pytest.raises(ValueError) as e:
        hardware.get("tpu-v5")
    assert "tpu-v5" in str(e.value) and "lpu-v1" in str(e.value) and "h200" in str(e.value)


def test_key_facts_rows():
    rows = hardware.key_facts("lpu-v1")
    assert all(len(r) == 3 and r[2] for r in rows)
    assert any("230.7 MB" in v for _, v, _ in rows)
