"""Reading recordings: every complete line before a truncation or a corruption, then one clear error."""

from __future__ import annotations

import gzip
import random
import re
import zlib
from pathlib import Path

import orjson
import pytest

from stream.cli import main
from stream.files import InputFileError, iter_blocks, iter_lines

T0 = 1617692400  # 2021-04-06T07:00:00Z


def _requests(n: int, seed: int = 3) -> list[bytes]:
    rnd = random.Random(seed)
    return [orjson.dumps({"ts": T0 + i * 0.5, "service": f"svc-{rnd.randrange(4)}", "status": 200,
                          "latency_ms": round(rnd.uniform(5, 500), 1), "user_agent": "x" * rnd.randrange(200)})
            for i in range(n)]


def _read_until_error(path: Path) -> tuple[list[bytes], str | None]:
    got: list[bytes] = []
    try:
        for n0, lines in iter_blocks(path):
            assert n0 == len(got) + 1
            got.extend(lines)
    except InputFileError as exc:
        return got, str(exc)
    return got, None


def test_a_whole_gzip_file_and_a_plain_one_read_alike(tmp_path):
    lines = _requests(30_000)
    data = b"\n".join(lines)  # no newline after the last line
    (tmp_path / "a.jsonl").write_bytes(data)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data + b"\n"))
    for name in ("a.jsonl", "a.jsonl.gz"):
        got, err = _read_until_error(tmp_path / name)
        assert err is None and got == lines
    assert [n for n, _ in iter_lines(tmp_path / "a.jsonl.gz")] == list(range(1, 30_001))


def test_concatenated_members_and_zero_padding_are_read_as_gzip_reads_them(tmp_path):
    lines = _requests(5000)
    parts = [b"\n".join(lines[i:i + 1000]) + b"\n" for i in range(0, 5000, 1000)]
    blob = b"".join(gzip.compress(p) for p in parts[:3]) + b"\0" * 700 + b"".join(gzip.compress(p) for p in parts[3:])
    (tmp_path / "m.jsonl.gz").write_bytes(blob + b"\0" * 100_000)
    assert gzip.decompress(blob) == b"".join(parts)
    got, err = _read_until_error(tmp_path / "m.jsonl.gz")
    assert err is None and got == lines


def test_a_truncated_gzip_file_gives_every_complete_line_then_the_line_where_it_ends(tmp_path):
    lines = _requests(20_000)
    full = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "requests.jsonl.gz"
    rnd = random.Random(5)
    for cut in sorted({11, 30, len(full) // 2, len(full) - 9, len(full) - 1} | {rnd.randrange(20, len(full)) for _ in range(25)}):
        path.write_bytes(full[:cut])
        got, err = _read_until_error(path)
        # what zlib itself can inflate from the same bytes: the complete lines in it
        available = zlib.decompressobj(31).decompress(full[:cut]).split(b"\n")[:-1]
        assert got == available == lines[:len(got)], cut
        k = len(got)
        assert err is not None and "\n" not in err
        assert re.fullmatch(rf"{re.escape(str(path))}:{k + 1}: truncated gzip data \(the file ends inside its "
                            rf"compressed stream\); (lines 1-{k} were read|no line was read)", err), err
    assert k > 19_000  # the last cut lost only the end


def test_corrupt_gzip_data_is_reported_with_its_line(tmp_path):
    lines = _requests(20_000)
    full = bytearray(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1))
    for i in range(len(full) // 2, len(full) // 2 + 64):
        full[i] ^= 0x5A
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(full))
    got, err = _read_until_error(path)
    # Inflate may give out some garbage before it sees the damage (the CRC at the end sees it at the latest):
    # those lines are dead-lettered as bad JSON; what comes before the damage is intact.
    intact = next(i for i, (a, b) in enumerate(zip(got + [None], lines, strict=False)) if a != b)
    assert intact > 5000
    assert err is not None and err.startswith(f"{path}:{len(got) + 1}: corrupt gzip data") and "\n" not in err


def test_a_missing_or_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(InputFileError, match=r"nope\.jsonl: no such file$"):
        list(iter_lines(tmp_path / "nope.jsonl"))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InputFileError, match="no such file"):
        list(iter_lines(tmp_path / "dir.jsonl"))


def test_backtest_of_a_truncated_file_exits_2_with_file_and_line(tmp_path, capsys):
    lines = _requests(20_000)
    full = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "requests.jsonl.gz"
    path.write_bytes(full[: len(full) * 3 // 4])
    got, _ = _read_until_error(path)
    assert main(["backtest", "--requests", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"tocsin: error: {path}:{len(got) + 1}: truncated gzip data (the file ends inside its "
                   f"compressed stream); lines 1-{len(got)} were read")


def test_non_utf8_lines_are_dead_lettered_with_file_line_and_reason(tmp_path, capsys):
    good = _requests(50)
    req = good[:10] + [b'{"ts": 1617692400, "service": "s\xff\xfe", "status": 200, "latency_ms": 5}', b"\xc3\x28"] + good[10:]
    disk = [orjson.dumps({"ts": T0 + i, "host": "h", "disk": "d", "smart": {"5": 0}}) for i in range(5)]
    disk.insert(2, b'{"ts": 1617692400, "host": "h\x80", "disk": "d", "smart": {"5": 0}}')
    (tmp_path / "r.jsonl").write_bytes(b"\n".join(req) + b"\n")
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(disk) + b"\n")
    out = tmp_path / "out"
    assert main(["backtest", "--requests", str(tmp_path / "r.jsonl"), "--disks", str(tmp_path / "d.jsonl"),
                 "--out", str(out)]) == 0
    assert "55 events replayed" in capsys.readouterr().out
    dead = sorted((orjson.loads(x) for x in (out / "dead-letter.jsonl").read_bytes().splitlines()),
                  key=lambda d: (d["source"]["file"], d["source"]["line"]))
    assert [(Path(d["source"]["file"]).name, d["source"]["line"]) for d in dead] == [
        ("d.jsonl", 3), ("r.jsonl", 11), ("r.jsonl", 12)]
    at_d, at_r = disk[2].index(b"\x80"), req[10].index(b"\xff")
    assert dead[0]["error"] == f"not valid JSON: not UTF-8 (byte 0x80 at offset {at_d})"
    assert dead[1]["error"] == f"not valid JSON: not UTF-8 (byte 0xff at offset {at_r})"
    assert dead[2]["error"] == "not valid JSON: not UTF-8 (byte 0xc3 at offset 0)"
