"""Reading recorded events: JSONL or gzipped JSONL, one event a line."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

from isal import igzip, isal_zlib

from detectors.errors import TocsinError

__all__ = ["InputFileError", "iter_blocks", "iter_lines"]


class InputFileError(TocsinError):
    """An input file that cannot be read; the message names the file (and line)."""


def _open(p: Path):
    if not p.is_file():
        raise InputFileError(f"{p}: no such file")
    with open(p, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    # ISA-L's inflate: the same bytes as gzip's, about three times faster
    # (0.17 against 0.51 us a request event of a simulated recording).
    return igzip.open(p, "rb") if gz else open(p, "rb")


_BLOCK = 1 << 18  # (a quarter megabyte: the batches it makes stay in the CPU caches)


def iter_blocks(path: str | Path) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (number of the first line, lines) for a .jsonl or .jsonl.gz file, a quarter megabyte at a time.

    The lines are as in the file without their newline: not stripped, blank
    ones included, numbered from the first on. :func:`iter_lines` line by line.
    """
    p = Path(path)
    try:
        with _open(p) as fh:
            n = 1
            rest = b""
            while chunk := fh.read(_BLOCK):
                lines = (rest + chunk if rest else chunk).split(b"\n")
                rest = lines.pop()
                if lines:
                    yield n, lines
                    n += len(lines)
            if rest:
                yield n, [rest]
    except (OSError, EOFError, zlib.error, isal_zlib.error) as exc:
        raise InputFileError(f"{p}: cannot read: {exc}") from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for every non-blank line of a .jsonl or .jsonl.gz file."""
    for n0, lines in iter_blocks(path):
        for n, line in enumerate(lines, n0):
            line = line.strip()
            if line:
                yield n, line
