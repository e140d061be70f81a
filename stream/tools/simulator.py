"""Seeded, deterministic traffic of French school platforms, with incidents.

The simulator replays the story of 6 April 2021, the first day of
homeschooling in France: the school portals ("ENT") and "Ma classe à la
maison" collapsed, and three explanations went round (a foreign cyberattack,
undersized servers, a failing disk). A :class:`Scenario` lays out
``history_days`` ordinary days before an incident day that holds one incident
of each kind, on distinct services and at distinct times:

- ``capacity_saturation``: a legitimate surge of French residential users,
  many of them first-time, on all endpoints; every host of the service slows
  down and sheds load (503/504).
- ``suspected_attack``: a flood from a few thousand foreign hosting addresses
  (DigitalOcean, Amazon, Hetzner, Choopa, Alibaba, Selectel) with scripted or
  uniform user agents, hammering ``/login``; strong enough to saturate too.
- ``disk_failure``: one drive's SMART 5/187/197 counters climb for days, then
  its I/O latency and errors; on the incident day the requests served by its
  host (and only that host) get slow; its last reading carries
  ``failure: true`` and a replacement drive reports afterwards.

Everything is a pure function of the scenario: events are generated in
fifteen-minute chunks, each from its own random stream keyed by (seed, chunk),
so a time slice yields exactly the events of the full run in that slice.

API
---
- :func:`generate` ``(scenario, start=None, end=None)`` yields
  ``("requests" | "disk-health", event)`` in nondecreasing event time.
- :func:`ground_truth` ``(scenario)``: the incidents as dicts.
- :func:`write_jsonl`, :func:`send_to_kafka`: sinks.
- :func:`add_arguments`, :func:`run`: the ``tocsin simulate`` subcommand.

>>> sc = Scenario(history_days=0, scale=0.2)
>>> [i["cause"] for i in ground_truth(sc)]
['capacity_saturation', 'suspected_attack', 'disk_failure']
>>> kind, ev = next(generate(sc, start="2021-04-06T07:00:00Z"))
>>> kind, ev["service"] in [s.name for s in sc.services]
('requests', True)
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from detectors.timeutil import format_ts, parse_ts

__all__ = [
    "ServiceSpec",
    "Incident",
    "Scenario",
    "DEFAULT_SERVICES",
    "ENDPOINTS",
    "HOSTING_ASNS",
    "RESIDENTIAL_FR_ASNS",
    "default_incidents",
    "world",
    "Confounder",
    "CONFOUNDERS",
    "VARIANTS",
    "WORLD_INCIDENTS",
    "fleet",
    "generate",
    "ground_truth",
    "write_jsonl",
    "send_to_kafka",
    "make_malformed",
    "MALFORMED_KINDS",
    "add_arguments",
    "run",
]

REQUESTS = "requests"
DISK_HEALTH = "disk-health"
CHUNK_S = 900  # divides an hour: chunks stay aligned on local hours across DST
CAUSES = ("capacity_saturation", "suspected_attack", "disk_failure")

# --------------------------------------------------------------------------
# Static world: services, endpoints, networks, user agents, drives
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    """One application: ``hosts`` web servers behind a load balancer.

    ``weight`` multiplies the scenario's ``scale`` (weekday-peak req/s);
    ``headroom`` is capacity over the usual weekday peak (1.6: the peak runs
    at about 62% utilisation).
    """

    name: str
    region: str
    hosts: int = 4
    weight: float = 1.0
    headroom: float = 1.6
    db_hosts: int = 0  # database hosts: drives, nightly backups, no requests of their own

    def host_names(self) -> list[str]:
        return [f"{self.name}-web-{i + 1}" for i in range(self.hosts)]

    def db_host_names(self) -> list[str]:
        return [f"{self.name}-db-{i + 1}" for i in range(self.db_hosts)]


DEFAULT_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("ent-grand-est", "grand-est", hosts=4, weight=1.0),
    ServiceSpec("ent-idf", "ile-de-france", hosts=5, weight=1.2),
    ServiceSpec("ent-aura", "auvergne-rhone-alpes", hosts=3, weight=0.9),
    ServiceSpec("ma-classe-a-la-maison", "national", hosts=4, weight=1.1),
)

ENDPOINTS = ("/login", "/cahier-de-textes", "/messagerie", "/ressources", "/visio")
STATIC = "/static"  # the assets a browser fetches after a page (scenarios with ``static_assets``)
_ALL_ENDPOINTS = (*ENDPOINTS, STATIC)
_STATIC_I = len(ENDPOINTS)
_STATIC_P = 0.45  # share of page views followed by an asset request (the rest hit the browser cache)
_EP_SHARE = np.array([0.15, 0.30, 0.20, 0.25, 0.10])
_EP_LAT = np.array([0.6, 1.0, 1.2, 1.5, 0.8, 0.15])  # latency factor
_EP_BYTES = np.array([2_500.0, 38_000.0, 21_000.0, 420_000.0, 3_200.0, 90_000.0])  # median size
# what a request costs the servers, relative to an average page (login hashes a password,
# /ressources searches and renders documents)
_EP_COST = np.array([1.6, 1.0, 1.0, 1.8, 0.8, 0.1])
# status tables per endpoint: (statuses, probabilities); 5xx background is tiny
_STATUSES = np.array([200, 304, 302, 401, 403, 404, 500, 502])
_STATUS_P = np.array(
    [
        [0.860, 0.000, 0.100, 0.035, 0.001, 0.002, 0.0012, 0.0008],  # /login
        [0.860, 0.120, 0.000, 0.000, 0.004, 0.014, 0.0012, 0.0008],
        [0.900, 0.080, 0.000, 0.000, 0.004, 0.014, 0.0012, 0.0008],
        [0.780, 0.190, 0.000, 0.000, 0.006, 0.022, 0.0012, 0.0008],
        [0.970, 0.000, 0.000, 0.000, 0.006, 0.022, 0.0012, 0.0008],
    ]
)
_STATUS_CUM = np.cumsum(_STATUS_P / _STATUS_P.sum(axis=1, keepdims=True), axis=1)
# a credential-stuffing flood mostly fails to log in
_ATTACK_STATUSES = np.array([401, 200, 429, 403])
_ATTACK_CUM = np.cumsum([0.78, 0.12, 0.07, 0.03])

# (asn, name, country, share, IPv4 prefixes, IPv6 /32 prefix or None)
RESIDENTIAL_FR_ASNS: tuple[tuple[int, str, str, float, tuple[str, ...], str | None], ...] = (
    (3215, "Orange", "FR", 0.40, ("90.0.0.0/9", "86.192.0.0/10", "2.0.0.0/12"), "2a01:cb"),
    (12322, "Free", "FR", 0.23, ("82.224.0.0/11", "88.160.0.0/11", "78.192.0.0/10"), "2a01:e3"),
    (15557, "SFR", "FR", 0.19, ("77.128.0.0/11", "109.0.0.0/11", "93.0.0.0/13"), None),
    (5410, "Bouygues Telecom", "FR", 0.14, ("176.128.0.0/10", "89.80.0.0/12"), "2001:861"),
)
_FOREIGN_RESIDENTIAL = (
    (5432, "Proximus", "BE", 0.30, ("81.240.0.0/12",), None),
    (3303, "Swisscom", "CH", 0.20, ("85.0.0.0/13",), None),
    (3320, "Deutsche Telekom", "DE", 0.15, ("79.192.0.0/10",), None),
    (36903, "Maroc Telecom", "MA", 0.15, ("105.128.0.0/11",), None),
    (3352, "Telefonica", "ES", 0.10, ("83.32.0.0/11",), None),
    (7922, "Comcast", "US", 0.10, ("73.0.0.0/8",), None),
)
_FOREIGN_SHARE = 0.04  # of ordinary users

# hosting networks of the flood: (asn, name, [(country, prefix), ...])
HOSTING_ASNS: dict[int, tuple[str, tuple[tuple[str, str], ...]]] = {
    14061: ("DigitalOcean", (("US", "159.89.0.0/16"), ("NL", "167.99.0.0/16"),
                             ("DE", "142.93.0.0/16"), ("SG", "128.199.0.0/16"))),
    16509: ("Amazon", (("US", "52.0.0.0/11"), ("DE", "3.120.0.0/14"), ("SG", "18.136.0.0/16"))),
    24940: ("Hetzner", (("DE", "88.198.0.0/16"), ("DE", "95.216.0.0/16"))),
    20473: ("Choopa", (("US", "45.32.0.0/16"), ("NL", "45.77.0.0/16"))),
    45102: ("Alibaba", (("CN", "47.92.0.0/14"), ("SG", "47.74.0.0/16"))),
    49505: ("Selectel", (("RU", "92.53.64.0/18"), ("RU", "5.101.48.0/20"))),
}
_HOSTING_SHARE = {14061: 0.28, 16509: 0.22, 24940: 0.16, 20473: 0.14, 45102: 0.12, 49505: 0.08}

_BROWSER_UAS = (
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.114 Safari/537.36"),
    (10, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:87.0) Gecko/20100101 Firefox/87.0"),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.114 Safari/537.36 Edg/89.0.774.68"),
    (3, "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.190 Safari/537.36"),
    (14, "Mozilla/5.0 (iPhone; CPU iPhone OS 14_4_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0.3 Mobile/15E148 Safari/604.1"),
    (6, "Mozilla/5.0 (iPad; CPU OS 14_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0.3 Mobile/15E148 Safari/604.1"),
    (14, "Mozilla/5.0 (Linux; Android 10; SM-A505FN) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.105 Mobile Safari/537.36"),
    (4, "Mozilla/5.0 (Linux; Android 11; SAMSUNG SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/14.0 Chrome/87.0.4280.141 Mobile Safari/537.36"),
    (5, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0.3 Safari/605.1.15"),
    (2, "Mozilla/5.0 (X11; CrOS x86_64 13729.56.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.95 Safari/537.36"),
    (2, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:87.0) Gecko/20100101 Firefox/87.0"),
    (2, "MonENT/4.2.0 (iPhone; iOS 14.4.2; Scale/3.00)"),
)
_ATTACK_UAS = (
    (55, "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2228.0 Safari/537.36"),
    (15, "python-requests/2.25.1"),
    (10, "Go-http-client/1.1"),
    (10, "curl/7.68.0"),
    (10, "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"),
)

_DRIVE_MODELS = (  # (model, capacity bytes, serial prefix, healthy io latency ms)
    ("ST12000NM0007", 12_000_138_625_024, "ZJV", 7.5),
    ("HGST HUH721212ALN604", 12_000_138_625_024, "8HG", 6.5),
    ("TOSHIBA MG07ACA14TA", 14_000_519_643_136, "Y0T", 7.0),
    ("ST4000DM000", 4_000_787_030_016, "Z30", 9.0),
    ("WDC WUH721414ALE6L4", 14_000_519_643_136, "9JG", 6.8),
)

# School-day shape, local time: (hour, share of the weekday peak).
_WEEKDAY = (
    (0, 0.02), (5, 0.015), (6, 0.07), (7, 0.35), (7.5, 0.62), (8, 0.85), (8.75, 0.97),
    (9.25, 1.0), (10, 0.9), (11, 0.72), (12, 0.42), (12.75, 0.36), (13.5, 0.58),
    (14.5, 0.74), (15.5, 0.68), (16.5, 0.52), (17.5, 0.5), (18.5, 0.6), (19.25, 0.66),
    (20, 0.58), (21, 0.38), (22, 0.16), (23, 0.06), (24, 0.02),
)
_WEDNESDAY = tuple((h, v if h < 11.5 else v * (0.35 if h < 17.5 else 0.55)) for h, v in _WEEKDAY)
_SATURDAY = (
    (0, 0.02), (7, 0.02), (9, 0.08), (10.5, 0.14), (12, 0.1), (14, 0.08), (16, 0.1),
    (18, 0.12), (20, 0.1), (22, 0.05), (24, 0.02),
)
_SUNDAY = (
    (0, 0.02), (8, 0.02), (10, 0.06), (12, 0.06), (15, 0.08), (17, 0.14), (18.5, 0.22),
    (20, 0.25), (21.5, 0.16), (23, 0.05), (24, 0.02),
)


def _interp_table(anchors: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array([h * 3600.0 for h, _ in anchors])
    ys = np.array([v for _, v in anchors])
    return xs, ys


_DAY_TABLES = {
    "weekday": _interp_table(_WEEKDAY),
    "wednesday": _interp_table(_WEDNESDAY),
    "saturday": _interp_table(_SATURDAY),
    "sunday": _interp_table(_SUNDAY),
}


# --------------------------------------------------------------------------
# Scenario and incidents
# --------------------------------------------------------------------------


TimeLike = str | float | int | datetime


def _to_epoch(value: TimeLike) -> float:
    """Epoch seconds from an aware datetime, a number, a numeric string or RFC 3339."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"datetime {value!r} has no time zone")
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    return parse_ts(value)


_rfc3339 = format_ts


@dataclass(frozen=True)
class Incident:
    """One injected incident (times: RFC 3339, epoch seconds or aware datetime).

    ``magnitude``: for a surge, the multiple of the usual load (default 5);
    for an attack, the flood's rate as a multiple of the service's weekday
    peak (default 6); for a disk failure, the slow-down of the host's
    requests at the worst (default 12). ``sources``: number of attacking
    addresses (default: about one per 100 flood requests, 50-4000).
    ``lead_days``: how long before ``start`` the drive starts degrading.
    """

    id: str
    cause: str
    service: str
    start: TimeLike
    end: TimeLike
    host: str | None = None
    disk: str | None = None
    magnitude: float | None = None
    sources: int | None = None
    endpoint: str = "/login"
    lead_days: float = 4.0
    description: str | None = None
    variant: str = "default"
    ramp_s: float | None = None

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"incident {self.id}: unknown cause {self.cause!r}")
        if self.variant not in VARIANTS[self.cause]:
            raise ValueError(f"incident {self.id}: unknown {self.cause} variant {self.variant!r}")
        if _to_epoch(self.end) <= _to_epoch(self.start):
            raise ValueError(f"incident {self.id}: end is not after start")
        if self.cause == "disk_failure" and not self.host and self.variant != "db_host":
            raise ValueError(f"incident {self.id}: a disk failure needs a host")


#: The shapes each cause takes (``default`` is the story's own).
VARIANTS: dict[str, tuple[str, ...]] = {
    # hosting_flood: foreign hosting networks, scripted agents (the default);
    # residential_botnet: thousands of domestic ISP addresses, browser agents,
    # no assets, one expensive endpoint, slow ramp; credential_stuffing:
    # rotating browser agents on /login, 401s, volume 1.3-1.5x; night_scraping:
    # rotating proxies at night, every page, 2-4x the hour's usual;
    # single_scraper: one residential address, every page, no assets.
    "suspected_attack": ("default", "residential_botnet", "credential_stuffing", "night_scraping",
                         "single_scraper"),
    # no_5xx: latency rises, nothing fails; capacity_loss: one host drops out
    # of the pool at the usual load; creep: 40-60 min ramp to the knee;
    # first_day: mostly new users who behave like users; homework: evening rush.
    "capacity_saturation": ("default", "no_5xx", "capacity_loss", "creep", "first_day", "homework"),
    # silent: no SMART warning, I/O latency and errors only; db_host: a drive
    # of a database host (no requests), next to the nightly backup I/O.
    "disk_failure": ("default", "silent", "db_host"),
}

#: Benign events that must not page.
CONFOUNDERS = ("newsletter", "deploy", "crawler", "cgnat", "smart_tick", "backup_io")


@dataclass(frozen=True)
class Confounder:
    """A benign event (must not alert): see :data:`CONFOUNDERS`.

    ``newsletter``: returning users on one ``endpoint``, ``magnitude`` times
    its usual; ``deploy``: p95 times ``magnitude`` on every host for the
    span; ``crawler``: a search engine's crawler at ``magnitude`` times the
    usual rate; ``cgnat``: from ``start`` on, a share ``magnitude`` of the
    users sit behind a few carrier-grade NAT addresses; ``smart_tick``: drive
    ``disk`` of ``host`` gains one or two reallocated sectors at ``start``,
    then stays flat; ``backup_io``: the nightly backup of the database hosts
    (I/O latency times ``magnitude`` on their drives).
    """

    id: str
    kind: str
    service: str
    start: TimeLike
    end: TimeLike
    magnitude: float = 2.0
    endpoint: str = "/cahier-de-textes"
    host: str | None = None
    disk: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONFOUNDERS:
            raise ValueError(f"confounder {self.id}: unknown kind {self.kind!r}")
        if _to_epoch(self.end) <= _to_epoch(self.start):
            raise ValueError(f"confounder {self.id}: end is not after start")


def default_incidents(
    day: date = date(2021, 4, 6), tz: str = "Europe/Paris", concurrent: bool = False
) -> tuple[Incident, ...]:
    """The three incidents of the story, local times of ``day``.

    With ``concurrent``, a fourth (a surge on ``ent-grand-est``) overlaps the
    attack on ``ent-idf``.
    """
    zone = ZoneInfo(tz)

    def at(h: int, m: int) -> str:
        return _rfc3339(datetime(day.year, day.month, day.day, h, m, tzinfo=zone).timestamp())

    out = [
        Incident("inc-1-saturation", "capacity_saturation", "ma-classe-a-la-maison",
                 at(8, 0), at(9, 30), magnitude=5.0,
                 description="first day of homeschooling: 5x the usual morning load "
                             "of real users, servers undersized"),
        Incident("inc-2-attack", "suspected_attack", "ent-idf", at(10, 0), at(11, 0),
                 magnitude=6.0,
                 description="credential-stuffing flood on /login from foreign hosting networks"),
        Incident("inc-3-disk", "disk_failure", "ent-aura", at(11, 15), at(12, 0),
                 host="ent-aura-web-2",
                 description="failing drive on ent-aura-web-2: SMART 5/187/197 rising for days, "
                             "then I/O errors; requests on that host slow down"),
    ]
    if concurrent:
        out.append(Incident("inc-4-saturation", "capacity_saturation", "ent-grand-est",
                            at(10, 15), at(10, 50), magnitude=4.0,
                            description="surge on ent-grand-est while ent-idf is under attack"))
    return tuple(out)


@dataclass(frozen=True)
class Scenario:
    """What to simulate.

    The run covers ``history_days`` days before ``incident_day`` and the
    incident day itself, midnight to midnight in ``timezone`` (the daily
    shape follows local school hours; events carry UTC times). ``scale`` is
    the request rate, per second, of a weight-1 service at the weekday peak.
    ``incidents=None`` means :func:`default_incidents` (``concurrent`` adds
    the fourth); pass ``()`` for a quiet run. ``holidays`` are shaped like
    Sundays (Easter Monday 2021 by default).
    """

    seed: int = 1
    incident_day: date = date(2021, 4, 6)
    history_days: int = 7
    scale: float = 8.0
    services: tuple[ServiceSpec, ...] = DEFAULT_SERVICES
    incidents: tuple[Incident, ...] | None = None
    concurrent: bool = False
    disk_interval_s: int = 600
    epoch_ts_ratio: float = 0.1
    new_client_ratio: float = 0.12
    timezone: str = "Europe/Paris"
    holidays: tuple[date, ...] = (date(2021, 4, 5),)
    confounders: tuple[Confounder, ...] = ()
    static_assets: bool = False
    regional_networks: bool = False

    def __post_init__(self) -> None:
        if self.history_days < 0:
            raise ValueError("history_days must be >= 0")
        if not self.scale > 0:
            raise ValueError("scale must be > 0")
        if self.disk_interval_s < 60:
            raise ValueError("disk_interval_s must be >= 60")
        if not 0 <= self.epoch_ts_ratio <= 1:
            raise ValueError("epoch_ts_ratio must be in [0, 1]")
        names = [s.name for s in self.services]
        if len(set(names)) != len(names) or not names:
            raise ValueError("services must be a non-empty list of distinct names")
        for inc in (*self.resolved_incidents(), *self.confounders):
            if inc.service not in names:
                raise ValueError(f"{inc.id}: unknown service {inc.service!r}")

    @property
    def start(self) -> float:
        d = self.incident_day - timedelta(days=self.history_days)
        return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(self.timezone)).timestamp()

    @property
    def end(self) -> float:
        d = self.incident_day + timedelta(days=1)
        return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(self.timezone)).timestamp()

    def resolved_incidents(self) -> tuple[Incident, ...]:
        if self.incidents is not None:
            return tuple(self.incidents)
        return default_incidents(self.incident_day, self.timezone, self.concurrent)


# --------------------------------------------------------------------------
# Many worlds: incidents and confounders drawn per seed
# --------------------------------------------------------------------------

#: Every incident shape :func:`world` draws from: (cause, variant), and the attack inside a surge.
WORLD_INCIDENTS: tuple[tuple[str, str], ...] = (
    *(("suspected_attack", v) for v in VARIANTS["suspected_attack"]),
    ("suspected_attack", "inside_surge"),
    *(("capacity_saturation", v) for v in VARIANTS["capacity_saturation"]),
    *(("disk_failure", v) for v in VARIANTS["disk_failure"]),
)
_REGIONS = ("grand-est", "ile-de-france", "auvergne-rhone-alpes", "occitanie", "bretagne",
            "nouvelle-aquitaine", "hauts-de-france", "normandie")


def world(seed: int, history_days: int = 4, scale: float = 2.0, incidents: int = 7,
          confounders: int = 5) -> Scenario:
    """A world drawn from ``seed``: services, a date, ``incidents`` incidents and
    ``confounders`` benign events on the last two days, every magnitude, ramp,
    population, endpoint and time of day drawn (see :data:`WORLD_INCIDENTS`,
    :data:`CONFOUNDERS`). History days come first, quiet.

    >>> sc = world(11, history_days=2)
    >>> len(sc.services), len(sc.confounders), len(sc.resolved_incidents())  # an attack inside a surge is two
    (6, 5, 8)
    >>> world(11, history_days=2) == sc
    True
    """
    rng = _rng(seed, 1000)
    zone = ZoneInfo("Europe/Paris")
    regions = list(rng.permutation(len(_REGIONS))[:6])
    services = tuple(
        ServiceSpec(f"ent-{_REGIONS[r]}", _REGIONS[r], hosts=int(rng.integers(2, 6)),
                    weight=round(float(rng.uniform(0.7, 1.4)), 2), headroom=round(float(rng.uniform(1.35, 1.7)), 2),
                    db_hosts=int(i < 2))
        for i, r in enumerate(regions))
    day = date(2021, 3, 1) + timedelta(days=int(rng.integers(0, 100)))
    if day == date(2021, 4, 5) or day - timedelta(days=1) == date(2021, 4, 5):
        day += timedelta(days=2)
    if day.weekday() == 6:  # at least one school day among the two
        day += timedelta(days=1)
    days = (day - timedelta(days=1), day)
    school = [d for d in days if d.weekday() < 5] or list(days)
    weekend = [d for d in days if d.weekday() >= 5] or list(days)

    def at(d: date, hour: float) -> float:
        h = int(hour)
        m = int(round((hour - h) * 60))
        return datetime(d.year, d.month, d.day, h, min(m, 59), tzinfo=zone).timestamp()

    def shape_at(d: date, hour: float) -> float:
        kind = "sunday" if d.weekday() == 6 else "saturday" if d.weekday() == 5 else (
            "wednesday" if d.weekday() == 2 else "weekday")
        return float(np.interp(hour * 3600, *_DAY_TABLES[kind]))

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    pick = rng.choice(len(WORLD_INCIDENTS), min(incidents, len(WORLD_INCIDENTS)), replace=False)
    slots = [(si, d) for d in days for si in range(len(services))]
    order = rng.permutation(len(slots)).tolist()
    used: list[tuple[int, date, float, float]] = []
    incs: list[Incident] = []

    def slot(prefer: list[date], need_db: bool = False, min_hosts: int = 1) -> tuple[int, date]:
        for i in order:
            si, d = slots[i]
            if d in prefer and all(not (x[0] == si and x[1] == d) for x in used) and (
                    not need_db or services[si].db_hosts) and services[si].hosts >= min_hosts:
                return si, d
        for i in order:
            si, d = slots[i]
            if all(not (x[0] == si and x[1] == d) for x in used) and (
                    not need_db or services[si].db_hosts) and services[si].hosts >= min_hosts:
                return si, d
        raise ValueError("no free service-day for an incident")

    for n, j in enumerate(pick.tolist()):
        cause, var = WORLD_INCIDENTS[j]
        iid = f"w{seed}-{n + 1}-{var}"
        if cause == "suspected_attack":
            pref = {"single_scraper": weekend, "night_scraping": list(days)}.get(var, school)
            si, d = slot(pref)
            svc = services[si]
            if var == "inside_surge":
                t0 = at(d, u(8.0, 8.6))
                sm = min(3.0, 1.05 * svc.headroom / max(shape_at(d, 9.0), 0.3))
                incs.append(Incident(iid + "-surge", "capacity_saturation", svc.name, t0, t0 + u(4800, 6000),
                                     magnitude=round(u(sm, sm + 1.0), 2), variant="first_day",
                                     description="a legitimate surge with an attack inside it"))
                ta = t0 + u(900, 1500)
                incs.append(Incident(iid, "suspected_attack", svc.name, ta, ta + u(1800, 3000),
                                     magnitude=round(u(1.0, 2.5), 2), variant="residential_botnet",
                                     endpoint=("/login", "/ressources")[int(rng.integers(0, 2))],
                                     ramp_s=u(300, 900), sources=int(rng.integers(1500, 5000)),
                                     description="a residential botnet starting inside a legitimate surge"))
                used.append((si, d, t0, ta + 3000))
                continue
            if var == "default":
                t0, dur, m, kw = at(d, u(9, 17)), u(1800, 3600), u(3, 8), {}
            elif var == "residential_botnet":
                t0, dur, m = at(d, u(9, 16)), u(2400, 4200), u(1.5, 4.0)
                kw = {"ramp_s": u(600, 1200), "sources": int(rng.integers(1500, 5000)),
                      "endpoint": ("/login", "/ressources")[int(rng.integers(0, 2))]}
            elif var == "credential_stuffing":
                t0, dur, m = at(d, u(9, 20)), u(1800, 5400), u(0.3, 0.5)
                kw = {"sources": int(rng.integers(300, 2000))}
            elif var == "night_scraping":
                t0, dur, m = at(d, u(0.5, 3.0)), u(3600, 9000), u(1.0, 3.0)
                kw = {"sources": int(rng.integers(200, 1000))}
            else:  # single_scraper
                t0, dur, m = at(d, u(10, 18)), u(1800, 7200), u(3, 8)
                kw = {}
            incs.append(Incident(iid, cause, svc.name, t0, t0 + dur, magnitude=round(m, 2), variant=var, **kw))
            used.append((si, d, t0, t0 + dur))
        elif cause == "capacity_saturation":
            si, d = slot(school, min_hosts=2 if var == "capacity_loss" else 1)
            svc = services[si]
            hour = {"homework": u(18.0, 18.8), "creep": u(7.2, 7.8), "first_day": u(7.8, 8.3)}.get(var, u(8.5, 10.0))
            t0 = at(d, hour)
            sh = max(shape_at(d, hour + 0.5), 0.2)
            kw2: dict[str, Any] = {}
            if var == "no_5xx":
                m, dur = u(0.95, 1.02) * svc.headroom / sh, u(1800, 3600)
            elif var == "capacity_loss":
                n_h = svc.hosts
                m, dur = max(0.9, u(1.05, 1.2) * svc.headroom * (n_h - 1) / n_h / sh), u(1800, 3600)
            elif var == "creep":
                m, dur = u(1.1, 1.35) * svc.headroom / max(shape_at(d, hour + 0.8), 0.2), u(4800, 6000)
                kw2 = {"ramp_s": u(2400, 3600)}
            elif var == "homework":
                m, dur = max(u(2.0, 3.0), 1.15 * svc.headroom / sh), u(2700, 4500)
            else:
                lo = max(2.5, 1.2 * svc.headroom / sh)
                m, dur = u(lo, max(lo, 4.5) + 0.5), u(3600, 5400)
            incs.append(Incident(iid, cause, svc.name, t0, t0 + dur, magnitude=round(max(m, 0.9), 2),
                                 variant=var, **kw2))
            used.append((si, d, t0, t0 + dur))
        else:
            si, d = slot(list(days), need_db=var == "db_host")
            svc = services[si]
            if var == "db_host":
                t0 = at(d, u(1.0, 5.0))
                host = svc.db_host_names()[0]
                lead = u(1.0, 3.0)
            else:
                t0 = at(d, u(9, 16))
                host = svc.host_names()[int(rng.integers(0, svc.hosts))]
                lead = u(0.15, 0.4) if var == "silent" else u(2.0, 5.0)
            dur = u(1800, 3600)
            incs.append(Incident(iid, cause, svc.name, t0, t0 + dur, host=host, magnitude=round(u(5, 14), 1),
                                 lead_days=lead, variant=var))
            used.append((si, d, t0, t0 + dur))

    def free(si: int, t0: float, t1: float) -> bool:
        return all(not (x[0] == si and x[2] - 3600 < t1 and t0 < x[3] + 3600) for x in used)

    confs: list[Confounder] = []
    kinds = [k for k in CONFOUNDERS if k != "backup_io"]
    chosen = [kinds[i] for i in rng.choice(len(kinds), min(confounders, len(kinds)), replace=False).tolist()]
    if confounders > len(kinds):
        chosen.append("backup_io")
    for n, kind in enumerate(chosen):
        cid = f"w{seed}-c{n + 1}-{kind}"
        for _ in range(50):
            si = int(rng.integers(0, len(services)))
            d = school[int(rng.integers(0, len(school)))]
            svc = services[si]
            if kind == "newsletter":
                hour = u(14.0, 16.5) if rng.random() < 0.5 else u(19.5, 20.5)
                m = min(u(2.0, 3.5), 0.8 * svc.headroom / max(shape_at(d, hour), 0.2))
                t0, t1 = at(d, hour), at(d, hour) + u(1800, 3600)
                c = Confounder(cid, kind, svc.name, t0, t1, round(max(m, 1.6), 2),
                               ENDPOINTS[int(rng.integers(1, len(ENDPOINTS)))])
            elif kind == "deploy":
                t0 = at(d, u(7, 21))
                c = Confounder(cid, kind, svc.name, t0, t0 + 120, round(u(3, 6), 1))
            elif kind == "crawler":
                t0 = at(d, u(10, 21))
                c = Confounder(cid, kind, svc.name, t0, t0 + u(300, 900), round(u(0.5, 2.0), 2))
            elif kind == "cgnat":
                t0 = at(d, u(6, 12))
                c = Confounder(cid, kind, svc.name, t0, at(day, 23.9), round(u(0.3, 0.6), 2))
            elif kind == "smart_tick":
                host = svc.host_names()[int(rng.integers(0, svc.hosts))]
                if any(i.host == host for i in incs):
                    continue
                t0 = at(days[0], u(1, 20))
                c = Confounder(cid, kind, svc.name, t0, at(day, 23.9), float(rng.integers(1, 3)), host=host)
            else:  # backup_io
                si = 0
                c = Confounder(cid, kind, services[0].name, at(day, 2.0), at(day, 3.5), round(u(3, 6), 1),
                               host=services[0].db_host_names()[0])
            if free(si, _to_epoch(c.start), _to_epoch(c.end) if kind not in ("cgnat", "smart_tick") else
                    _to_epoch(c.start) + 3600):
                confs.append(c)
                used.append((si, d, _to_epoch(c.start), _to_epoch(c.start) + 600))
                break
    return Scenario(seed=seed, incident_day=day, history_days=history_days, scale=scale, services=services,
                    incidents=tuple(incs), confounders=tuple(confs), static_assets=True,
                    regional_networks=True, holidays=(date(2021, 4, 5),), new_client_ratio=0.08)


# --------------------------------------------------------------------------
# The fleet: hosts and drives
# --------------------------------------------------------------------------


@dataclass
class _Drive:
    index: int
    host: str
    serial: str
    model: str
    capacity: int
    io_ms: float
    poh0: float  # power-on hours at the scenario start
    smart5: int  # constant reallocated-sector count of a healthy old drive
    temp: float
    offset_s: float  # phase of its readings within the interval
    first_ts: float | None = None  # replacement drives start late
    last_ts: float | None = None  # failed drive: time of its last reading
    failing: Any = None  # the _Failure, when it is the failing drive
    db: bool = False  # on a database host (nightly backup I/O)
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (from, sectors): benign SMART ticks


@dataclass
class _Failure:
    start: float
    end: float
    degrade_from: float
    magnitude: float
    silent: bool = False  # no SMART warning: I/O latency and errors only


@dataclass
class _Host:
    index: int
    name: str
    service: int
    median_ms: float
    drives: list[_Drive] = field(default_factory=list)
    failure: _Failure | None = None


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, *key])


def _name_key(name: str) -> int:
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def _serial(rng: np.random.Generator, prefix: str) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRSTVWXYZ"
    return prefix + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 5))


def fleet(scenario: Scenario) -> list[dict[str, Any]]:
    """The hosts of the scenario and their drives (serials, models), as dicts."""
    return [
        {"service": scenario.services[h.service].name, "host": h.name,
         "median_latency_ms": round(h.median_ms, 1),
         "drives": [{"disk": d.serial, "model": d.model, "capacity_bytes": d.capacity,
                     "replacement": d.first_ts is not None} for d in h.drives]}
        for h in _World.of(scenario).hosts
    ]


# --------------------------------------------------------------------------
# Client populations
# --------------------------------------------------------------------------


class _Clients:
    """Parallel arrays of client attributes (object arrays for fast indexing)."""

    __slots__ = ("ip", "country", "asn", "ua")

    def __init__(self, ip: list[str], country: list[str], asn: list[int], ua: list[str]):
        self.ip = np.array(ip, dtype=object)
        self.country = np.array(country, dtype=object)
        self.asn = np.array(asn, dtype=np.int64)
        self.ua = np.array(ua, dtype=object)

    def __len__(self) -> int:
        return len(self.ip)


def _v4(rng: np.random.Generator, cidr: str, n: int) -> list[str]:
    net, bits = cidr.split("/")
    a, b, c, d = (int(x) for x in net.split("."))
    base = (a << 24) | (b << 16) | (c << 8) | d
    size = 1 << (32 - int(bits))
    vals = base + rng.integers(1, size - 1, n)
    return [f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}" for v in vals.tolist()]


def _v6(rng: np.random.Generator, prefix: str, n: int) -> list[str]:
    parts = rng.integers(0, 65536, (n, 4)).tolist()
    return [f"{prefix}{p[0] & 0xFF:02x}:{p[1]:x}:{p[2]:x}:{p[3]:x}::{(p[0] >> 8) + 1:x}"
            for p in parts]


def _ua_choice(rng: np.random.Generator, table: Sequence[tuple[int, str]], n: int) -> list[str]:
    w = np.array([x for x, _ in table], dtype=float)
    idx = rng.choice(len(table), n, p=w / w.sum())
    names = [s for _, s in table]
    return [names[i] for i in idx.tolist()]


#: Per ISP: the IPv4 /24 bases and IPv6 /48 prefixes one region's subscribers sit in.
Blocks = dict[int, tuple[np.ndarray, list[str]]]


def _regional_blocks(rng: np.random.Generator, per_isp: int = 250) -> Blocks:
    """The networks of one region's subscribers: ISPs give addresses by region, so the
    users of a regional service (the usual ones and the newcomers alike) come from a
    bounded set of /24s and /48s, while a botnet's homes are spread over the country."""
    out: Blocks = {}
    for a, _name, _cc, _s, prefixes, v6 in (*RESIDENTIAL_FR_ASNS, *_FOREIGN_RESIDENTIAL):
        bases = []
        for cidr in prefixes:
            net, bits = cidr.split("/")
            x = [int(v) for v in net.split(".")]
            base = (x[0] << 24) | (x[1] << 16) | (x[2] << 8) | x[3]
            n24 = 1 << (24 - int(bits))
            bases.append(base + (rng.integers(0, n24, per_isp // len(prefixes) + 1) << 8))
        m = per_isp // 4 + 1
        six = [f"{v6}{p0:02x}:{p1:x}:" for p0, p1 in zip(
            rng.integers(0, 256, m).tolist(), rng.integers(0, 65536, m).tolist(), strict=True)] if v6 else []
        out[a] = (np.concatenate(bases), six)
    return out


def _residential(rng: np.random.Generator, n: int, foreign_share: float = _FOREIGN_SHARE,
                 blocks: Blocks | None = None) -> _Clients:
    n_foreign = int(rng.binomial(n, foreign_share))
    ip: list[str] = []
    cc: list[str] = []
    asn: list[int] = []
    for table, total in ((RESIDENTIAL_FR_ASNS, n - n_foreign), (_FOREIGN_RESIDENTIAL, n_foreign)):
        shares = np.array([t[3] for t in table])
        counts = rng.multinomial(total, shares / shares.sum())
        for (a, _name, country, _s, prefixes, v6), k in zip(table, counts.tolist(), strict=True):
            if k == 0:
                continue
            k6 = int(rng.binomial(k, 0.25)) if v6 else 0
            if blocks is not None:
                v4b, v6b = blocks[a]
                vals = v4b[rng.integers(0, len(v4b), k - k6)] + rng.integers(1, 255, k - k6)
                ip += [f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}" for v in vals.tolist()]
                if k6:
                    ip += [f"{v6b[i]}{p2:x}:{p3:x}::{p4:x}" for i, p2, p3, p4 in zip(
                        rng.integers(0, len(v6b), k6).tolist(), *rng.integers(0, 65536, (3, k6)).tolist(),
                        strict=True)]
            else:
                which = rng.integers(0, len(prefixes), k - k6)
                for pi, m in enumerate(np.bincount(which, minlength=len(prefixes)).tolist()):
                    ip += _v4(rng, prefixes[pi], m)
                if k6:
                    ip += _v6(rng, v6, k6)
            cc += [country] * k
            asn += [a] * k
    ua = _ua_choice(rng, _BROWSER_UAS, n)
    perm = rng.permutation(n)
    return _Clients([ip[i] for i in perm], [cc[i] for i in perm], [asn[i] for i in perm], ua)


def _hosting(rng: np.random.Generator, n: int) -> _Clients:
    asns = list(_HOSTING_SHARE)
    p = np.array([_HOSTING_SHARE[a] for a in asns])
    pick = rng.choice(len(asns), n, p=p / p.sum()).tolist()
    ip: list[str] = []
    cc: list[str] = []
    asn: list[int] = []
    for i in pick:
        a = asns[i]
        nets = HOSTING_ASNS[a][1]
        country, cidr = nets[int(rng.integers(0, len(nets)))]
        ip += _v4(rng, cidr, 1)
        cc.append(country)
        asn.append(a)
    return _Clients(ip, cc, asn, _ua_choice(rng, _ATTACK_UAS, n))


_CRAWLER_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _crawler(rng: np.random.Generator, n: int) -> _Clients:
    """A search engine's crawler: its own network (Google, AS15169), its own agent."""
    return _Clients(_v4(rng, "66.249.64.0/19", n), ["US"] * n, [15169] * n, [_CRAWLER_UA] * n)


def _proxies(rng: np.random.Generator, n: int) -> _Clients:
    """Rotating proxies: residential exits across the country and some hosting ones."""
    k = int(rng.binomial(n, 0.35))
    a, b = _hosting(rng, k), _residential(rng, n - k, 0.1)
    return _Clients(list(a.ip) + list(b.ip), list(a.country) + list(b.country),
                    list(a.asn) + list(b.asn), _ua_choice(rng, _BROWSER_UAS, n))


# --------------------------------------------------------------------------
# The world: everything derived from the scenario, built once
# --------------------------------------------------------------------------


@dataclass
class _Surge:
    svc: int
    start: float
    end: float
    magnitude: float
    key: int
    ramp: float = 600.0
    endpoint: int = -1  # one endpoint only (a newsletter's link); -1: all pages
    returning: bool = False  # the usual users (a newsletter) rather than newcomers
    decay: float = 0.0  # a spike that fades (seconds of e-folding), 0: flat


@dataclass
class _Attack:
    svc: int
    start: float
    end: float
    rate: float
    endpoint: int
    sources: int
    key: int
    variant: str = "default"
    ramp: float = 60.0
    cost: float = 1.0


@dataclass
class _Span:
    """A change on one service over [start, end): a host out, a deploy, a NAT, no 5xx."""

    kind: str
    svc: int
    start: float
    end: float
    magnitude: float = 1.0
    host: int = -1


class _World:
    _cache: dict[Scenario, _World] = {}

    @classmethod
    def of(cls, scenario: Scenario) -> _World:
        w = cls._cache.get(scenario)
        if w is None:
            if len(cls._cache) > 8:
                cls._cache.clear()
            w = cls._cache[scenario] = cls(scenario)
        return w

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.zone = ZoneInfo(sc.timezone)
        self.start = sc.start
        self.end = sc.end
        self.n_days = sc.history_days + 1
        self.svc_names = [s.name for s in sc.services]
        self.regions = [s.region for s in sc.services]
        rng = _rng(sc.seed, 7)
        self.hosts: list[_Host] = []
        self.svc_hosts: list[np.ndarray] = []
        di = 0
        for si, svc in enumerate(sc.services):
            idx = []
            for name in svc.host_names():
                h = _Host(len(self.hosts), name, si, float(rng.uniform(80, 200)))
                for _ in range(1 + int(rng.random() < 0.5)):
                    model, cap, prefix, io_ms = _DRIVE_MODELS[int(rng.integers(0, len(_DRIVE_MODELS)))]
                    old = rng.random() < 0.15
                    h.drives.append(_Drive(
                        di, name, _serial(rng, prefix), model, cap,
                        io_ms * float(rng.uniform(0.85, 1.2)),
                        float(rng.uniform(30_000, 48_000) if old else rng.uniform(2_000, 25_000)),
                        int(rng.integers(8, 120)) if old else 0,
                        float(rng.uniform(27, 36)), round(float(rng.uniform(0, 60)), 3)))
                    di += 1
                idx.append(h.index)
                self.hosts.append(h)
            self.svc_hosts.append(np.array(idx))
        for si, svc in enumerate(sc.services):  # database hosts: after the web hosts, no requests
            for name in svc.db_host_names():
                h = _Host(len(self.hosts), name, si, 0.0)
                for _ in range(2):
                    model, cap, prefix, io_ms = _DRIVE_MODELS[int(rng.integers(0, len(_DRIVE_MODELS)))]
                    h.drives.append(_Drive(
                        di, name, _serial(rng, prefix), model, cap, io_ms * float(rng.uniform(0.85, 1.2)),
                        float(rng.uniform(2_000, 25_000)), 0, float(rng.uniform(27, 36)),
                        round(float(rng.uniform(0, 60)), 3), db=True))
                    di += 1
                self.hosts.append(h)
        self.host_by_name = {h.name: h for h in self.hosts}
        self.host_median = np.array([h.median_ms for h in self.hosts])
        self.host_names = np.array([h.name for h in self.hosts], dtype=object)
        # per service: capacity and the day-to-day variation of demand
        self.capacity = np.array([s.weight * sc.scale * s.headroom for s in sc.services])
        self.day_factor = _rng(sc.seed, 8).lognormal(0.0, 0.04, (self.n_days + 1, len(sc.services)))
        self.pop_size = [max(60, int(700 * sc.scale * s.weight)) for s in sc.services]
        self._pops: dict[tuple, _Clients] = {}
        self.blocks: list[Blocks | None] = [
            _regional_blocks(_rng(sc.seed, 15, si)) if sc.regional_networks else None
            for si in range(len(sc.services))]
        self.spans: list[_Span] = []
        self.backup: float = 0.0  # I/O latency factor of the nightly backup on database drives
        # incidents
        self.surges: list[_Surge] = []
        self.attacks: list[_Attack] = []
        self.truth: list[dict[str, Any]] = []
        for k, inc in enumerate(sc.resolved_incidents()):
            si = self.svc_names.index(inc.service)
            t0, t1 = _to_epoch(inc.start), _to_epoch(inc.end)
            host, disk = inc.host, inc.disk
            var = inc.variant
            if inc.cause == "capacity_saturation":
                if var == "capacity_loss":
                    n_h = len(self.svc_hosts[si])
                    if n_h < 2:
                        raise ValueError(f"incident {inc.id}: capacity loss needs 2 hosts or more")
                    lost = self.host_by_name.get(host or "") or self.hosts[int(self.svc_hosts[si][-1])]
                    host = lost.name
                    self.spans.append(_Span("host_out", si, t0, t1, 1.0, lost.index))
                    if (inc.magnitude or 1.0) > 1.0:
                        self.surges.append(_Surge(si, t0, t1, inc.magnitude or 1.0, k, inc.ramp_s or 300.0))
                else:
                    if var == "no_5xx":
                        self.spans.append(_Span("no_5xx", si, t0, t1 + 1800.0))
                    default_ramp = {"creep": 3000.0, "homework": 900.0}.get(var, 600.0)
                    self.surges.append(_Surge(si, t0, t1, inc.magnitude or 5.0, k, inc.ramp_s or default_ramp))
            elif inc.cause == "suspected_attack":
                if inc.endpoint not in ENDPOINTS:
                    raise ValueError(f"incident {inc.id}: unknown endpoint {inc.endpoint!r}")
                ep = ENDPOINTS.index(inc.endpoint)
                if var == "default":
                    rate = (inc.magnitude or 6.0) * sc.scale * sc.services[si].weight
                    cost = 1.0
                else:
                    # a multiple of the usual rate of that hour (the volume the attacker adds)
                    usual = sc.scale * sc.services[si].weight * float(self.shape(t0, 1)[0])
                    rate = (inc.magnitude or 1.0) * usual
                    cost = float(_EP_COST[ep] / (_EP_COST[:5] @ _EP_SHARE))
                total = rate * (t1 - t0)
                n_src = inc.sources or (1 if var == "single_scraper" else int(min(4000, max(50, total / 100))))
                ramp = inc.ramp_s or {"residential_botnet": 900.0, "credential_stuffing": 120.0,
                                      "night_scraping": 300.0}.get(var, 60.0)
                self.attacks.append(_Attack(si, t0, t1, rate, ep, n_src, k, var, ramp, cost))
            else:
                if var == "db_host" and not host:
                    names = sc.services[si].db_host_names()
                    if not names:
                        raise ValueError(f"incident {inc.id}: {inc.service} has no database host")
                    host = names[0]
                h = self.host_by_name.get(host or "")
                if h is None or h.service != si:
                    raise ValueError(f"incident {inc.id}: host {host!r} is not a host of {inc.service}")
                drives = [d for d in h.drives if d.first_ts is None]
                drive = next((d for d in drives if d.serial == disk), None) if disk else drives[0]
                if drive is None:
                    raise ValueError(f"incident {inc.id}: no drive {disk!r} on {host}")
                fail = _Failure(t0, t1, t0 - inc.lead_days * 86400.0, inc.magnitude or 12.0,
                                silent=var == "silent")
                h.failure = fail
                drive.failing = fail
                drive.smart5 = 0
                # last reading: the first scheduled one at or after the end
                iv = sc.disk_interval_s
                k_last = int(np.ceil((t1 - self.start - drive.offset_s) / iv))
                drive.last_ts = self.start + drive.offset_s + k_last * iv
                model, cap, prefix, io_ms = _DRIVE_MODELS[int(_rng(sc.seed, 9, k).integers(0, len(_DRIVE_MODELS)))]
                h.drives.append(_Drive(
                    len(self.hosts) * 10 + k, h.name, _serial(_rng(sc.seed, 10, k), prefix), model,
                    cap, io_ms, 0.0, 0, drive.temp, drive.offset_s, first_ts=drive.last_ts + 1e-3))
                disk = drive.serial
            onset = self._onset(inc, si, t0, t1)
            self.truth.append({
                "id": inc.id, "cause": inc.cause, "service": inc.service,
                "host": host if inc.cause == "disk_failure" else inc.host,
                "disk": disk if inc.cause == "disk_failure" else inc.disk,
                "start": _rfc3339(onset), "end": _rfc3339(t1), "ramp_start": _rfc3339(t0),
                "description": inc.description or f"{inc.cause} on {inc.service}",
                "kind": var,
            })
        for c in sc.confounders:
            si = self.svc_names.index(c.service)
            t0, t1 = _to_epoch(c.start), _to_epoch(c.end)
            if c.kind == "newsletter":
                if c.endpoint not in ENDPOINTS:
                    raise ValueError(f"confounder {c.id}: unknown endpoint {c.endpoint!r}")
                self.surges.append(_Surge(si, t0, t1, c.magnitude, 1000 + len(self.surges), 120.0,
                                          ENDPOINTS.index(c.endpoint), True, (t1 - t0) / 3))
            elif c.kind == "crawler":
                self.attacks.append(_Attack(si, t0, t1, 0.0, -1, 200, 1000 + len(self.attacks),
                                            "crawler", 60.0, 0.5))
                self.attacks[-1].rate = c.magnitude  # times the usual rate, set per chunk
            elif c.kind in ("deploy", "cgnat"):
                self.spans.append(_Span(c.kind, si, t0, t1, c.magnitude))
            elif c.kind == "smart_tick":
                d = next((d for d in self.drives_of(c.host) if d.serial == c.disk or c.disk is None), None)
                if d is None:
                    raise ValueError(f"confounder {c.id}: no drive {c.disk!r} on {c.host!r}")
                d.ticks.append((t0, int(c.magnitude)))
            elif c.kind == "backup_io":
                self.backup = c.magnitude
            self.truth.append({
                "id": c.id, "cause": "benign", "kind": c.kind, "service": c.service,
                "host": c.host, "disk": c.disk, "start": _rfc3339(t0), "end": _rfc3339(t1),
                "description": f"{c.kind} on {c.service}",
            })
        self.failing_hosts = [h for h in self.hosts if h.failure is not None]
        self.drives = [d for h in self.hosts for d in h.drives]

    def _onset(self, inc: Incident, si: int, t0: float, t1: float) -> float:
        """When a ramping incident starts to hurt or show: a surge when the demand reaches 90%
        of capacity (the knee), an attack when it reaches half its rate; otherwise ``t0``."""
        if inc.variant == "default" or inc.cause == "disk_failure" or inc.variant == "capacity_loss":
            return t0
        if inc.cause == "suspected_attack":
            a = next(x for x in self.attacks if x.key == len(self.truth))
            return t0 + 0.5 * a.ramp
        s = next(x for x in self.surges if x.key == len(self.truth))
        t = t0 + np.arange(int(t1 - t0), dtype=float)
        shape = np.concatenate([self.shape(float(c), min(CHUNK_S, int(t1 - c)))
                                for c in np.arange(t0, t1, CHUNK_S)])[: len(t)]
        usual = self.sc.scale * self.sc.services[si].weight * shape
        rho = usual * (1 + (s.magnitude - 1) * _ramp(t, s.start, s.end, s.ramp, 900.0)) / self.capacity[si]
        hot = np.nonzero(rho >= 0.9)[0]
        return float(t[hot[0]]) if len(hot) else t0

    def drives_of(self, host: str | None) -> list[_Drive]:
        h = self.host_by_name.get(host or "")
        return h.drives if h is not None else []

    # --- demand ---------------------------------------------------------

    def day_index(self, t: float) -> int:
        return int((t - self.start) // 86400)

    def shape(self, t0: float, n: int) -> np.ndarray:
        """Share of the weekday peak for the n seconds from t0."""
        local = datetime.fromtimestamp(t0, self.zone)
        d = local.date()
        kind = ("sunday" if d in self.sc.holidays or local.weekday() == 6 else
                "saturday" if local.weekday() == 5 else
                "wednesday" if local.weekday() == 2 else "weekday")
        xs, ys = _DAY_TABLES[kind]
        sod = local.hour * 3600 + local.minute * 60 + local.second + np.arange(n)
        return np.interp(np.minimum(sod, 86399), xs, ys)

    def population(self, si: int, day: int) -> _Clients:
        """Returning users of service si on a day, plus that day's newcomers."""
        key = (si, day)
        pop = self._pops.get(key)
        if pop is None:
            if len(self._pops) > 64:
                self._pops.clear()
            base = self._base_pop(si)
            rng = _rng(self.sc.seed, 11, si, day)
            n = len(base)
            keep = np.sort(rng.choice(n, int(n * (1 - self.sc.new_client_ratio)), replace=False))
            new = _residential(rng, n - len(keep), blocks=self.blocks[si])
            pop = _Clients(list(base.ip[keep]) + list(new.ip), list(base.country[keep]) + list(new.country),
                           list(base.asn[keep]) + list(new.asn), list(base.ua[keep]) + list(new.ua))
            order = rng.permutation(len(pop))  # newcomers anywhere in the activity ranking
            pop = _Clients(list(pop.ip[order]), list(pop.country[order]), list(pop.asn[order]),
                           list(pop.ua[order]))
            self._pops[key] = pop
        return pop

    def _base_pop(self, si: int) -> _Clients:
        key = ("base", si)
        pop = self._pops.get(key)
        if pop is None:
            pop = self._pops[key] = _residential(_rng(self.sc.seed, 12, si), self.pop_size[si],
                                                 blocks=self.blocks[si])
        return pop

    def cgnat_pool(self, si: int) -> np.ndarray:
        """The few public addresses of a carrier-grade NAT (one new /24 of the main ISP)."""
        key = ("cgnat", si)
        pop = self._pops.get(key)
        if pop is None:
            ips = _v4(_rng(self.sc.seed, 16, si), "90.0.0.0/9", 1)[0].rsplit(".", 1)[0]
            pop = self._pops[key] = _Clients([f"{ips}.{i + 10}" for i in range(24)], ["FR"] * 24, [3215] * 24,
                                             ["-"] * 24)
        return pop.ip

    def surge_pop(self, s: _Surge) -> _Clients:
        key = ("surge", s.key)
        pop = self._pops.get(key)
        if pop is None:
            peak = self.sc.scale * self.sc.services[s.svc].weight
            extra = peak * (s.magnitude - 1) * (s.end - s.start)
            pop = self._pops[key] = _residential(_rng(self.sc.seed, 13, s.key), max(50, int(extra / 20)),
                                                 blocks=self.blocks[s.svc])
        return pop

    def attack_pop(self, a: _Attack) -> _Clients:
        key = ("attack", a.key)
        pop = self._pops.get(key)
        if pop is None:
            rng = _rng(self.sc.seed, 14, a.key)
            pop = self._pops[key] = (
                _residential(rng, a.sources, 0.03) if a.variant in ("residential_botnet", "single_scraper")
                else _proxies(rng, a.sources) if a.variant in ("credential_stuffing", "night_scraping")
                else _crawler(rng, a.sources) if a.variant == "crawler"
                else _hosting(rng, a.sources))
        return pop


def _ramp(t: np.ndarray, start: float, end: float, up: float, down: float) -> np.ndarray:
    return np.clip((t - start) / up, 0, 1) * np.clip((end - t) / down, 0, 1)


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


_SCRAPE_SHARE = np.array([0.02, 0.38, 0.15, 0.4, 0.05])  # a scraper reads pages, rarely logs in
_SKEW = 2.2  # activity skew of users: index = floor(n * u**_SKEW)


def _pick(rng: np.random.Generator, n_pop: int, n: int, skew: float) -> np.ndarray:
    return np.minimum((n_pop * rng.random(n) ** skew).astype(np.int64), n_pop - 1)


def _chunk_requests(w: _World, c0: float, n_sec: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sc = w.sc
    t_sec = c0 + np.arange(n_sec, dtype=float)
    shape = w.shape(c0, n_sec)
    day = w.day_index(c0)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "sec", "svc", "host", "ep", "status", "lat", "ip", "cc", "asn", "ua", "attack")}
    n_hosts = len(w.hosts)
    # per host and second: latency and error factors of a failing drive
    disk_lat = np.ones((n_hosts, n_sec))
    disk_err = np.zeros((n_hosts, n_sec))
    for h in w.failing_hosts:
        f = h.failure
        assert f is not None
        if f.end > c0 and f.start < c0 + n_sec:
            prog = np.clip((t_sec - f.start) / (f.end - f.start), 0, 1)
            inside = (t_sec >= f.start) & (t_sec < f.end)
            disk_lat[h.index] = np.where(inside, 2.5 + (f.magnitude - 2.5) * prog**1.5, 1.0)
            disk_err[h.index] = np.where(inside, 0.01 + 0.15 * prog**2, 0.0)
    for si, svc in enumerate(sc.services):
        usual = sc.scale * svc.weight * w.day_factor[day, si] * shape
        noise = float(rng.lognormal(0.0, 0.03))
        usual = usual * noise
        streams: list[tuple[str, np.ndarray, Any]] = [("normal", usual, None)]
        for s in w.surges:
            if s.svc == si and s.end > c0 and s.start < c0 + n_sec:
                r = _ramp(t_sec, s.start, s.end, s.ramp, 900.0)
                if s.decay:
                    r = r * np.exp(-np.clip(t_sec - s.start - s.ramp, 0.0, None) / s.decay)
                streams.append(("surge", usual * (s.magnitude - 1) * r, s))
        for a in w.attacks:
            if a.svc == si and a.end > c0 and a.start < c0 + n_sec:
                rate = a.rate * usual if a.variant == "crawler" else a.rate
                streams.append(("attack", rate * _ramp(t_sec, a.start, a.end, a.ramp, 30.0), a))
        hosts = w.svc_hosts[si]
        cap = np.full(n_sec, w.capacity[si])
        no5xx = np.zeros(n_sec, dtype=bool)
        deploy = np.ones(n_sec)
        out_host = -1
        out_mask = np.zeros(n_sec, dtype=bool)
        cgnat = np.zeros(n_sec)
        for sp in w.spans:
            if sp.svc == si and sp.end > c0 and sp.start < c0 + n_sec:
                inside = (t_sec >= sp.start) & (t_sec < sp.end)
                if sp.kind == "host_out":
                    out_host, out_mask = sp.host, inside
                    cap = np.where(inside, cap * (len(hosts) - 1) / len(hosts), cap)
                elif sp.kind == "no_5xx":
                    no5xx |= inside
                elif sp.kind == "deploy":
                    deploy = np.where(inside, sp.magnitude, deploy)
                elif sp.kind == "cgnat":
                    cgnat = np.where(inside, sp.magnitude, cgnat)
        load = sum(lam * (obj.cost if kind == "attack" else 1.0) for kind, lam, obj in streams)
        rho = load / cap
        rq = np.minimum(rho, np.where(no5xx, 0.985, 0.97))
        util_lat = 1.0 + 0.3 * rq / (1.0 - rq)
        p_drop = np.where((rho > 1.0) & ~no5xx, 1.0 - 1.0 / np.maximum(rho, 1.0), 0.0)
        p_5xx = np.where(no5xx, 0.0, 0.03 * np.clip((rho - 0.85) / 0.15, 0.0, 1.0))
        for kind, lam, obj in streams:
            counts = rng.poisson(lam)
            n = int(counts.sum())
            if n == 0:
                continue
            sec = np.repeat(np.arange(n_sec), counts)
            variant = obj.variant if kind == "attack" else ""
            rotate_ua = False
            if kind == "attack":
                pop = w.attack_pop(obj)
                ci = rng.integers(0, len(pop), n)
                if variant in ("night_scraping", "single_scraper", "crawler"):
                    # every page, as a reader would, but without the assets
                    ep = rng.choice(len(ENDPOINTS), n, p=_SCRAPE_SHARE)
                    u = rng.random(n)[:, None]
                    status = _STATUSES[np.minimum((u > _STATUS_CUM[ep]).sum(axis=1), len(_STATUSES) - 1)]
                else:
                    ep = np.where(rng.random(n) < 0.95, obj.endpoint, rng.integers(0, len(ENDPOINTS), n))
                    if variant == "residential_botnet" and obj.endpoint != 0:
                        u = rng.random(n)[:, None]
                        status = _STATUSES[np.minimum((u > _STATUS_CUM[ep]).sum(axis=1), len(_STATUSES) - 1)]
                    else:
                        u = rng.random(n)
                        status = _ATTACK_STATUSES[np.searchsorted(_ATTACK_CUM, u * _ATTACK_CUM[-1])]
                rotate_ua = variant in ("credential_stuffing", "night_scraping")
            else:
                returning = kind == "normal" or obj.returning
                pop = w.population(si, day) if returning else w.surge_pop(obj)
                ci = _pick(rng, len(pop), n, _SKEW if kind == "normal" else 1.3)
                if kind == "surge" and obj.endpoint >= 0:
                    ep = np.full(n, obj.endpoint)
                else:
                    ep = rng.choice(len(ENDPOINTS), n, p=_EP_SHARE)
                u = rng.random(n)[:, None]
                status = _STATUSES[np.minimum((u > _STATUS_CUM[ep]).sum(axis=1), len(_STATUSES) - 1)]
            host = hosts[rng.integers(0, len(hosts), n)]
            if out_host >= 0:
                moved = (host == out_host) & out_mask[sec]
                if moved.any():
                    rest = hosts[hosts != out_host]
                    host[moved] = rest[rng.integers(0, len(rest), int(moved.sum()))]
            lat = (w.host_median[host] * _EP_LAT[ep] * rng.lognormal(0.0, 0.45, n)
                   * util_lat[sec] * disk_lat[host, sec])
            tail = rng.random(n) < 0.003
            if tail.any():
                lat[tail] *= 5.0 + rng.pareto(1.5, int(tail.sum())) * 8.0
            d = deploy[sec]
            if (d > 1.0).any():  # a rolling restart: cold caches on the hosts being replaced
                lat = np.where((d > 1.0) & (rng.random(n) < 0.35), lat * d, lat)
            # overload: shed (503, fast) or time out (504 at 30 s); near-overload 5xx
            r = rng.random(n)
            shed = r < p_drop[sec]
            soft = ~shed & (r < p_drop[sec] + p_5xx[sec])
            derr = ~shed & ~soft & (rng.random(n) < disk_err[host, sec])
            if shed.any():
                k = int(shed.sum())
                timeout = rng.random(k) < 0.45
                status[shed] = np.where(timeout, 504, 503)
                lat[shed] = np.where(timeout, 30_000.0 + rng.random(k) * 40.0,
                                     rng.lognormal(np.log(15.0), 0.5, k))
            if soft.any():
                status[soft] = np.where(rng.random(int(soft.sum())) < 0.6, 502, 500)
            if derr.any():
                k = int(derr.sum())
                timeout = rng.random(k) < 0.5
                status[derr] = np.where(timeout, 504, 500)
                lat[derr] = np.where(timeout, 30_000.0 + rng.random(k) * 40.0, lat[derr])
            ip = pop.ip[ci]
            if kind == "normal" and cgnat.any():
                natted = (ci % 1000) < (cgnat[sec] * 1000)
                if natted.any():
                    ip = ip.copy()
                    ip[natted] = w.cgnat_pool(si)[ci[natted] % 24]
            ua = pop.ua[ci]
            if rotate_ua:
                ua = np.array(_ua_choice(rng, _BROWSER_UAS, n), dtype=object)
            cc, asn = pop.country[ci], pop.asn[ci]
            parts = [(sec, host, ep, status, lat, ip, cc, asn, ua)]
            if sc.static_assets and kind != "attack":
                # a browser fetches a page's assets after it (unless cached)
                m = (rng.random(n) < _STATIC_P) & (status < 400)
                k = int(m.sum())
                if k:
                    st = np.where(rng.random(k) < 0.4, 304, 200)
                    slat = w.host_median[host[m]] * _EP_LAT[_STATIC_I] * rng.lognormal(0.0, 0.4, k) * util_lat[sec[m]]
                    parts.append((sec[m], host[m], np.full(k, _STATIC_I), st, slat, ip[m], cc[m], asn[m], ua[m]))
            for psec, phost, pep, pst, plat, pip, pcc, pasn, pua in parts:
                cols["sec"].append(psec)
                cols["svc"].append(np.full(len(psec), si))
                cols["host"].append(phost)
                cols["ep"].append(pep)
                cols["status"].append(pst)
                cols["lat"].append(plat)
                cols["ip"].append(pip)
                cols["cc"].append(pcc)
                cols["asn"].append(pasn)
                cols["ua"].append(pua)
                cols["attack"].append(np.full(len(psec), kind == "attack"))
    if not cols["sec"]:
        return {}
    out = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(out["sec"])
    out["ms"] = out["sec"] * 1000 + rng.integers(0, 1000, n)
    order = np.argsort(out["ms"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    ep = out["ep"]
    status = out["status"]
    size = _EP_BYTES[ep] * rng.lognormal(0.0, 0.6, n)
    size = np.where(status == 304, 0.0, np.where(status >= 400, 180.0 + 400 * rng.random(n), size))
    out["bytes"] = size.astype(np.int64)
    out["epoch"] = rng.random(n) < sc.epoch_ts_ratio
    out["lat"] = np.round(out["lat"], 1)
    return out


def _disk_events(w: _World, c0: float, c1: float, rng: np.random.Generator) -> list[tuple[float, dict]]:
    """Readings of every drive in [c0, c1), in time order."""
    iv = w.sc.disk_interval_s
    due: list[tuple[float, int, _Drive]] = []
    for d in w.drives:
        k = int(np.ceil((c0 - w.start - d.offset_s) / iv))
        t = w.start + d.offset_s + k * iv
        while t < c1:
            if (w.start <= t < w.end and (d.first_ts is None or t >= d.first_ts)
                    and (d.last_ts is None or t <= d.last_ts + 1e-6)):
                due.append((t, d.index, d))
            k += 1
            t += iv
    due.sort(key=lambda x: (x[0], x[1]))
    return [(t, _reading(w, d, t, rng)) for t, _, d in due]


def _reading(w: _World, d: _Drive, ts: float, rng: np.random.Generator) -> dict[str, Any]:
    since = ts - (d.first_ts if d.first_ts is not None else w.start)
    local = datetime.fromtimestamp(ts, w.zone)
    busy = float(np.interp(local.hour * 3600 + local.minute * 60, *_DAY_TABLES["weekday"]))
    io = d.io_ms * (1.0 + 0.25 * busy) * float(rng.lognormal(0.0, 0.08))
    errors = 0
    s5, s187, s188, s197, s198 = d.smart5, 0, 0, 0, 0
    f = d.failing
    if d.db and w.backup:
        sod = local.hour * 3600 + local.minute * 60
        if 2 * 3600 <= sod < 3.5 * 3600:  # the nightly backup reads every block
            io *= w.backup * float(rng.lognormal(0.0, 0.15))
    for t_tick, k_tick in d.ticks:
        if ts >= t_tick:
            s5 += k_tick
    if f is not None and ts >= f.degrade_from and f.silent:
        p = min(1.0, (ts - f.degrade_from) / (f.end - f.degrade_from))
        io *= 1.0 + 6.0 * p**2
        errors = int(rng.poisson(6.0 * p**2))
        if ts >= f.start:
            q = min(1.0, (ts - f.start) / (f.end - f.start))
            io *= 3.0 + 20.0 * q
            errors += int(rng.poisson(5 + 40 * q))
    elif f is not None and ts >= f.degrade_from:
        p = min(1.0, (ts - f.degrade_from) / (f.end - f.degrade_from))
        s5 = int(640 * p**2)
        s187 = int(48 * p**3)
        s197 = max(0, int(96 * p**1.5 + rng.normal(0, 3)))
        s198 = int(24 * p**4)
        s188 = int(3 * p**4)
        io *= 1.0 + 2.0 * p**2
        errors = int(rng.poisson(4.0 * max(0.0, p - 0.5) ** 2))
        if ts >= f.start:
            q = min(1.0, (ts - f.start) / (f.end - f.start))
            io *= 8.0 + 50.0 * q
            errors += int(rng.poisson(10 + 60 * q))
    elif rng.random() < 0.002:
        errors = 1  # a stray error on a healthy drive
    smart = {"5": s5, "187": s187, "188": s188, "197": s197, "198": s198,
             "9": int(d.poh0 + since / 3600.0),
             "194": int(round(d.temp + 3.0 * busy + rng.normal(0, 0.7)))}
    ev: dict[str, Any] = {
        "ts": round(ts, 3) if rng.random() < w.sc.epoch_ts_ratio else _fmt_ms(int(round(ts * 1000))),
        "host": d.host, "disk": d.serial, "model": d.model, "capacity_bytes": d.capacity,
        "smart": smart, "io_latency_ms": round(io, 2), "io_errors": errors,
    }
    if d.last_ts is not None and abs(ts - d.last_ts) < 1e-6:
        ev["failure"] = True
    return ev


def _fmt_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


_HMS: list[str] = []


def _hms() -> list[str]:
    if not _HMS:
        _HMS.extend(f"{h:02d}:{m:02d}:{x:02d}" for h in range(24) for m in range(60) for x in range(60))
    return _HMS


def _iter_chunks(w: _World, lo: float, hi: float) -> Iterator[tuple[float, int, dict, list]]:
    first = int((lo - w.start) // CHUNK_S)
    c = first
    while True:
        c0 = w.start + c * CHUNK_S
        if c0 >= hi or c0 >= w.end:
            return
        n_sec = int(min(CHUNK_S, w.end - c0))
        req = _chunk_requests(w, c0, n_sec, _rng(w.sc.seed, 1, c))
        disks = [x for x in _disk_events(w, c0, c0 + n_sec, _rng(w.sc.seed, 2, c)) if lo <= x[0] < hi]
        yield c0, n_sec, req, disks
        c += 1


def generate(
    scenario: Scenario, start: TimeLike | None = None, end: TimeLike | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(topic, event)`` in nondecreasing event time.

    ``topic`` is ``"requests"`` or ``"disk-health"``. ``start``/``end``
    restrict to a slice ``[start, end)`` of the scenario; the slice holds
    exactly the events that the full run has there.
    """
    w = _World.of(scenario)
    lo = max(w.start, _to_epoch(start)) if start is not None else w.start
    hi = min(w.end, _to_epoch(end)) if end is not None else w.end
    names = w.svc_names
    regions = w.regions
    hnames = w.host_names.tolist()
    for c0, n_sec, req, disks in _iter_chunks(w, lo, hi):
        base_ms = int(round(c0 * 1000))
        if req:
            ms = req["ms"]
            a = int(np.searchsorted(ms, int(round((lo - c0) * 1000)), "left")) if lo > c0 else 0
            b = (int(np.searchsorted(ms, int(round((hi - c0) * 1000)), "left"))
                 if hi < c0 + n_sec else len(ms))
            tms = (ms[a:b] + base_ms).tolist()
            day0 = int(c0 // 86400) * 86400
            date_pre = time.strftime("%Y-%m-%dT", time.gmtime(day0))
            hms = _hms()
            sod0 = int(c0) - day0
            rows = zip(tms, req["epoch"][a:b].tolist(), req["svc"][a:b].tolist(),
                       req["host"][a:b].tolist(), req["ep"][a:b].tolist(),
                       req["status"][a:b].tolist(), req["lat"][a:b].tolist(),
                       req["bytes"][a:b].tolist(), req["ip"][a:b].tolist(),
                       req["cc"][a:b].tolist(), req["asn"][a:b].tolist(),
                       req["ua"][a:b].tolist(), strict=True)
        else:
            rows = iter(())
            date_pre, hms, sod0 = "", [], 0
        di = 0
        nd = len(disks)
        for tm, ep_, si, hi_, ei, st, lat, by, ip, cc, asn, ua in rows:
            while di < nd and disks[di][0] * 1000 <= tm:
                yield DISK_HEALTH, disks[di][1]
                di += 1
            yield REQUESTS, {
                "ts": tm / 1000 if ep_ else f"{date_pre}{hms[sod0 + (tm - base_ms) // 1000]}.{tm % 1000:03d}Z",
                "service": names[si], "host": hnames[hi_], "region": regions[si],
                "endpoint": _ALL_ENDPOINTS[ei], "status": st, "latency_ms": lat, "bytes": by,
                "client_ip": ip, "country": cc, "asn": asn, "user_agent": ua,
            }
        while di < nd:
            yield DISK_HEALTH, disks[di][1]
            di += 1


def ground_truth(scenario: Scenario) -> list[dict[str, Any]]:
    """The incidents of the scenario (times as RFC 3339 Z strings)."""
    return [dict(x) for x in _World.of(scenario).truth]


# --------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------


def write_jsonl(
    scenario: Scenario, out_dir: str | os.PathLike[str],
    start: TimeLike | None = None, end: TimeLike | None = None,
) -> dict[str, int]:
    """Write ``requests.jsonl.gz``, ``disks.jsonl`` and ``truth.json``; return counts."""
    os.makedirs(out_dir, exist_ok=True)
    n_req = n_disk = 0
    dumps = orjson.dumps
    buf: list[bytes] = []
    with gzip.open(os.path.join(out_dir, "requests.jsonl.gz"), "wb", compresslevel=1) as rf, \
            open(os.path.join(out_dir, "disks.jsonl"), "wb") as df:
        for topic, ev in generate(scenario, start, end):
            if topic == REQUESTS:
                buf.append(dumps(ev))
                n_req += 1
                if len(buf) >= 20_000:
                    buf.append(b"")
                    rf.write(b"\n".join(buf))
                    buf.clear()
            else:
                df.write(dumps(ev) + b"\n")
                n_disk += 1
        if buf:
            buf.append(b"")
            rf.write(b"\n".join(buf))
    with open(os.path.join(out_dir, "truth.json"), "wb") as tf:
        tf.write(orjson.dumps(ground_truth(scenario), option=orjson.OPT_INDENT_2) + b"\n")
    return {"requests": n_req, "disk-health": n_disk}


MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "out_of_range", "oversized")


def make_malformed(kind: str, topic: str, event: dict[str, Any], rng: np.random.Generator) -> bytes:
    """A message of ``kind`` (one of MALFORMED_KINDS) derived from a good event."""
    ev = dict(event)
    if kind == "bad_json":
        raw = orjson.dumps(ev)
        return raw[: max(1, int(len(raw) * float(rng.uniform(0.2, 0.9))))]
    if kind == "missing_field":
        ev.pop(("status" if rng.random() < 0.5 else "service") if topic == REQUESTS
               else ("smart" if rng.random() < 0.5 else "disk"), None)
    elif kind == "wrong_type":
        if topic == REQUESTS:
            ev["status"] = str(ev["status"])
        else:
            ev["smart"] = "ok"
    elif kind == "out_of_range":
        if topic == REQUESTS:
            if rng.random() < 0.5:
                ev["status"] = 700
            else:
                ev["latency_ms"] = -abs(float(ev["latency_ms"])) - 1.0
        else:
            ev["io_errors"] = -3
    elif kind == "oversized":
        ev["padding"] = "x" * (70 * 1024)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return orjson.dumps(ev)


def send_to_kafka(
    scenario: Scenario,
    bootstrap_servers: str | Sequence[str],
    requests_topic: str = "requests",
    disk_topic: str = "disk-health",
    speedup: float | None = None,
    start_at: TimeLike | None = None,
    end_at: TimeLike | None = None,
    malformed_ratio: float = 0.0,
    producer_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Produce the scenario (or the slice ``[start_at, end_at)``) to Kafka.

    One KafkaProducer; key = service for requests, host for disks.
    ``speedup`` is event-time seconds per wall second (None: as fast as
    possible). ``malformed_ratio`` adds that share of malformed messages
    (cycling through MALFORMED_KINDS, on the topic of the event they derive
    from) on top of the good ones. Returns the counts sent.
    """
    from kafka import KafkaProducer  # the only Kafka import of the simulator

    if speedup is not None and not speedup > 0:
        raise ValueError("speedup must be > 0")
    if not 0.0 <= malformed_ratio <= 1.0:
        raise ValueError("malformed_ratio must be in [0, 1]")
    cfg: dict[str, Any] = {"linger_ms": 20, "batch_size": 256 * 1024, "acks": 1,
                           "max_request_size": 4 * 1024 * 1024}
    cfg.update(producer_config or {})
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **cfg)
    rng = _rng(scenario.seed, 99)
    counts: dict[str, Any] = {"requests": 0, "disk-health": 0, "malformed": 0,
                              "malformed_by_kind": {k: 0 for k in MALFORMED_KINDS}}
    dumps = orjson.dumps
    wall0 = time.monotonic()
    t0: float | None = None if start_at is None else _to_epoch(start_at)
    next_check = 0
    m_i = 0
    try:
        for i, (topic, ev) in enumerate(generate(scenario, start_at, end_at)):
            if speedup is not None and i >= next_check:
                ts = ev["ts"] if not isinstance(ev["ts"], str) else _to_epoch(ev["ts"])
                if t0 is None:
                    t0 = ts
                ahead = (ts - t0) / speedup - (time.monotonic() - wall0)
                if ahead > 0.005:
                    time.sleep(ahead)
                next_check = i + 50
            if topic == REQUESTS:
                producer.send(requests_topic, key=ev["service"].encode(), value=dumps(ev))
                counts["requests"] += 1
            else:
                producer.send(disk_topic, key=ev["host"].encode(), value=dumps(ev))
                counts["disk-health"] += 1
            if malformed_ratio and rng.random() < malformed_ratio:
                kind = MALFORMED_KINDS[m_i % len(MALFORMED_KINDS)]
                m_i += 1
                key = (ev["service"] if topic == REQUESTS else ev["host"]).encode()
                producer.send(requests_topic if topic == REQUESTS else disk_topic, key=key,
                              value=make_malformed(kind, topic, ev, rng))
                counts["malformed"] += 1
                counts["malformed_by_kind"][kind] += 1
        producer.flush()
    finally:
        producer.close()
    return counts


# --------------------------------------------------------------------------
# Command line: `tocsin simulate`
# --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tocsin simulate``."""
    dest = parser.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="DIR",
                      help="write requests.jsonl.gz, disks.jsonl and truth.json to DIR")
    dest.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                      help="produce to this Kafka cluster")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--history-days", type=int, default=7,
                        help="ordinary days before the incident day (default 7)")
    parser.add_argument("--incident-day", type=date.fromisoformat, default=date(2021, 4, 6),
                        help="YYYY-MM-DD (default 2021-04-06)")
    parser.add_argument("--scale", type=float, default=8.0,
                        help="requests per second of a service at the weekday peak (default 8)")
    parser.add_argument("--concurrent", action="store_true",
                        help="add a fourth incident overlapping the attack")
    parser.add_argument("--world", action="store_true",
                        help="a world drawn from --seed instead of the story: six services, its own date, "
                             "seven incidents and five benign confounders (see world())")
    parser.add_argument("--speedup", type=float, default=None,
                        help="event-time seconds per wall second (Kafka only; default: as fast as possible)")
    parser.add_argument("--start", default=None, help="only events at or after this time (RFC 3339 or epoch)")
    parser.add_argument("--end", default=None, help="only events before this time (RFC 3339 or epoch)")
    parser.add_argument("--requests-topic", default="requests")
    parser.add_argument("--disk-topic", default="disk-health")
    parser.add_argument("--malformed-ratio", type=float, default=0.0,
                        help="share of extra malformed messages (Kafka only; default 0)")


def run(args: argparse.Namespace) -> int:
    """Run ``tocsin simulate``; 0 on success, 2 on bad arguments."""
    try:
        if getattr(args, "world", False):
            sc = world(args.seed, history_days=args.history_days, scale=args.scale)
        else:
            sc = Scenario(seed=args.seed, incident_day=args.incident_day,
                          history_days=args.history_days, scale=args.scale,
                          concurrent=args.concurrent)
        for name in ("start", "end"):
            if getattr(args, name) is not None:
                _to_epoch(getattr(args, name))
        if args.speedup is not None and not args.speedup > 0:
            raise ValueError("--speedup must be > 0")
        if not 0.0 <= args.malformed_ratio <= 1.0:
            raise ValueError("--malformed-ratio must be in [0, 1]")
        if args.out and (args.speedup is not None or args.malformed_ratio):
            raise ValueError("--speedup and --malformed-ratio apply to --bootstrap-servers only")
    except ValueError as exc:
        print(f"tocsin simulate: error: {exc}", file=sys.stderr)
        return 2
    t = time.monotonic()
    if args.out:
        counts: dict[str, Any] = write_jsonl(sc, args.out, args.start, args.end)
        where = args.out
    else:
        counts = send_to_kafka(sc, args.bootstrap_servers, args.requests_topic, args.disk_topic,
                               speedup=args.speedup, start_at=args.start, end_at=args.end,
                               malformed_ratio=args.malformed_ratio)
        where = args.bootstrap_servers
    dt = time.monotonic() - t
    n = counts["requests"] + counts["disk-health"]
    print(f"tocsin simulate: {counts['requests']} requests, {counts['disk-health']} disk readings"
          + (f", {counts['malformed']} malformed" if counts.get("malformed") else "")
          + f" to {where} in {dt:.1f}s ({n / max(dt, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0
