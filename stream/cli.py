"""The ``tocsin`` command line.

``tocsin demo | worker | backtest | score | simulate | report | silence |
check-config``. Bad arguments or input files exit with status 2 and one line
that says what is wrong and where.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
from pathlib import Path

from detectors.errors import ConfigError, TocsinError
from detectors.timeutil import parse_ts

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise _UsageError(f"{self.prog}: {message}")


def _fail(msg: str) -> int:
    print(f"tocsin: error: {msg}", file=sys.stderr)
    return 2


# -- score -------------------------------------------------------------------
# Values this large are no measurement of anything NAB-like; float32 state and
# squared distances overflow on them, so they are refused with their line.
_SCORE_MAX_ABS = 1e20


def _read_series(path: Path) -> tuple[list[tuple[str, str]], list[float], list[float]]:
    """Rows, values and epoch times of a ``timestamp,value`` CSV; ValueError says where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x})") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}:1: empty file, expected a header timestamp,value")
    cols = [h.strip().lower().lstrip("\ufeff") for h in header]
    if "timestamp" not in cols or "value" not in cols:
        raise ValueError(f"{path}:1: header must have timestamp and value columns, got {','.join(header)}")
    it, iv = cols.index("timestamp"), cols.index("value")
    rows: list[tuple[str, str]] = []
    values: list[float] = []
    stamps: list[float] = []
    for n, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) <= max(it, iv):
            raise ValueError(f"{path}:{n}: expected {len(header)} columns, got {len(row)}")
        ts_s, v_s = row[it], row[iv]
        try:
            v = float(v_s)
        except ValueError:
            raise ValueError(f"{path}:{n}: value {v_s!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{path}:{n}: value {v_s!r} is not a finite number")
        if abs(v) >= _SCORE_MAX_ABS:
            raise ValueError(f"{path}:{n}: value {v_s!r} is out of range (|value| >= 1e20)")
        try:
            t = parse_ts(ts_s.strip().replace(" ", "T") + ("" if _has_tz(ts_s) else "Z"))
        except ValueError:
            try:
                t = float(ts_s)
            except ValueError:
                t = math.nan
            if not math.isfinite(t):
                raise ValueError(f"{path}:{n}: timestamp {ts_s!r} is not a time") from None
        rows.append((ts_s, v_s))
        values.append(v)
        stamps.append(t)
    return rows, values, stamps


def _cmd_score(args: argparse.Namespace) -> int:
    from detectors.river_adapter import make_series_scorer

    try:
        scorer = make_series_scorer(args.detector)
    except ConfigError as exc:
        return _fail(f"--detector: {exc}")
    try:
        rows, values, stamps = _read_series(Path(args.input))
    except ValueError as exc:
        return _fail(str(exc))
    scores = [scorer.score_learn_one(v, t) for v, t in zip(values, stamps, strict=True)]
    try:
        out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    except OSError as exc:
        return _fail(f"{args.output}: cannot write: {exc.strerror}")
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["timestamp", "value", "anomaly_score"])
        for (ts_s, v_s), s in zip(rows, scores, strict=True):
            w.writerow([ts_s, v_s, f"{s:.6f}"])
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _has_tz(s: str) -> bool:
    s = s.strip()
    return s.endswith(("Z", "z")) or (len(s) > 19 and ("+" in s[19:] or "-" in s[19:]))


# -- backtest ----------------------------------------------------------------
def _cmd_backtest(args: argparse.Namespace) -> int:
    from .backtest import run_backtest
    from .engine import Engine
    from .files import InputFileError
    from .settings import load_config

    if not args.requests and not args.disks:
        return _fail("backtest: give --requests FILE, --disks FILE or both")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        res = run_backtest(args.requests, args.disks, args.out, Engine(cfg.detectors, cfg.alerting))
    except InputFileError as exc:
        return _fail(str(exc))
    print(res.summary())
    out = Path(args.out)
    print(f"wrote {out / 'anomalies.jsonl'}, {out / 'alerts.jsonl'} and {out / 'notifications.jsonl'}")
    if res.events == 0 and res.invalid:
        return _fail(f"{res.first_error} (and every other line: no valid event in the input)")
    return 0


# -- report ------------------------------------------------------------------
def _cmd_report(args: argparse.Namespace) -> int:
    from .files import InputFileError
    from .tools.report import write_report

    try:
        path = write_report(args.folder, args.out, args.timezone)
    except InputFileError as exc:
        return _fail(str(exc))
    print(f"wrote {path}")
    return 0


# -- config ------------------------------------------------------------------
def _cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the file, then the secrets the worker will read at start (receivers, web token, SASL)."""
    from .settings import config_problems, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    name = args.config or "(defaults)"
    problems = config_problems(cfg)
    if problems:
        return _fail(f"{name}: " + "; ".join(problems))
    writes = "on (bearer token)" if cfg.web.write_token() is not None else "off (no token)"
    print(f"{name}: OK; broker: {cfg.kafka.bootstrap_servers or 'embedded tansu'}; "
          f"receivers: {', '.join(r.name for r in cfg.alerting.receivers)}; "
          f"web API on {cfg.web.host}:{cfg.web.port}, writes {writes}")
    return 0


def _version() -> str:
    from .metrics import tocsin_version

    return tocsin_version()


# -- worker / demo -------------------------------------------------------------
def _cmd_worker(args: argparse.Namespace) -> int:
    from .worker import run_worker

    try:
        return run_worker(args.config, loglevel=args.loglevel)
    except ConfigError as exc:
        return _fail(f"worker: {exc}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    return run_demo(args)


def _cmd_silence(args: argparse.Namespace) -> int:
    from .settings import load_config
    from .silences import run_silence

    return run_silence(args, load_config(args.config))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .tools import simulator

    return simulator.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tocsin", description="Anomaly detection and alerting on request and disk-health streams.")
    p.add_argument("--version", action="version", version=f"tocsin {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="the whole system on the embedded broker, with a simulated incident day")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--history-days", type=int, default=4, help="simulated days learned before the incident day")
    d.add_argument("--scale", type=float, default=3.0, help="requests per second of a service at its weekday peak")
    d.set_defaults(func=_cmd_demo)

    w = sub.add_parser("worker", help="the Faust worker, on the configured broker or the embedded one")
    w.add_argument("--config", help="YAML configuration file (or TOCSIN_CONFIG)")
    w.add_argument("--loglevel", default="info")
    w.set_defaults(func=_cmd_worker)

    b = sub.add_parser("backtest", help="replay recorded events through the detectors, diagnosis and router")
    b.add_argument("--requests", metavar="FILE", help="request events, .jsonl or .jsonl.gz")
    b.add_argument("--disks", metavar="FILE", help="disk-health events, .jsonl or .jsonl.gz")
    b.add_argument("--out", metavar="DIR", required=True)
    b.add_argument("--config", metavar="FILE")
    b.set_defaults(func=_cmd_backtest)

    s = sub.add_parser("score", help="score one metric series (NAB format)")
    s.add_argument("input", metavar="IN.csv")
    s.add_argument(
        "--detector", default="tocsin",
        help="tocsin (default), traffic, latency, or river:<Class>[:<json params>] of river.anomaly",
    )
    s.add_argument("-o", "--output", metavar="OUT.csv")
    s.set_defaults(func=_cmd_score)

    rp = sub.add_parser("report", help="an HTML page of a backtest folder: signals, bands, anomalies, alerts by cause")
    rp.add_argument("folder", metavar="BACKTEST_DIR", help="the --out folder of tocsin backtest")
    rp.add_argument("--out", metavar="FILE.html", help="default: BACKTEST_DIR/report.html")
    rp.add_argument("--timezone", default="UTC", help="time zone of the times shown (default UTC)")
    rp.set_defaults(func=_cmd_report)

    c = sub.add_parser("check-config", help="validate a configuration file and the secrets it names")
    c.add_argument("config", nargs="?")
    c.set_defaults(func=_cmd_check_config)

    si = sub.add_parser("silence", help="add, expire or list silences (the silences topic)")
    si.add_argument("--config", metavar="FILE")
    si.add_argument("--bootstrap-servers", metavar="HOST:PORT")
    sis = si.add_subparsers(dest="action", required=True, parser_class=_Parser)
    add = sis.add_parser("add", help="silence the alerts matching all the matchers")
    add.add_argument("--matcher", "-m", action="append", required=True, help='e.g. service="ent-idf" (repeat)')
    add.add_argument("--duration", default="2h", help="how long (default 2h)")
    add.add_argument("--ends-at", help="RFC 3339 end instead of --duration")
    add.add_argument("--author", required=True)
    add.add_argument("--comment", required=True)
    add.add_argument("--match-all", action="store_true", help="allow a silence that matches every alert")
    exp = sis.add_parser("expire", help="end a silence now")
    exp.add_argument("id")
    sis.add_parser("list", help="all silences with their state")
    si.set_defaults(func=_cmd_silence)

    from .tools import simulator

    sim = sub.add_parser("simulate", help="generate school-platform traffic with an incident day")
    simulator.add_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .engine import tune_gc

    tune_gc()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # bare ``tocsin``: what it can do
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version: printed, done
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _fail(str(exc))
    except TocsinError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and friends
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
