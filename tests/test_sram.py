import dataclasses
import math

import numpy as np
import pytest

from lpu import hardware, models
from lpu.sram import SRAM, SRAMCapacityError, chips_needed, stream_bandwidth_Bps

CHIP = hardware.get("lpu-v1")


def test_alloc_places_whole_words_evenly_over_all_slices():
    s = SRAM()
    a = s.alloc("w", 1_000_000)
    words = math.ceil(1_000_000 / 320)
    assert a.n_words == words and len(a.slices) == 88
    assert max(a.words) - min(a.words) <= 1
    assert s.used_bytes == words * 320 and s.free_bytes == CHIP.sram_bytes - words * 320


def test_alloc_respects_requested_slices_and_free_merges_back():
    s = SRAM()
    a = s.alloc("a", 320 * 100, slices=[3, 4])
    b = s.alloc("b", 320 * 10, slices=[3])
    assert a.slices == (3, 4) and a.words == (50, 50)
    assert b.start == (50,)  # after a in slice 3
    s.free("a")
    c = s.alloc("c", 320 * 8000, slices=[4])  # slice 4 is whole again
    assert c.start == (0,)
    s.free("b"), s.free("c")
    assert s.used_bytes == 0 and s._free == [[(0, 8192)]] * 88
    with pytest.raises(KeyError, match="no tensor named 'b'"):
        s.free("b")


def test_water_filling_uses_emptier_slices_first():
    s = SRAM()
    s.alloc("big", 320 * 8000, slices=[0])
    a = s.alloc("spread", 320 * 1000, slices=[0, 1])
    assert dict(zip(a.slices, a.words)) == {0: 192, 1: 808}


def test_capacity_error_names_tensor_requested_and_free():
    s = SRAM()
    s.alloc("weights", CHIP.sram_bytes - 320 * 88)
    with pytest.raises(SRAMCapacityError) as e:
        s.alloc("kv", 320 * 89)
    err = e.value
    assert err.tensor == "kv" and err.requested_bytes == 320 * 89 and err.free_bytes == 320 * 88
    assert err.shortfall_bytes == 320
    assert "'kv'" in str(err) and "28,480" in str(err) and "28,160" in str(err)
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("bad", [0, -5, 1.5, "10"])
def test_bad_sizes_and_slices(bad):
    with pytest.raises(ValueError, match="positive integer"):
        SRAM().alloc("x", bad)


def test_bad_slices_and_duplicates():
    s = SRAM()
    with pytest.raises(ValueError, match="0..87"):
        s.alloc("x", 100, slices=[88])
    s.alloc("x", 100)
    with pytest.raises(ValueError, match="already placed"):
        s.alloc("x", 100)
    with pytest.raises(ValueError, match="LPU chip"):
        SRAM("h100")


def test_occupancy_map():
    s = SRAM()
    s.alloc("half", CHIP.sram_bytes // 2)
    occ = s.occupancy(64)
    assert occ.shape == (88, 64)
    assert occ.mean() == pytest.approx(0.5, abs=1e-3)
    assert (occ[:, :32] == 1).all() and (occ[:, 32:] == 0).all()
    owner = s.owner_map(64)
    assert set(np.unique(owner)) == {-1, 0}


def test_streaming_spread_beats_packed_and_respects_bounds():
    s = SRAM()
    s.alloc("packed", 320 * 4096, slices=[0])
    s.alloc("spread", 320 * 4096)
    t_packed, t_spread = s.stream_time_s("packed"), s.stream_time_s("spread")
    assert s.stream_cycles("packed") == 4096  # one word per cycle from one slice
    assert s.stream_cycles("spread") == 4096 // 64  # 64 streams, 88 slices
    assert t_packed / t_spread == 64
    for name in ("packed", "spread"):  # never faster than the chip's SRAM bandwidth
        assert 320 * 4096 / s.stream_time_s(name) <= CHIP.sram_bandwidth_Bps * (1 + 1e-9)
    assert stream_bandwidth_Bps(CHIP, 1) == 320 * CHIP.clock_hz
    assert stream_bandwidth_Bps(CHIP, 88) == stream_bandwidth_Bps(CHIP, 64) == CHIP.stream_bandwidth_Bps
    # a what-if chip with more streams than its SRAM bandwidth allows is capped
    fast = dataclasses.replace(CHIP, streams=1000)
    assert stream_bandwidth_Bps(fast, 88) == 88 * 320 * CHIP.clock_hz
    assert dataclasses.replace(fast, mem_slices=1000).stream_bandwidth_Bps == CHIP.sram_bandwidth_Bps
    with pytest.raises(ValueError, match="between 1 and 88"):
        stream_bandwidth_Bps(CHIP, 0)


def test_chips_needed_breakdown():
    n = chips_needed("llama2-70b", precision="fp16", context_tokens=4096, batch=1)
    m = models.get("llama2-70b")
    assert n.weight_bytes == m.weight_bytes("fp16")
    assert n.kv_cache_bytes == 4096 * 327_680
    assert n.chips == math.ceil(n.total_bytes / (CHIP.sram_bytes * 0.9))
    assert (n.chips - 1) * n.usable_bytes_per_chip < n.total_bytes <= n.chips * n.usable_bytes_per_chip
    assert n.racks == math.ceil(n.chips / 72) and n.card_cost_usd == n.chips * 20_000
    # the 576-chip puzzle: fp16 weights alone exceed 576 chips of SRAM, int8 fits
    assert m.weight_bytes("fp16") > 576 * CHIP.sram_bytes
    assert chips_needed("llama2-70b", precision="int8", context_tokens=4096).chips <= 576
    assert chips_needed("llama2-70b", precision="fp16-int8ffn", context_tokens=4096).chips <= 576
    assert chips_needed("llama2-70b", precision="fp16", context_tokens=4096, reserve_fraction=0).chips > 576


def test_chips_needed_monotone_in_batch_context_and_chip_size():
    base = chips_needed("llama2-7b", precision="int8", context_tokens=1024).chips
    assert chips_needed("llama2-7b", precision="int8", context_tokens=4096).chips >= base
    assert chips_needed("llama2-7b", precision="int8", context_tokens=1024, batch=64).chips > base
    big = dataclasses.replace(CHIP, mem_words_per_slice=4 * CHIP.mem_words_per_slice)
    assert chips_needed("llama2-7b", big, "int8", 1024).chips == pytest.approx(base / 4, abs=1)
    assert chips_needed("stories260K").chips == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(context_tokens=5000), "between 0 and"),
    (dict(batch=0), "batch"),
    (dict(reserve_fraction=1.0), "reserve_fraction"),
    (dict(precision="fp12"), "known precisions"),
    (dict(chip="h100"), "LPU"),
])
def test_chips_needed_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        chips_needed("llama2-7b", **kwargs)
