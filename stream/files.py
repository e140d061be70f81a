"""Reading recorded events: JSONL or gzipped JSONL, one event a line.

A file that cannot be read to its end (truncated or corrupt gzip data, an
I/O error) gives every complete line before the damage, then raises
:class:`InputFileError` with one line that names the file and the line
where it broke, e.g. ``requests.jsonl.gz:48213: truncated gzip data (the file
ends inside its compressed stream); lines 1-48212 were read``. Lines are bytes: a line that is not UTF-8 is the decoders' to
refuse (it is dead-lettered with its line number, like any bad event).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from isal import isal_zlib

from detectors.errors import TocsinError

__all__ = ["InputFileError", "iter_blocks", "iter_lines"]


class InputFileError(TocsinError):
    """An input file that cannot be read; the message names the file (and line)."""


class _Damaged(Exception):
    """The data ends or breaks here; the message says how (iter_blocks adds file and line)."""


_INFLATE_ERRORS = (cast("type[Exception]", isal_zlib.error), zlib.error)
_BLOCK = 1 << 18  # inflated bytes at a time (a quarter megabyte: the batches it makes stay in the CPU caches)
_READ = 1 << 16  # compressed bytes read at a time


def _inflate(fh: BinaryIO) -> Iterator[bytes]:
    """The inflated bytes of gzip data, member after member, as they come.

    ISA-L's inflate (the same bytes as zlib's, about three times faster),
    driven here rather than through a file object so that everything
    inflated before a truncation or a corrupt block is given out first.
    Zero bytes between members are padding, as gzip(1) and Python's gzip
    module read them.
    """
    d = isal_zlib.decompressobj(31)
    inside = False  # a member has started and not ended
    while data := fh.read(_READ):
        if not inside:
            data = data.lstrip(b"\0")
        while data:
            inside = True
            try:
                out = d.decompress(data, _BLOCK)
            except _INFLATE_ERRORS as exc:
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


def _blocks(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` joined into blocks of at least _BLOCK bytes (the last one shorter); what was joined is given out before an error."""
    pend: list[bytes] = []
    size = 0
    try:
        for piece in pieces:
            pend.append(piece)
            size += len(piece)
            if size >= _BLOCK:
                yield b"".join(pend)
                pend = []
                size = 0
    except _Damaged:
        if pend:
            yield b"".join(pend)
        raise
    if pend:
        yield b"".join(pend)


def _plain(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(_BLOCK):
        yield chunk


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
    try:
        with fh:
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            rest = b""
            for chunk in _blocks(_inflate(fh)) if gz else _plain(fh):
                lines = (rest + chunk if rest else chunk).split(b"\n")
                rest = lines.pop()
                if lines:
                    yield n, lines
                    n += len(lines)
            if rest:
                yield n, [rest]
    except _Damaged as exc:
        raise InputFileError(f"{p}:{n}: {exc}; {_read(n)}") from None
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
