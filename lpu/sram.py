"""The SRAM memory model: one chip's MEM slices, tensor placement, streaming, chips needed.

The TSP has no caches and no HBM: every weight, KV entry and activation lives in
on-chip SRAM, organised as MEM *slices* (88 on LPU v1), each an array of
*addresses* holding one 320-byte vector (a *word*). A tensor is placed in whole
words spread over one or more slices; each slice reads one word per cycle onto
a *stream*, and the streams carry it east or west to the functional units. So
how fast a tensor reaches the MXM depends on how many slices it spans: spread
over many it streams at the chip's full bandwidth, packed into one it crawls.

Introduced in ``notebooks/01_architecture.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import hardware, models


class SRAMCapacityError(ValueError):
    """A tensor, or a whole model, does not fit in SRAM.

    Attributes
    ----------
    tensor : str
        What was being placed.
    requested_bytes, free_bytes : int
        Bytes asked for and bytes available; ``shortfall_bytes`` is the difference.
    """

    def __init__(self, tensor: str, requested_bytes: int, free_bytes: int, where: str = "", hint: str = ""):
        self.tensor, self.requested_bytes, self.free_bytes = tensor, int(requested_bytes), int(free_bytes)
        msg = (f"cannot place {tensor!r}{' on ' + where if where else ''}: needs {self.requested_bytes:,} bytes, "
               f"{self.free_bytes:,} bytes free (short by {self.shortfall_bytes:,} bytes)")
        super().__init__(msg + (f"; {hint}" if hint else ""))

    @property
    def shortfall_bytes(self) -> int:
        return max(self.requested_bytes - self.free_bytes, 0)


@dataclass(frozen=True)
class Allocation:
    """A tensor placed in SRAM: a run of ``words[i]`` addresses from ``start[i]`` in slice ``slices[i]``."""

    name: str
    nbytes: int
    slices: tuple[int, ...]
    start: tuple[int, ...]
    words: tuple[int, ...]

    @property
    def n_words(self) -> int:
        return sum(self.words)


class SRAM:
    """One chip's SRAM as the TSP organises it: ``mem_slices`` x ``mem_words_per_slice`` x 320-byte words.

    Parameters
    ----------
    chip : ChipSpec or str
        The chip (default LPU v1). A what-if chip with more SRAM is
        ``dataclasses.replace(lpu.hardware.get("lpu-v1"), mem_words_per_slice=...)``.

    Examples
    --------
    >>> s = SRAM("lpu-v1")
    >>> a = s.alloc("wq", 4096 * 4096)       # spread over all 88 slices
    >>> round(s.stream_time_s("wq") * 1e6, 2)   # microseconds to stream it once
    0.91
    """

    def __init__(self, chip: hardware.ChipSpec | str = "lpu-v1", name: str = ""):
        self.chip = hardware.get(chip)
        if not isinstance(self.chip, hardware.ChipSpec):
            raise ValueError(f"SRAM needs an LPU chip spec, got {self.chip.name!r}")
        self.name = name or self.chip.name
        self.allocations: dict[str, Allocation] = {}
        # Free runs per slice, as sorted [start, end) address pairs.
        self._free: list[list[tuple[int, int]]] = [[(0, self.chip.mem_words_per_slice)] for _ in range(self.chip.mem_slices)]

    # ---- bookkeeping --------------------------------------------------------
    @property
    def capacity_bytes(self) -> int:
        return self.chip.sram_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes occupied, counting whole words."""
        return sum(a.n_words for a in self.allocations.values()) * self.chip.word_bytes

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes

    def _largest_run(self, s: int) -> tuple[int, int]:
        return max(self._free[s], key=lambda r: (r[1] - r[0], -r[0]), default=(0, 0))

    def alloc(self, name: str, nbytes: int, slices: range | list[int] | None = None) -> Allocation:
        """Place ``nbytes`` as tensor ``name`` in whole words spread evenly over ``slices``.

        Each slice gets one contiguous run of addresses; with ``slices=None`` the
        tensor spreads over every slice (the fastest layout to stream). Where some
        slices are fuller, the others take more (water-filling), so a tensor fits
        whenever the chosen slices have room for it.

        Raises
        ------
        SRAMCapacityError
            Naming the tensor, the bytes asked for and the bytes free.
        """
        if name in self.allocations:
            raise ValueError(f"a tensor named {name!r} is already placed on {self.name}; free it first")
        if not isinstance(nbytes, (int, np.integer)) or nbytes <= 0:
            raise ValueError(f"nbytes for {name!r} must be a positive integer, got {nbytes!r}")
        chosen = list(range(self.chip.mem_slices)) if slices is None else sorted(set(int(s) for s in slices))
        bad = [s for s in chosen if not 0 <= s < self.chip.mem_slices]
        if not chosen or bad:
            raise ValueError(f"slices must be a non-empty subset of 0..{self.chip.mem_slices - 1}, got {bad or 'none'}")
        need = math.ceil(nbytes / self.chip.word_bytes)
        runs = {s: self._largest_run(s) for s in chosen}
        room = np.array([runs[s][1] - runs[s][0] for s in chosen])
        if room.sum() < need:
            free_in_chosen = sum(e - b for s in chosen for b, e in self._free[s]) * self.chip.word_bytes
            hint = "the free space is fragmented" if free_in_chosen >= nbytes else ""
            where = self.name if slices is None else f"{self.name} (in the {len(chosen)} slices asked for)"
            raise SRAMCapacityError(name, need * self.chip.word_bytes, int(room.sum()) * self.chip.word_bytes, where, hint)
        take = _water_fill(room, need)
        placed_slices, starts, words = [], [], []
        for s, w in zip(chosen, take):
            if w == 0:
                continue
            b, e = runs[s]
            self._free[s].remove((b, e))
            if b + w < e:
                self._free[s].append((b + w, e))
                self._free[s].sort()
            placed_slices.append(s), starts.append(b), words.append(int(w))
        a = Allocation(name, int(nbytes), tuple(placed_slices), tuple(starts), tuple(words))
        self.allocations[name] = a
        return a

    def free(self, name: str) -> None:
        """Release tensor ``name``; its addresses merge back into their slices' free runs."""
        if name not in self.allocations:
            raise KeyError(f"no tensor named {name!r} on {self.name}; placed: {', '.join(self.allocations) or 'none'}")
        a = self.allocations.pop(name)
        for s, b, w in zip(a.slices, a.start, a.words):
            runs = sorted(self._free[s] + [(b, b + w)])
            merged = [runs[0]]
            for rb, re in runs[1:]:
                if rb == merged[-1][1]:
                    merged[-1] = (merged[-1][0], re)
                else:
                    merged.append((rb, re))
            self._free[s] = merged

    def occupancy(self, address_bins: int = 64) -> np.ndarray:
        """Fraction of each address bin in use, per slice: shape (mem_slices, address_bins)."""
        n = self.chip.mem_words_per_slice
        used = np.zeros((self.chip.mem_slices, n), dtype=bool)
        for a in self.allocations.values():
            for s, b, w in zip(a.slices, a.start, a.words):
                used[s, b:b + w] = True
        if n % address_bins:
            raise ValueError(f"address_bins must divide {n}")
        return used.reshape(self.chip.mem_slices, address_bins, n // address_bins).mean(axis=2)

    def owner_map(self, address_bins: int = 64) -> np.ndarray:
        """Index (in placement order) of the tensor owning each bin's first word, -1 where free: (mem_slices, address_bins)."""
        n = self.chip.mem_words_per_slice
        owner = np.full((self.chip.mem_slices, n), -1, dtype=np.int32)
        for i, a in enumerate(self.allocations.values()):
            for s, b, w in zip(a.slices, a.start, a.words):
                owner[s, b:b + w] = i
        return owner[:, :: n // address_bins]

    # ---- streaming ----------------------------------------------------------
    def stream_cycles(self, name: str) -> int:
        """Cycles to stream tensor ``name`` once to the functional units.

        Each slice reads one word per cycle and each stream carries one word per
        cycle, so at most ``min(slices spanned, streams)`` words move per cycle,
        and no faster than the slice holding the most words allows.
        """
        a = self.allocations[name]
        return max(max(a.words), math.ceil(a.n_words / self.chip.streams))

    def stream_time_s(self, name: str) -> float:
        """Seconds to stream tensor ``name`` once, never faster than the chip's SRAM bandwidth."""
        a = self.allocations[name]
        return max(self.stream_cycles(name) / self.chip.clock_hz, a.n_words * self.chip.word_bytes / self.chip.sram_bandwidth_Bps)

    def __repr__(self) -> str:
        return f"SRAM({self.name}: {len(self.allocations)} tensors, {self.used_bytes:,} of {self.capacity_bytes:,} bytes used)"


def _water_fill(room: np.ndarray, need: int) -> np.ndarray:
    """Split ``need`` words over slices with ``room`` words free each, as evenly as room allows.

    Deterministic: the lowest level L with sum(min(room, L)) >= need, the excess
    trimmed from the last slices at that level.
    """
    lo, hi = 0, int(room.max())
    while lo < hi:  # smallest level that holds everything
        mid = (lo + hi) // 2
        if np.minimum(room, mid).sum() >= need:
            hi = mid
        else:
            lo = mid + 1
    take = np.minimum(room, lo)
    excess = int(take.sum()) - need
    for i in np.flatnonzero(take == lo)[::-1][:excess]:
        take[i] -= 1
    return take


def stream_bandwidth_Bps(chip: hardware.ChipSpec | str, slices: int) -> float:
    """Bytes/s a tensor spread evenly over ``slices`` MEM slices streams at."""
    chip = hardware.get(chip)
    if not 1 <= slices <= chip.mem_slices:
        raise ValueError(f"slices must be between 1 and {chip.mem_slices}, got {slices}")
    return min(min(slices, chip.streams) * chip.word_bytes * chip.clock_hz, chip.sram_bandwidth_Bps)


# ---- chips needed -------------------------------------------------------------

# Share of each chip's SRAM not available to weights, KV cache and activations:
# the program's instructions (fetched from MEM into the instruction queues),
# double-buffered C2C receive buffers, and padding of tensors to whole 320-byte
# words across slices. No public figure gives it; 10% is a stated assumption,
# 5-20% its range.
RESERVE_FRACTION = hardware.Range(0.05, 0.10, 0.20, "assumption: program, C2C buffers and word padding; no public figure")


@dataclass(frozen=True)
class ChipsNeeded:
    """Bytes a model needs and the chips that hold them (see `chips_needed`)."""

    model: str
    chip: str
    precision: str
    context_tokens: int
    batch: int
    weight_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    reserve_fraction: float
    sram_bytes_per_chip: int
    chips: int
    chips_per_rack: int
    card_price_usd: float

    @property
    def usable_bytes_per_chip(self) -> float:
        return self.sram_bytes_per_chip * (1 - self.reserve_fraction)

    @property
    def total_bytes(self) -> int:
        """Weights + KV cache + activations (the reserve comes on top, per chip)."""
        return self.weight_bytes + self.kv_cache_bytes + self.activation_bytes

    @property
    def reserve_bytes(self) -> float:
        return self.chips * self.sram_bytes_per_chip * self.reserve_fraction

    @property
    def racks(self) -> int:
        return math.ceil(self.chips / self.chips_per_rack)

    @property
    def card_cost_usd(self) -> float:
        return self.chips * self.card_price_usd

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(total_bytes=self.total_bytes, reserve_bytes=self.reserve_bytes, racks=self.racks, card_cost_usd=self.card_cost_usd)
        return d


def chips_needed(model: models.ModelConfig | str, chip: hardware.ChipSpec | str = "lpu-v1", precision: str | models.Precision = "fp16",
                 context_tokens: int | None = None, batch: int = 1, reserve_fraction: float = RESERVE_FRACTION.nominal,
                 rack: hardware.RackSpec | str = "groqrack") -> ChipsNeeded:
    """Chips whose SRAM holds ``model``'s weights, KV cache for ``batch`` users of ``context_tokens``, and activations.

    Capacity only: the sharding planner (``lpu.shard``) decides how the bytes are
    cut; this is the lower bound any plan must meet. Racks count every chip of a
    rack, spare node included, as Groq's 576-chip system did.

    Examples
    --------
    >>> chips_needed("llama2-70b", precision="int8", context_tokens=4096).chips
    339
    """
    m = models.get(model)
    c = hardware.get(chip)
    if not isinstance(c, hardware.ChipSpec):
        raise ValueError(f"chips_needed sizes LPU SRAM; {c.name!r} is not an LPU chip (known LPU chips: lpu-v1)")
    r = hardware.get(rack)
    p = models.get_precision(precision)
    T = m.seq_len if context_tokens is None else context_tokens
    if not isinstance(T, (int, np.integer)) or not 0 <= T <= m.seq_len:
        raise ValueError(f"context_tokens must be an integer between 0 and {m.name}'s seq_len ({m.seq_len}), got {context_tokens!r}")
    if not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if not 0 <= reserve_fraction < 1:
        raise ValueError(f"reserve_fraction must be in [0, 1), got {reserve_fraction!r}")
    weights = m.weight_bytes(p)
    kv = m.kv_bytes_per_token(p) * T * batch
    act = m.activation_bytes(p, batch, T)
    usable = c.sram_bytes * (1 - reserve_fraction)
    chips = max(1, math.ceil((weights + kv + act) / usable))
    return ChipsNeeded(m.name, c.name, p.name, int(T), int(batch), weights, kv, act, reserve_fraction, c.sram_bytes, chips, r.chips, c.card_price_usd)


def max_users(model: models.ModelConfig | str, chips: int, chip: hardware.ChipSpec | str = "lpu-v1", precision: str | models.Precision = "fp16",
              context_tokens: int | None = None, reserve_fraction: float = RESERVE_FRACTION.nominal) -> int:
    """How many users' KV caches (each ``context_tokens`` long) fit beside the weights on ``chips`` chips; 0 if the weights alone do not fit."""
    m, c, p = models.get(model), hardware.get(chip), models.get_precision(precision)
    T = m.seq_len if context_tokens is None else context_tokens
    one = chips_needed(m, c, p, T, 1, reserve_fraction)
    free = chips * one.usable_bytes_per_chip - one.weight_bytes
    per_user = one.kv_cache_bytes + one.activation_bytes
    return max(int(free // per_user), 0)
