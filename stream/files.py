"""Reading recorded events: JSONL or gzipped JSONL, one event a line.

A file that cannot be read to its end (truncated or corrupt gzip data, an
I/O error) gives every complete line before the damage, then raises
:class:`InputFileError` with one line that names the file and the line
where it broke, e.g. ``requests.jsonl.gz:48213: truncated gzip data (the
file ends inside its compressed stream); lines 1-48212 were read``. Lines
are bytes: a line that is not UTF-8 is the decoders' to refuse (it is
dead-lettered with its line number, like any bad event).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from isal import igzip, isal_zlib

from detectors.errors import TocsinError

__all__ = ["InputFileError", "iter_blocks", "iter_lines"]


class InputFileError(TocsinError):
    """An input file that cannot be read; the message names the file (and line)."""


def _open(fh: BinaryIO) -> tuple[BinaryIO, bool]:
    """The file's bytes, inflated if it is gzip data; and whether it is."""
    gz = fh.read(2) == b"\x1f\x8b"
    fh.seek(0)
    # ISA-L's inflate: the same bytes as gzip's, faster (benchmarks/README.md).
    return (cast(BinaryIO, igzip.open(fh, "rb")), True) if gz else (fh, False)


_BLOCK = 1 << 18  # (a quarter megabyte: the batches it makes stay in the CPU caches)
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, cast("type[Exception]", isal_zlib.error))


class _Damaged(Exception):
    """The gzip data ends or breaks here; the message says how."""


def _inflate(fh: BinaryIO) -> Iterator[bytes]:
    """The inflated bytes of gzip data, member after member, as they come; _Damaged where it breaks.

    Slower than igzip's reader but it gives out everything inflated before
    the damage, where a read of igzip's raises and drops what that read had
    inflated: iter_blocks takes it up from there to lose no complete line.
    Zero bytes between members are padding, as gzip(1) reads them.
    """
    d = isal_zlib.decompressobj(31)
    inside = False  # a member has started and not ended
    while data := fh.read(1 << 16):
        if not inside:
            data = data.lstrip(b"\0")
        while data:
            inside = True
            try:
                out = d.decompress(data, _BLOCK)
            except _GZIP_ERRORS as exc:
                raise _Damaged(f"corrupt gzip data ({exc})") from None
            if out:
                yield out
            if d.eof:
                inside = False
                data = d.unused_data.lstrip(b"\0")
                d = isal_zlib.decompressobj(31)
            else:
                data = d.unconsumed_tail
    if inside:
        raise _Damaged("truncated gzip data (the file ends inside its compressed stream)")


def _salvage(p: Path, skip: int, n: int, why: str) -> Iterator[tuple[int, list[bytes]]]:
    """The complete lines after the first ``skip`` inflated bytes (line ``n`` on), then the InputFileError."""
    got: list[bytes] = []
    size = 0
    try:
        with open(p, "rb") as fh:
            for piece in _inflate(fh):
                if size + len(piece) > skip:
                    got.append(piece[max(0, skip - size):])
                size += len(piece)
    except _Damaged as exc:
        why = str(exc)
    except OSError as exc:
        why = f"cannot read: {exc.strerror or exc}"
    lines = b"".join(got).split(b"\n")[:-1]  # (the last one is cut)
    if lines:
        yield n, lines
        n += len(lines)
    raise InputFileError(f"{p}:{n}: {why}; {_read(n)}")


def iter_blocks(path: str | Path) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (number of the first line, lines) for a .jsonl or .jsonl.gz file, a quarter megabyte at a time.

    The lines are as in the file without their newline: not stripped, blank
    ones included, numbered from the first on. :func:`iter_lines` line by line.
    A file that breaks off (see the module) gives its complete lines, then
    InputFileError; an incomplete last line of gzip data is not given.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such file")
    try:
        fh = open(p, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot open: {exc.strerror or exc}") from None
    n = 1
    total = 0  # bytes read (inflated)
    rest = b""  # the line not ended yet
    gz = False
    try:
        with fh:
            src, gz = _open(fh)
            with src:
                while chunk := src.read(_BLOCK):
                    total += len(chunk)
                    lines = (rest + chunk if rest else chunk).split(b"\n")
                    rest = lines.pop()
                    if lines:
                        yield n, lines
                        n += len(lines)
                if rest:
                    yield n, [rest]
    except _GZIP_ERRORS as exc:
        if not gz:
            raise
        yield from _salvage(p, total - len(rest), n, f"corrupt gzip data ({exc})")
    except OSError as exc:
        raise InputFileError(f"{p}:{n}: cannot read: {exc.strerror or exc}; {_read(n)}") from None


def _read(n: int) -> str:
    return "no line was read" if n == 1 else f"lines 1-{n - 1} were read"


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for every non-blank line of a .jsonl or .jsonl.gz file."""
    for n0, lines in iter_blocks(path):
        for n, line in enumerate(lines, n0):
            line = line.strip()
            if line:
                yield n, line
