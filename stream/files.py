"""Reading recorded events: JSONL or gzipped JSONL, one event a line."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

from detectors.errors import TocsinError

__all__ = ["InputFileError", "iter_lines"]


class InputFileError(TocsinError):
    """An input file that cannot be read; the message names the file (and line)."""


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for every non-blank line of a .jsonl or .jsonl.gz file."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such file")
    try:
        with open(p, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        raw = gzip.open(p, "rb") if gz else open(p, "rb")
        with raw, io.BufferedReader(raw, 1 << 20) if gz else raw as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if line:
                    yield n, line
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{p}: cannot read: {exc}") from None
