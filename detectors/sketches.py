"""Small, bounded-memory sketches used by the windowed features.

All hashing is deterministic (blake2b), so a backtest gives the same numbers
on every run whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import math
from hashlib import blake2b

__all__ = ["LogHistogram", "HyperLogLog", "SpaceSaving", "SeenFilter", "hash64"]


def hash64(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")


class LogHistogram:
    """Latency histogram with log-spaced bins (about 2.5% relative error).

    >>> h = LogHistogram()
    >>> for v in range(1, 1001):
    ...     h.add(float(v))
    >>> round(h.quantile(0.95) / 950, 2)
    1.0
    """

    __slots__ = ("bins", "n")
    _K = 1.0 / math.log(1.05)

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.n = 0

    def add(self, v: float) -> None:
        b = int(math.log1p(v) * self._K)
        bins = self.bins
        bins[b] = bins.get(b, 0) + 1
        self.n += 1

    def quantile(self, q: float) -> float:
        if not self.n:
            return 0.0
        target = q * self.n
        acc = 0
        for b in sorted(self.bins):
            acc += self.bins[b]
            if acc >= target:
                # centre of the bin in value space
                return math.expm1((b + 0.5) / self._K)
        return math.expm1((max(self.bins) + 0.5) / self._K)


class HyperLogLog:
    """Distinct count with 2**p registers (p=10: 1 KiB, about 3% error)."""

    __slots__ = ("p", "m", "reg")

    def __init__(self, p: int = 10) -> None:
        self.p = p
        self.m = 1 << p
        self.reg = bytearray(self.m)

    def add_hash(self, h: int) -> None:
        idx = h & (self.m - 1)
        w = h >> self.p
        rank = (64 - self.p) - w.bit_length() + 1
        if rank > self.reg[idx]:
            self.reg[idx] = rank

    def count(self) -> float:
        m = self.m
        z = 0.0
        zeros = 0
        for r in self.reg:
            z += 2.0 ** -r
            if r == 0:
                zeros += 1
        est = (0.7213 / (1 + 1.079 / m)) * m * m / z
        if est <= 2.5 * m and zeros:
            est = m * math.log(m / zeros)
        return est


class SpaceSaving:
    """Top-k heavy hitters (Metwally et al.) in k counters."""

    __slots__ = ("k", "counts", "total")

    def __init__(self, k: int = 32) -> None:
        self.k = k
        self.counts: dict[str, int] = {}
        self.total = 0

    def add(self, key: str, n: int = 1) -> None:
        c = self.counts
        self.total += n
        if key in c:
            c[key] += n
        elif len(c) < self.k:
            c[key] = n
        else:
            victim = min(c, key=c.__getitem__)
            c[key] = c.pop(victim) + n

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def share_of_top(self, n: int) -> float:
        if not self.total:
            return 0.0
        return min(1.0, sum(c for _, c in self.top(n)) / self.total)


class SeenFilter:
    """Has this client been seen before? Two Bloom generations, rotated.

    Memory is fixed (2 x ``bits`` / 8 bytes) whatever the number of clients.
    A client counts as seen if either generation has it; ``rotate`` drops the
    older generation (call it every few days of event time).
    """

    __slots__ = ("bits", "cur", "prev")

    def __init__(self, bits: int = 1 << 20) -> None:
        self.bits = bits
        self.cur = bytearray(bits // 8)
        self.prev = bytearray(bits // 8)

    def _positions(self, h: int) -> tuple[int, int, int]:
        b = self.bits
        return h % b, (h >> 21) % b, (h >> 42) % b

    def check_and_add(self, h: int) -> bool:
        """Return True if the client was seen before; remember it either way."""
        cur, prev = self.cur, self.prev
        seen_cur = seen_prev = True
        for pos in self._positions(h):
            byte, bit = pos >> 3, 1 << (pos & 7)
            if not cur[byte] & bit:
                seen_cur = False
                cur[byte] |= bit
            if not prev[byte] & bit:
                seen_prev = False
        return seen_cur or seen_prev

    def rotate(self) -> None:
        self.prev = self.cur
        self.cur = bytearray(self.bits // 8)
