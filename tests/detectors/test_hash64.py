"""sketches.hash64, the client hash of the windowed features: fixed values, spread, no collisions on addresses.

(The C copy in detectors/_native.c is compared with it in test_features.py.)
"""

import os
import subprocess
import sys
from binascii import crc_hqx
from zlib import crc32

from detectors.sketches import HyperLogLog, hash64


def splitmix64_output(x):
    """splitmix64's next() on state x, written out as in Vigna's splitmix64.c (a second writing of the mix)."""
    z = (x + 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def test_hash64_is_the_documented_formula():
    for text in ["", "10.0.0.1", "2001:db8::1", "é.例.test", "x" * 70_000]:
        b = text.encode()
        assert hash64(text) == splitmix64_output(crc32(b) * 2**32 + crc_hqx(b, 0) * 2**16 + len(b) % 2**16)


def test_hash64_values_are_fixed():
    """Pinned: a change of hash changes every backtest's distinct and first-time client counts."""
    assert hash64("") == splitmix64_output(0) == 0xE220A8397B1DCDAF  # (splitmix64's first output from seed 0)
    assert [hash64(t) for t in ("10.0.0.1", "2001:db8::1")] == PINNED


PINNED = [0xAA51E1E5EA2C4024, 0x78049FDBD16E5B99]


def test_hash64_does_not_depend_on_pythonhashseed():
    code = "from detectors.sketches import hash64; print(hash64('10.1.2.3'), hash64('例'))"
    outs = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2", "random")
    }
    assert len(outs) == 1


def test_no_collisions_among_addresses_and_an_even_spread():
    v4 = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(200_000)]
    v6 = [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(100_000)]
    hashes = [hash64(t) for t in v4 + v6]
    assert len(set(hashes)) == len(hashes)
    # every bit of the hash set about half the time
    n = len(hashes)
    for bit in range(64):
        ones = sum((h >> bit) & 1 for h in hashes[:20_000])
        assert 9_400 < ones < 10_600, bit
    # the HyperLogLog (registers from the low bits, ranks from the high ones) counts them within its error
    hll = HyperLogLog(10)
    for h in hashes:
        hll.add_hash(h)
    assert abs(hll.count() / n - 1) < 0.08
