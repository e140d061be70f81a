"""Scale-out: 1 then 2 ``tocsin worker`` processes on 8 partitions, same broker, same events.

    .venv/bin/python benchmarks/scale.py --bootstrap HOST:PORT [-n 300000] [--timeout 300]

Meant for Apache Kafka from ``scripts/kafka-local`` (e.g.
``export TOCSIN_KAFKA_STATE=/tmp/exp/kstate; eval "$(scripts/kafka-local env)"``
then ``--bootstrap "$TOCSIN_TEST_BROKER"``). Without ``--bootstrap`` the
embedded tansu broker is started and stopped at the end; the script says which.
Everything listens on 127.0.0.1.

1. Creates the topics (8 partitions) and preloads N request events (key =
   service) of a simulated afternoon, 13:00 to about 15:00 local on the
   incident day, of 16 synthetic services whose names were picked so that
   the default partitioner puts exactly 2 on each of the 8 partitions (equal
   load), plus a credential-stuffing flood on one of them (14:00-14:15) so
   one alert fires (its partition gets ~60% more events than the others). The rate is scaled with N so the data always covers the
   same two hours (the detectors need ~30 windows of history).
2. Three runs, each with a fresh app id (= fresh consumer groups) and its own
   output topics, all on the same requests topic; the workers are
   subprocesses with a config file (partitions 8, free ports for the web and
   metrics endpoints, 127.0.0.1):
   (a) 1 ``tocsin worker``;
   (b) 2 ``tocsin worker`` started together: the first to join takes all 8
       partitions and starts reading, the second joins a moment later and
       the group rebalances while events are being read (as in production);
   (c) 2 workers whose reader is gated: this script's ``--child`` mode runs
       what ``tocsin worker`` runs (stream/worker.py) but makes the request
       reader wait for a file that is created once both workers have logged
       disjoint partitions covering 0-7 and nothing changed for a second; so
       (c) measures 2 workers on a settled group, without the rebalance.
   On the embedded broker, (a) and (b) also use ``--child`` (which passes the
   embedded-broker settings that ``tocsin worker`` applies only to the broker
   it starts itself).
   Progress is the sum over the workers of ``tocsin_events_total{topic=
   <requests>}`` from their Prometheus endpoints, sampled every 50 ms: the
   reader adds each batch there as it is processed, so it is fine-grained
   (committed offsets move only every 5 s). Time runs from the first sample
   that sees an event to the first that sees N (the events already counted at
   the first sample are left out of the count). Events read twice (after a
   rebalance) make that sum reach N early, so the end is also taken when the
   committed offsets of the ``<app id>-requests`` group reach the end of all
   8 partitions (they are committed only after the models are checkpointed,
   so the checks below see the final checkpoints). The workers' CPU time
   (/proc) and the machine's over the same interval are printed with it.
3. Checks the state of each run:
   - partitions: each worker's last ``reading <topic> partitions [...]`` log
     line (INFO, stream.reader) gives what it read at the end; they must be
     disjoint and cover 0-7; more than one such line per worker = rebalance.
     From the times of those lines: how long a partition was held by two
     readers at once (a reader keeps its partitions until it logs new ones).
   - events read: the metrics sum at the end minus N = events read twice.
   - checkpoints: every record of ``<app id>-models-changelog`` has a key
     ``r<p>/<kind>:<service>...`` whose ``p`` is the partition the service's
     events are in (read back from the requests topic) and sits in changelog
     partition ``p``; every service has checkpoints.
   - alert: the ``alerts`` topic of the run holds exactly one ``firing``
     record for the flooded service (and lists any other firing alert).
4. Prints events/s of the three runs and the speed-ups (b)/(a) and (c)/(a)
   measured in this one run. The exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import orjson  # noqa: E402
from e2e import first_requests, preload  # noqa: E402

from stream.broker import create_topics, free_port, given_or_embedded  # noqa: E402
from stream.tools.simulator import Incident, Scenario, ServiceSpec  # noqa: E402

PARTITIONS = 8
PER_PARTITION = 2  # services per partition: 16 services
DAY = (2021, 4, 6)
TZ = "Europe/Paris"
START, FLOOD = "13:00", ("14:00", "14:15")
BASE_N, BASE_SCALE = 300_000, 4.0  # 300k events at scale 4 span 13:00-14:55 local
POLL = 0.05

LOGTIME = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
PAUSED = re.compile(r"paused reading (\S+) partitions")
READING = re.compile(r"reading (\S+) partitions \[([\d, ]*)\] \(lost \[([\d, ]*)\], gained \[([\d, ]*)\]\)")


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def _local(hm: str) -> float:
    h, m = (int(x) for x in hm.split(":"))
    return datetime(*DAY, h, m, tzinfo=ZoneInfo(TZ)).timestamp()


# -- data ----------------------------------------------------------------------
def balanced_services(partitions: int = PARTITIONS, per_partition: int = PER_PARTITION) -> list[str]:
    """Service names ``ent-NN`` that the default (murmur2) partitioner spreads evenly."""
    from stream.broker import default_partition

    by: dict[int, list[str]] = defaultdict(list)
    names: list[str] = []
    i = 0
    while len(names) < partitions * per_partition:
        name = f"ent-{i:02d}"
        i += 1
        p = default_partition(name.encode(), partitions)
        if len(by[p]) < per_partition:
            by[p].append(name)
            names.append(name)
    return names


def scale_requests(n: int, services: list[str], flood: str) -> list[tuple[bytes, bytes]]:
    """``n`` request events (key = service) from 13:00 local, with a flood on ``flood`` at 14:00-14:15."""
    sc = Scenario(history_days=0, scale=BASE_SCALE * n / BASE_N,
                  services=tuple(ServiceSpec(s, "synthetic", hosts=3) for s in services),
                  incidents=(Incident("scale-flood", "suspected_attack", flood, _local(FLOOD[0]), _local(FLOOD[1]),
                                      description="credential-stuffing flood (benchmarks/scale.py)"),))
    return first_requests(sc, _local(START), n, "the simulated afternoon")


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of ``topic`` as (partition, key, value), from the beginning to the current end."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise SystemExit(f"could not read {topic} to its end within {timeout:.0f} s")
            for tp, recs in c.poll(timeout_ms=500, max_records=100_000).items():
                out.extend((tp.partition, r.key, r.value) for r in recs)
        return out
    finally:
        c.close()


def committed_behind(bootstrap: str, group: str, topic: str) -> int:
    """Events of ``topic`` not yet covered by ``group``'s committed offsets."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = c.end_offsets(tps)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        c.close()
        admin.close()


# -- workers -------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log: Path
    metrics_port: int
    assignments: list[tuple[float, list[int], list[int], list[int]]] = field(default_factory=list)
    revocations: list[float] = field(default_factory=list)  # wall times the Faust group revoked partitions
    _read: int = 0

    def events(self, topic: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return None
        prefix = f'tocsin_events_total{{topic="{topic}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix):])
        return 0.0

    def scan_log(self, now: float) -> None:
        """Note the new ``reading ... partitions`` lines (wall time from the log line)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._read)
                chunk = fh.read()
        except OSError:
            return
        cut = chunk.rfind(b"\n") + 1
        self._read += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            m = READING.search(line)
            paused = PAUSED.search(line)
            revoked = "Revoking previously assigned partitions" in line and "set()" not in line
            if m or paused or revoked:
                ts = LOGTIME.match(line)
                t = datetime.strptime(ts.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if ts else now
                if m:
                    self.assignments.append((t, _ints(m.group(2)), _ints(m.group(3)), _ints(m.group(4))))
                elif paused:
                    # The reader stops at a revocation: it holds nothing until its next assignment.
                    self.assignments.append((t, [], [], []))
                else:
                    self.revocations.append(t)

    def cpu(self) -> float:
        """CPU seconds (user + system) the worker process used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def write_config(path: Path, bootstrap: str, app_id: str, topics: dict[str, str], web_port: int, metrics_port: int) -> None:
    lines = ["kafka:", f"  bootstrap_servers: {bootstrap!r}", f"  group_id: {app_id!r}",
             f"  client_id: {app_id!r}", f"  partitions: {PARTITIONS}", "topics:"]
    lines += [f"  {k}: {v!r}" for k, v in topics.items()]
    lines += ["web:", "  host: '127.0.0.1'", f"  port: {web_port}",
              "metrics:", "  host: '127.0.0.1'", f"  port: {metrics_port}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_worker(name: str, config: Path, logdir: Path, metrics_port: int, *, cli: bool, embedded: bool,
                 gate: Path | None) -> Worker:
    """``tocsin worker --config`` (cli) or this script's ``--child`` (embedded broker settings, optional gate)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOCSIN_KAFKA_", "TOCSIN_METRICS_")) and k != "TOCSIN_CONFIG"}
    log = logdir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - the child owns it
    if cli:
        tocsin = Path(sys.executable).with_name("tocsin")
        cmd = [str(tocsin)] if tocsin.exists() else [sys.executable, "-m", "stream.cli"]
        cmd += ["worker", "--config", str(config), "--loglevel", "info"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)]
        cmd += ["--embedded"] if embedded else []
        cmd += ["--gate", str(gate)] if gate else []
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=ROOT, env=env, start_new_session=True)
    fh.close()
    return Worker(name, proc, log, metrics_port)


def child(config: str, embedded: bool, gate: str | None) -> int:
    """What ``tocsin worker`` runs (stream/worker.py), plus the embedded-broker settings and an optional gate.

    With ``gate``, the request reader starts reading only once that file
    exists: Faust joins the group, recovers the tables and the reader takes
    its partitions as usual, but no event is read before the parent has seen
    the group settle (so a rebalance does not fall inside the measurement).
    """
    import asyncio

    from stream.app import TocsinApp
    from stream.settings import load_config
    from stream.worker import serve

    cfg = load_config(config)
    tapp = TocsinApp(cfg, cfg.kafka.bootstrap_servers, embedded=embedded, web=True)
    if gate and tapp.reader is not None:
        reader, run = tapp.reader, tapp.reader.run

        async def gated_run() -> None:
            while not os.path.exists(gate):
                await asyncio.sleep(0.02)
            logging.getLogger("stream.reader").info("gate open: reading starts")
            await run()

        reader.run = gated_run  # type: ignore[method-assign]
    print(f"scale.py child worker: broker {cfg.kafka.bootstrap_servers}, gate {gate}", file=sys.stderr)
    return serve(tapp, cfg, "info", label="scale.py child worker")


def stop_workers(workers: list[Worker], grace: float = 20.0) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(w.proc.pid, signal.SIGKILL)  # its own session: only its processes
            except ProcessLookupError:
                pass
            w.proc.wait(timeout=10)


# -- one run -------------------------------------------------------------------
Assignment = tuple[float, list[int], list[int], list[int]]  # wall time, partitions, lost, gained


@dataclass
class Run:
    label: str
    workers: int
    app_id: str
    topics: dict[str, str]
    gated: bool = False
    events: int = 0
    seconds: float = 0.0
    durable_seconds: float = 0.0
    startup: float = 0.0
    first_sample: float = 0.0
    final_sum: float = 0.0
    t_first_wall: float = 0.0
    t_stop_wall: float = 0.0
    t_gate_wall: float = 0.0
    worker_cores: float = 0.0
    machine_cores: float = 0.0
    per_worker: list[float] = field(default_factory=list)
    assignments: list[list[Assignment]] = field(default_factory=list)
    revocations: list[list[float]] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all users (Linux /proc/stat)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    tck = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v) - idle) / tck, sum(v) / tck


def _settled(workers: list[Worker]) -> bool:
    """Every worker has taken partitions and their latest sets are disjoint and cover 0-7."""
    if not all(w.assignments for w in workers):
        return False
    last = [set(w.assignments[-1][1]) for w in workers]
    return sum(map(len, last)) == PARTITIONS and set().union(*last) == set(range(PARTITIONS))


def run_workers(label: str, k: int, bootstrap: str, names: str, n: int, logdir: Path, timeout: float, *,
                cli: bool, embedded: bool, gated: bool) -> Run:
    app_id = f"{names}-{label}"
    topics = {"requests": f"{names}-requests", "disk_health": f"{app_id}-disk", "anomalies": f"{app_id}-anomalies",
              "alerts": f"{app_id}-alerts", "dead_letter": f"{app_id}-dead-letter", "silences": f"{app_id}-silences"}
    create_topics(bootstrap, [v for key, v in topics.items() if key != "requests"], partitions=PARTITIONS)
    run = Run(label, k, app_id, topics, gated=gated)
    req = topics["requests"]
    gate = logdir / f"{app_id}.go" if gated else None
    workers: list[Worker] = []
    try:
        for i in range(k):
            web, met = free_port(), free_port()
            cfg = logdir / f"{app_id}-{i + 1}.yaml"
            write_config(cfg, bootstrap, app_id, topics, web, met)
            workers.append(start_worker(f"{app_id}-{i + 1}", cfg, logdir, met, cli=cli, embedded=embedded, gate=gate))
        t_start = time.perf_counter()
        deadline = time.monotonic() + timeout
        t_first = c_first = None
        settled_since = None
        total = 0.0
        while True:
            now = time.perf_counter()
            counts = [w.events(req) for w in workers]
            for w in workers:
                w.scan_log(time.time())
                if w.proc.poll() is not None:
                    raise SystemExit(f"worker {w.name} exited with {w.proc.returncode}:\n{w.tail()}")
            if gate is not None and not gate.exists():
                if not _settled(workers):
                    settled_since = None
                elif settled_since is None:
                    settled_since = now
                elif now - settled_since >= 1.0:  # no new assignment for a second
                    gate.touch()
                    run.t_gate_wall = time.time()
            total = sum(c or 0.0 for c in counts)
            if t_first is None and total > 0:
                t_first, c_first = now, total
                run.t_first_wall = time.time()
                cpu0, busy0 = sum(w.cpu() for w in workers), machine_busy()
            if total >= n:
                cpu1, busy1 = sum(w.cpu() for w in workers), machine_busy()
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: only {total:.0f}/{n} events within {timeout:.0f} s\n"
                                 + "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers))
            time.sleep(POLL)
        t_end = time.perf_counter()
        run.worker_cores = (cpu1 - cpu0) / (t_end - t_first)
        run.machine_cores = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
        # Durable end: the offsets committed (after the checkpoints) reach the end of every partition.
        while (behind := committed_behind(bootstrap, f"{app_id}-requests", req)) > 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: committed offsets still {behind} events behind after {timeout:.0f} s")
            time.sleep(0.25)
        run.durable_seconds = time.perf_counter() - t_first
        time.sleep(0.5)
        run.per_worker = [w.events(req) or 0.0 for w in workers]
        for w in workers:
            w.scan_log(time.time())
        run.final_sum = sum(run.per_worker)
        run.events = int(n - c_first)
        run.seconds = t_end - t_first
        run.startup = t_first - t_start
        run.first_sample = c_first
        run.assignments = [list(w.assignments) for w in workers]
        run.revocations = [list(w.revocations) for w in workers]
    finally:
        run.t_stop_wall = time.time()
        stop_workers(workers)
        run.exit_codes = [w.proc.returncode for w in workers]
    return run


# -- checks --------------------------------------------------------------------
def held_twice(run: Run) -> dict[int, float]:
    """Seconds during which each partition was held by two readers at once, from their log lines.

    A reader holds its partitions from one ``reading ... partitions`` line to
    its next one, or to its ``paused reading`` line (at a revocation), or to
    the end of the run. Gated runs count from the opening of the gate.
    """
    since = run.t_gate_wall  # gated: nothing is read before the gate opens
    spans: list[list[tuple[float, float, set[int]]]] = []
    for seen in run.assignments:
        spans.append([(t, seen[i + 1][0] if i + 1 < len(seen) else run.t_stop_wall, set(parts))
                      for i, (t, parts, _l, _g) in enumerate(seen)])
    out: dict[int, float] = defaultdict(float)
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            for s0, e0, p0 in spans[a]:
                for s1, e1, p1 in spans[b]:
                    d = min(e0, e1) - max(s0, s1, since)
                    if d > 0:
                        for p in p0 & p1:
                            out[p] += d
    return dict(out)


#: A revoked reader checkpoints, flushes and commits (under its lock: no batch
#: is processed meanwhile) before it logs its pause; this long is allowed.
PAUSE_WITHIN = 1.0


def check_partitions(run: Run) -> tuple[bool, list[str]]:
    lines: list[str] = []
    finals: list[set[int]] = []
    for i, seen in enumerate(run.assignments, 1):
        if not seen:
            lines.append(f"worker {i}: no 'reading ... partitions' log line")
            finals.append(set())
            continue
        hist = "; ".join(f"{t - run.t_first_wall:+.1f} s: {parts} (lost {lost}, gained {gained})"
                         for t, parts, lost, gained in seen)
        lines.append(f"worker {i}: {len(seen)} assignment(s) (log time from the first event): {hist}")
        finals.append(set(seen[-1][1]))
    union = set().union(*finals)
    disjoint = sum(len(f) for f in finals) == len(union)
    ok = disjoint and union == set(range(PARTITIONS))
    split = " | ".join(f"worker {i}: {sorted(f)}" for i, f in enumerate(finals, 1))
    lines.append(f"final split: {split}  -> {'disjoint' if disjoint else 'OVERLAPPING'}, "
                 f"{'covers all 8' if union == set(range(PARTITIONS)) else f'covers only {sorted(union)}'}: "
                 f"{'OK' if ok else 'FAIL'}")
    late = []
    for i, (seen, revs) in enumerate(zip(run.assignments, run.revocations, strict=True), 1):
        for tr in revs:
            nxt = next((a for a in seen if a[0] >= tr), None)
            if nxt is None:
                late.append(f"worker {i}: revoked at {tr - run.t_first_wall:+.1f} s, no new assignment logged before the stop")
            elif nxt[0] - max(tr, run.t_gate_wall) > PAUSE_WITHIN:
                late.append(f"worker {i}: kept reading its partitions for {nxt[0] - tr:.1f} s after the group revoked "
                            f"them at {tr - run.t_first_wall:+.1f} s (what it read then is read again from the "
                            f"offsets committed at the revocation: lost {nxt[2]} by the new owner, kept ones by itself)")
    if late:
        lines += late
    twice = held_twice(run)
    if len(run.assignments) > 1:
        lines.append("partitions held by two readers at once (between the two log lines): "
                     + (", ".join(f"{p}: {s:.1f} s" for p, s in sorted(twice.items())) if twice else "none")
                     + f": {'FAIL' if twice else 'OK'}")
    return ok and not twice and not late, lines


def check_checkpoints(bootstrap: str, run: Run, service_partition: dict[str, int]) -> tuple[bool, list[str]]:
    recs = read_topic(bootstrap, f"{run.app_id}-models-changelog")
    kinds: Counter[str] = Counter()
    services: dict[str, set[int]] = defaultdict(set)
    wrong: list[str] = []
    other = 0
    for part, key, _value in recs:
        k = (key or b"").decode(errors="replace")
        m = re.match(r"r(\d+)/([^:]+):([^|]+)", k)
        if not m:
            other += 1
            continue
        p, kind, svc = int(m.group(1)), m.group(2), m.group(3)
        kinds[kind] += 1
        services[svc].add(p)
        if p != service_partition.get(svc) or part != p:
            wrong.append(f"{k} in changelog partition {part} (events of {svc} are in partition {service_partition.get(svc)})")
    missing = sorted(set(service_partition) - set(services))
    ok = not wrong and not missing and bool(recs)
    lines = [f"models changelog: {len(recs)} records ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}"
             f"{f', {other} other' if other else ''}) for {len(services)}/{len(service_partition)} services; "
             f"under the partition of the service's events and in that changelog partition: "
             f"{'all' if not wrong else f'{len(wrong)} NOT'}; services without checkpoint: {missing or 'none'}: "
             f"{'OK' if ok else 'FAIL'}"]
    lines += [f"  wrong: {w}" for w in wrong[:10]]
    return ok, lines


def check_alert(bootstrap: str, run: Run, flood: str) -> tuple[bool, list[str]]:
    firing: Counter[tuple[str, str]] = Counter()
    resolved: Counter[str] = Counter()
    for _p, _k, v in read_topic(bootstrap, run.topics["alerts"]):
        rec = orjson.loads(v)
        svc = (rec.get("labels") or {}).get("service") or "?"
        if rec.get("status") == "firing":
            firing[(svc, rec.get("cause") or "?")] += 1
        else:
            resolved[svc] += 1
    flood_firing = sum(c for (s, _), c in firing.items() if s == flood)
    others = {f"{s} ({c})": n for (s, c), n in firing.items() if s != flood}
    ok = flood_firing == 1
    causes = ", ".join(c for (s, c) in firing if s == flood) or "-"
    return ok, [f"alert for the flood on {flood}: raised {flood_firing} time(s) (cause {causes}), "
                f"resolved {resolved.get(flood, 0)}; other firing alerts: {others or 'none'}: {'OK' if ok else 'FAIL'}"]


# -- main ----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="HOST:PORT of a running broker, e.g. Apache Kafka from scripts/kafka-local "
                                        "(default: start the embedded tansu broker)")
    ap.add_argument("-n", "--events", type=int, default=BASE_N)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run (start to durable end)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the three runs this many times (medians printed)")
    ap.add_argument("--logs", help="folder for the workers' configs and logs (default: a temporary one, kept)")
    args = ap.parse_args(argv)

    import tempfile

    logdir = Path(args.logs or tempfile.mkdtemp(prefix="tocsin-scale-"))
    logdir.mkdir(parents=True, exist_ok=True)
    with given_or_embedded(args.bootstrap) as (bootstrap, embedded):
        print(f"broker: {bootstrap} (given with --bootstrap; e.g. Apache Kafka from scripts/kafka-local)"
              if not embedded else f"broker: embedded tansu at {bootstrap} (started by this script)")
        print(f"machine: {os.cpu_count()} cores, shared (the broker, the workers and this script run on them; "
              f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
        names = f"bench-scale-{uuid.uuid4().hex[:8]}"
        services = balanced_services()
        flood = services[0]
        t = time.perf_counter()
        msgs = scale_requests(args.events, services, flood)
        from detectors.timeutil import parse_ts

        last = datetime.fromtimestamp(parse_ts(orjson.loads(msgs[-1][1])["ts"]), ZoneInfo(TZ)).strftime("%H:%M")
        print(f"generated {len(msgs)} request events of {len(services)} services, {START}-{last} local "
              f"(flood on {flood} {FLOOD[0]}-{FLOOD[1]}) in {time.perf_counter() - t:.1f} s")
        req = f"{names}-requests"
        create_topics(bootstrap, [req], partitions=PARTITIONS)
        secs = preload(bootstrap, req, msgs)
        print(f"preloaded into {req} ({PARTITIONS} partitions, key = service) in {secs:.1f} s "
              f"({len(msgs) / secs:,.0f} ev/s)")
        del msgs
        # Where the events of each service really are (read back, not computed).
        per_part: Counter[int] = Counter()
        service_partition: dict[str, int] = {}
        for p, k, _v in read_topic(bootstrap, req, timeout=args.timeout):
            per_part[p] += 1
            svc = (k or b"").decode()
            if service_partition.setdefault(svc, p) != p:
                raise SystemExit(f"service {svc} has events in partitions {service_partition[svc]} and {p}")
        layout = {p: sorted(s for s, q in service_partition.items() if q == p) for p in range(PARTITIONS)}
        print("events per partition: " + ", ".join(f"{p}: {per_part[p]} ({'/'.join(layout[p])})"
                                                      for p in range(PARTITIONS)))
        print(f"worker logs and configs: {logdir}")

        runs: list[Run] = []
        all_ok = True
        plan = [("1w", 1, False, "1 worker (tocsin worker)"),
                ("2w", 2, False, "2 workers started together (tocsin worker), rebalance included"),
                ("2w-gated", 2, True, "2 workers, reading gated until the group settled (--child)")]
        for label, k, gated, title in [(f"{lb}-r{r}" if args.rounds > 1 else lb, k, g, t)
                                       for r in range(1, args.rounds + 1) for lb, k, g, t in plan]:
            cli = not embedded and not gated
            if embedded and not gated:
                title = title.replace("tocsin worker", "--child: tocsin worker + embedded-broker settings")
            run = run_workers(label, k, bootstrap, names, args.events, logdir, args.timeout,
                              cli=cli, embedded=embedded, gated=gated)
            runs.append(run)
            print(f"\n[{title}] app id {run.app_id}", flush=True)
            print(f"  {run.events} events in {run.seconds:.2f} s = {run.rate:,.0f} events/s "
                  f"(first event -> N counted by the workers' metrics; start -> first event {run.startup:.1f} s "
                  f"and the {run.first_sample:.0f} events at the first sample excluded); "
                  f"first event -> offsets of all 8 partitions committed: {run.durable_seconds:.1f} s "
                  f"(commits every 5 s)")
            print(f"  CPU during that time: the workers used {run.worker_cores:.2f} cores; the whole machine "
                  f"(broker, this script, other users) was busy {run.machine_cores:.2f} of {os.cpu_count()} cores; "
                  f"{run.events / run.seconds / max(run.worker_cores, 1e-9):,.0f} events per worker CPU-second")
            share = ", ".join(f"{c:.0f}" for c in run.per_worker)
            twice = run.final_sum - args.events
            self_twice = [i for i, c in enumerate(run.per_worker, 1) if c > args.events]
            print(f"  events read per worker: {share} (sum {run.final_sum:.0f}; read more than once: {twice:.0f}"
                  f"{'' if twice == 0 else ' <- FAIL'}"
                  f"{''.join(f'; worker {i} read more events than there are: some twice itself' for i in self_twice)}"
                  f"); exit codes {run.exit_codes}")
            all_ok &= twice == 0
            for ok, lines in (check_partitions(run), check_checkpoints(bootstrap, run, service_partition),
                              check_alert(bootstrap, run, flood)):
                all_ok &= ok
                for line in lines:
                    print(f"  {line}")

        import statistics

        def med(i: int, what: str) -> float:
            return statistics.median(getattr(r, what) if what != "per_cpu" else r.rate / max(r.worker_cores, 1e-9)
                                     for r in runs[i::3])

        one, two, gated_two = (med(i, "rate") for i in range(3))
        cpu1, cpu2, cpu3 = (med(i, "per_cpu") for i in range(3))
        how = "measured in this one run" if args.rounds == 1 else f"medians of {args.rounds} rounds"
        print(f"\nevents/s ({how}): 1 worker {one:,.0f}; 2 workers started together {two:,.0f} "
              f"(speed-up {two / one:.2f}x); 2 workers on a settled group {gated_two:,.0f} "
              f"(speed-up {gated_two / one:.2f}x)")
        print(f"events per worker CPU-second: {cpu1:,.0f}, {cpu2:,.0f}, {cpu3:,.0f} (the cost of an event; "
              f"does not depend on the cores the machine had to spare)")
        print(f"  on {os.cpu_count()} cores shared with the broker, this script and other users of the machine "
              f"(load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}): the cores a run gets, "
              f"hence events/s and the speed-ups, vary from run to run")
        print(f"state checks: {'all OK' if all_ok else 'SOME FAILED (see above)'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        cp = argparse.ArgumentParser()
        cp.add_argument("--child", required=True)
        cp.add_argument("--embedded", action="store_true")
        cp.add_argument("--gate")
        ca = cp.parse_args()
        sys.exit(child(ca.child, ca.embedded, ca.gate))
    sys.exit(main())
