"""Small, bounded-memory sketches used by the windowed features.

All hashing is deterministic (:func:`hash64`, no ``hash()``), so a backtest
gives the same numbers on every run whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import math
from binascii import crc_hqx
from bisect import bisect_left
from itertools import accumulate
from operator import itemgetter
from typing import ClassVar
from zlib import crc32

__all__ = [
    "LogHistogram", "HyperLogLog", "SpaceSaving", "SeenFilter", "hash64", "log_bin", "bin_centre",
]

_LOG_K = 1.0 / math.log(1.05)
_bins: dict[float, int] = {}
_MAX_BINS = 1 << 16


_MASK64 = (1 << 64) - 1
# splitmix64 (S. Vigna, public domain): the increment of its state (2**64 / golden ratio)
# and the two multipliers of its output function.
_SM_GAMMA = 0x9E3779B97F4A7C15
_SM_MUL1 = 0xBF58476D1CE4E5B9
_SM_MUL2 = 0x94D049BB133111EB


def hash64(text: str) -> int:
    """The 64-bit hash of a client address: where it goes in the HyperLogLog and the SeenFilter.

    The UTF-8 bytes ``b`` of ``text`` are reduced to 64 bits, ``CRC-32(b)``
    (zlib's), ``CRC-16(b)`` (``binascii.crc_hqx(b, 0)``, XMODEM) and
    ``len(b) mod 2**16`` side by side, then mixed by splitmix64's output
    function (a bijection of 64-bit integers whose every output bit depends
    on every input bit), so that the register index, the rank and the
    filter's three positions, all cut from the result, are spread evenly.

    Why this hash: it is deterministic (no ``PYTHONHASHSEED``), the two CRCs
    run in the standard library's C code (no Python loop over the bytes) and
    are a few lines of C in ``detectors/_native.c`` (the batch path, which
    must give the same values: the tests compare the two). Inputs of
    different lengths (below 64 KiB) never collide, nor do inputs of the same
    length that differ only within 4 consecutive bytes (what a CRC-32
    detects: neighbouring addresses); unrelated inputs of the same length
    collide with odds of about 2**-48 (the tests count collisions).

    It is no cryptographic hash: both CRCs are linear, so whoever chooses
    ``client_ip`` strings freely can solve for strings that collide. What
    that buys: colliding addresses count as one client (a flood from them
    looks like fewer sources: more like an attack, not less) and an address
    made to collide with one seen on earlier days counts as returning (the
    "first-time clients" evidence is weakened, not the rate or latency
    detectors). It needs ``client_ip`` taken from something the client
    controls (a forwarded-for header without a trusted proxy): the README
    says to take it from the connection or the trusted proxy. A keyed or
    cryptographic hash would close it at the cost of a Python loop per event
    on the pure-Python path, or of the hand-written BLAKE2b this replaced.

    >>> hash64("10.0.0.1") == hash64("10.0.0.1") != hash64("10.0.0.2")
    True
    >>> 0 <= hash64("") < 2**64
    True
    """
    b = text.encode()
    z = ((crc32(b) << 32 | crc_hqx(b, 0) << 16 | (len(b) & 0xFFFF)) + _SM_GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * _SM_MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _SM_MUL2) & _MASK64
    return z ^ (z >> 31)


def log_bin(v: float) -> int:
    """The LogHistogram bin of ``v`` (cached: latencies repeat)."""
    b = _bins.get(v)
    if b is None:
        b = int(math.log1p(v) * _LOG_K)
        if len(_bins) >= _MAX_BINS:
            _bins.clear()
        _bins[v] = b
    return b


class LogHistogram:
    """Latency histogram with log-spaced bins (about 2.5% relative error).

    >>> h = LogHistogram()
    >>> for v in range(1, 1001):
    ...     h.add(float(v))
    >>> round(h.quantile(0.95) / 950, 2)
    1.0
    """

    __slots__ = ("bins", "n")
    _K: ClassVar[float] = _LOG_K

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.n = 0

    def add(self, v: float) -> None:
        b = log_bin(v)
        bins = self.bins
        bins[b] = bins.get(b, 0) + 1
        self.n += 1

    def quantile(self, q: float) -> float:
        return self.quantiles((q,))[0]

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """``[quantile(q) for q in qs]``, the bins sorted once."""
        n = self.n
        if not n:
            return [0.0] * len(qs)
        bins = self.bins
        if len(bins) == 1:
            for b in bins:
                return [bin_centre(b)] * len(qs)
        keys = sorted(bins)
        cum = list(accumulate(map(bins.__getitem__, keys)))
        last = len(cum) - 1
        # the first bin where the running count reaches q * n; its centre in value space
        return [bin_centre(keys[min(bisect_left(cum, q * n), last)]) for q in qs]


_centres: dict[int, float] = {}


def bin_centre(b: int) -> float:
    """The value at the centre of LogHistogram bin ``b`` (cached)."""
    v = _centres.get(b)
    if v is None:
        v = math.expm1((b + 0.5) / _LOG_K)
        if len(_centres) >= _MAX_BINS:
            _centres.clear()
        _centres[b] = v
    return v


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
        reg = self.reg
        zeros = reg.count(0)
        left = m - zeros  # registers not counted yet
        if m <= 1 << 12:
            # Every partial sum of 2**-r (r <= 40) below 2**12 is a multiple of
            # 2**-40 under 2**53 of them: exact, so the order does not matter
            # and this equals the register-by-register sum below. (Rank by
            # rank until every register is counted: no max(reg), a Python
            # loop over the bytes.)
            z = float(zeros)
            r = 0
            while left and r < 40:
                r += 1
                k = reg.count(r)
                if k:
                    z += k * 2.0 ** -r
                    left -= k
        if left or m > 1 << 12:  # a rank above 40
            z, zeros = self._sum(reg)
        est = (0.7213 / (1 + 1.079 / m)) * m * m / z
        if est <= 2.5 * m and zeros:
            est = m * math.log(m / zeros)
        return est

    @staticmethod
    def _sum(reg: bytearray) -> tuple[float, int]:
        z = 0.0
        zeros = 0
        for r in iter(reg):  # (mypyc: no native loop over a bytearray)
            z += 2.0 ** -r
            if r == 0:
                zeros += 1
        return z, zeros


def _evict(c: dict[str, int], low: list[str] | None, m: int) -> tuple[list[str], int, int]:
    """Remove from ``c`` the oldest key at the minimum count: (keys still at it, the minimum, its count).

    ``low`` lists the keys at count ``m`` (reversed insertion order) or is
    None; an entry whose count changed since is skipped, and the list is
    rebuilt when it runs out.
    """
    while True:
        if low is None:
            m = min(c.values())
            low = [x for x, v in c.items() if v == m]
            low.reverse()
        victim = low.pop()
        if c[victim] == m:
            return low, m, c.pop(victim)
        if not low:
            low = None


class SpaceSaving:
    """Top-k heavy hitters (Metwally et al.) in k counters.

    When full, a new key takes over the counter of the first key (in
    insertion order) with the smallest count. Counts only grow, so the keys
    at the minimum are listed once (``at_min``, last to evict first) and used
    up before the minimum is looked for again: O(1) amortised per new key
    instead of a scan of the k counters.

    Attributes (detectors/_native.c updates them too): ``k``, the counters;
    ``counts``, key -> count; ``total``, the sum of what was added;
    ``at_min``, the keys whose count was ``min_count`` when listed, in
    reverse insertion order (an entry whose count has grown since is
    skipped), or None when they are to be listed again.
    """

    __slots__ = ("k", "counts", "total", "at_min", "min_count")

    def __init__(self, k: int = 32) -> None:
        self.k = k
        self.counts: dict[str, int] = {}
        self.total = 0
        self.at_min: list[str] | None = None
        self.min_count = 0

    def add(self, key: str, n: int = 1) -> None:
        c = self.counts
        self.total += n
        if key in c:
            c[key] += n
            if n < 0:
                self.at_min = None
        elif len(c) < self.k:
            c[key] = n
            self.at_min = None
        else:
            low, m, old = _evict(c, self.at_min, self.min_count)
            self.at_min, self.min_count = low, m
            v = old + n
            c[key] = v
            if v == m:
                low.insert(0, key)
            elif v < m:
                self.at_min = None
            if not low:
                self.at_min = None

    def top(self, n: int) -> list[tuple[str, int]]:
        # By count descending then key: sorted by key, then stably by count
        # (reverse keeps equal counts in key order); both sorts in C.
        items = sorted(self.counts.items())
        items.sort(key=itemgetter(1), reverse=True)
        return items[:n]

    def share_of_top(self, n: int) -> float:
        if not self.total:
            return 0.0
        return min(1.0, sum(c for _, c in self.top(n)) / self.total)

    def top_and_shares(self, n: int, shares: tuple[int, ...]) -> tuple[list[tuple[str, int]], list[float]]:
        """``top(n)`` and ``[share_of_top(k) for k in shares]`` (each k <= n), sorting once."""
        top = self.top(n)
        total = self.total
        if not total:
            return top, [0.0] * len(shares)
        return top, [min(1.0, sum(c for _, c in top[:k]) / total) for k in shares]


class SeenFilter:
    """Has this client been seen before? Two generations of a growing Bloom filter, rotated.

    Memory grows with the clients seen, not with the number of filters: a
    generation starts as one small slice (``first`` bits) and, each time its
    latest slice holds one client per 16 bits (then about 0.5% false
    positives), gets a new slice twice as large, where the next clients go
    (a scalable Bloom filter, Almeida et al. 2007). A client is seen if any
    slice of either generation holds it. A generation stops growing at
    ``bits`` bits in all; its last slice then fills up past 1 in 16.
    ``rotate`` drops the older generation (every few days of event time).

    The three positions of a client in a slice of m bits (a power of two)
    are bits 0-20, 21-41 and 42-62 of its 64-bit hash, modulo m.

    >>> f = SeenFilter(bits=1 << 20, first=1 << 12)
    >>> f.check_and_add(hash64("10.0.0.1")), f.check_and_add(hash64("10.0.0.1"))
    (False, True)
    >>> for i in range(10_000):
    ...     _ = f.check_and_add(hash64(f"10.1.{i // 256}.{i % 256}"))
    >>> [len(s) * 8 for s in f.cur], f.nbytes()
    ([4096, 8192, 16384, 32768, 65536, 131072], 32256)
    """

    __slots__ = ("bits", "first", "cur", "prev", "fill")

    def __init__(self, bits: int = 1 << 20, first: int = 1 << 12) -> None:
        if bits < 8 or first < 8:
            raise ValueError("a SeenFilter needs at least 8 bits")
        self.bits = bits
        m = 8
        while m * 2 <= min(first, bits):
            m *= 2
        #: Bits of the first slice of a generation: a power of two, at most ``bits``.
        self.first = m
        self.cur: list[bytearray] = [bytearray(m // 8)]
        self.prev: list[bytearray] = []
        #: Clients added to the last slice of ``cur``.
        self.fill = 0

    def nbytes(self) -> int:
        """Bytes held by the two generations' slices."""
        return sum(len(s) for s in self.cur) + sum(len(s) for s in self.prev)

    def check_and_add(self, h: int) -> bool:
        """Return True if the client (its hash64) was seen before; remember it either way."""
        if not _bloom_has(self.cur, h):
            last = self.cur[-1]
            m = len(last) * 8 - 1
            p0, p1, p2 = h & m, (h >> 21) & m, (h >> 42) & m
            last[p0 >> 3] |= 1 << (p0 & 7)
            last[p1 >> 3] |= 1 << (p1 & 7)
            last[p2 >> 3] |= 1 << (p2 & 7)
            self.fill += 1
            if self.fill * 2 >= len(last):
                self.grow()
            return _bloom_has(self.prev, h)
        return True

    def grow(self) -> None:
        """A new slice, twice the last, when the last is full and the generation has room (else nothing)."""
        last = len(self.cur[-1])
        if self.fill * 2 >= last and (sum(len(s) for s in self.cur) + 2 * last) * 8 <= self.bits:
            self.cur.append(bytearray(2 * last))
            self.fill = 0

    def rotate(self) -> None:
        self.prev = self.cur
        self.cur = [bytearray(self.first // 8)]
        self.fill = 0


def _bloom_has(slices: list[bytearray], h: int) -> bool:
    """Whether any slice holds the three positions of hash ``h``."""
    for s in slices:
        m = len(s) * 8 - 1
        p0, p1, p2 = h & m, (h >> 21) & m, (h >> 42) & m
        if s[p0 >> 3] & (1 << (p0 & 7)) and s[p1 >> 3] & (1 << (p1 & 7)) and s[p2 >> 3] & (1 << (p2 & 7)):
            return True
    return False
