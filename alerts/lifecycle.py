"""Alert lifecycle in event time: pending, firing, resolved, with hysteresis.

A :class:`~detectors.diagnosis.Finding` says "this is wrong now". The
tracker turns findings into alert state changes:

* a new fingerprint waits ``pending_for`` seconds of being seen before it
  fires (0: fire at once);
* a firing alert stays firing while findings keep coming, and
  ``keep_firing_for`` seconds after the last one (a flapping signal makes
  one incident, not ten);
* a firing alert is re-sent (status firing) only when its cause changes for
  a better-supported one or its severity rises: the receivers thread these
  as updates. A cause is better supported when it is named with clearly more
  confidence (0.1), or, for a suspected attack, when the findings have named
  it, and not the alert's cause, ``switch_after`` windows in a row: an
  attack that starts inside a legitimate surge is told by the diagnosis
  changing its mind and holding to it, not by a confidence above the
  surge's. Only towards an attack: an attack explains the saturation it
  causes (its alert says "and saturating it"), while a saturation does not
  explain an attack, so an alert naming an attack is not talked out of it
  by windows that read like a saturation;
* a finding of the same cause while it fires changes nothing a receiver
  sees: the alert keeps the title and evidence it was last sent with (the
  title's numbers always match its evidence, and the resolve says what was
  last reported, which the receivers tell apart from the peak they saw);
* then it resolves, once.

A finding whose ``hold`` is infinite (a failing drive's,
:meth:`detectors.diagnosis.Diagnoser.disk_finding`) makes an alert that no
quiet spell resolves: it stays firing until :meth:`AlertTracker.resolve`
ends it (the drive's failure record, or a new serial in its place). Its
title and evidence are refreshed instead of kept: at most every
``refresh_every`` seconds, when a finding brings different evidence, the
alert is sent again, same status, cause and severity (the receivers see no
change of state, and their reminders say what the drive's counters are now,
not what they were days ago).

Time is passed in (``now``), never read from a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson

from detectors.diagnosis import Finding

from .model import Alert, alert_from_record

__all__ = ["AlertTracker"]

_SEV = {"info": 0, "warning": 1, "critical": 2}
_MAX_IDS = 50


@dataclass(slots=True)
class _Tracked:
    alert: Alert
    first_seen: float
    last_seen: float
    hold: float
    pending: float
    onset: float  # when the problem began (start of the first window it was seen in)
    firing: bool = False
    ids: list[str] = field(default_factory=list)
    sent_at: float = -math.inf  # when its state was last emitted (refreshes are spaced by it)
    unsent: bool = False  # the evidence changed since (an alert open until resolved)
    rival_n: int = 0  # findings in a row naming an attack the alert does not name


class AlertTracker:
    """Findings in, alert state changes out.

    Parameters
    ----------
    pending_for
        Seconds a finding must persist before its alert fires.
    keep_firing_for
        Seconds without a finding before a firing alert resolves (unless the
        finding brings its own ``hold``).
    pending_gap
        A pending (not yet firing) problem unseen for this long starts its
        pending time over: "persisting" means without gaps.
    refresh_every
        An alert that stays open until resolved (infinite ``hold``) is sent
        again with its latest evidence at most this often. Six hours: a
        quarter of the warning reminders' day, so a reminder's counters are
        at most that old, while the ``alerts`` topic (one record per state
        change, by the contract) gets at most four such records a drive a
        day (one a day with daily SMART readings).
    switch_after
        Findings in a row naming ``suspected_attack`` on an alert that names
        another cause, after which the alert takes it even without more
        confidence (0: only a clearly more confident finding changes it).
    """

    def __init__(self, pending_for: float = 0.0, keep_firing_for: float = 300.0, pending_gap: float = 90.0,
                 refresh_every: float = 21600.0, switch_after: int = 2) -> None:
        self.pending_for = pending_for
        self.switch_after = switch_after
        self.keep_firing_for = keep_firing_for
        self.pending_gap = pending_gap
        self.refresh_every = refresh_every
        self._alerts: dict[str, _Tracked] = {}

    @property
    def active(self) -> dict[str, Alert]:
        return {fp: t.alert for fp, t in self._alerts.items() if t.firing}

    def observe(self, finding: Finding) -> list[Alert]:
        """Take one finding; return the alert state changes it causes."""
        now = finding.ts
        hold = finding.hold if finding.hold is not None else self.keep_firing_for
        pending = finding.pending if finding.pending is not None else self.pending_for
        new = Alert(
            labels=dict(finding.labels),
            status="firing",
            severity="critical" if finding.severity == "critical" else "warning",
            title=finding.title,
            cause=finding.cause,
            confidence=finding.confidence,
            starts_at=now,
            evidence=tuple(finding.evidence),
            anomalies=tuple(finding.anomalies[:_MAX_IDS]),
        )
        t = self._alerts.get(new.fingerprint)
        onset = finding.onset if finding.onset is not None else now
        if t is None:
            t = self._alerts[new.fingerprint] = _Tracked(new, now, now, hold, pending, onset,
                                                         ids=list(new.anomalies))
            return self._maybe_fire(t, now)
        if not t.firing and now - t.last_seen > self.pending_gap:
            # A pending problem that went away and came back starts over.
            t.first_seen = now
            t.onset = onset
        t.last_seen = max(t.last_seen, now)
        t.hold = max(t.hold, hold)
        t.pending = min(t.pending, pending)
        for i in finding.anomalies:
            if i not in t.ids and len(t.ids) < _MAX_IDS:
                t.ids.append(i)
        cur = t.alert
        t.rival_n = t.rival_n + 1 if new.cause == "suspected_attack" != cur.cause else 0
        better_cause = new.cause != cur.cause and (
            (cur.cause == "unknown" and new.cause != "unknown")
            or (new.cause != "unknown" and new.confidence >= cur.confidence + 0.1)
            or (self.switch_after > 0 and t.rival_n >= self.switch_after)
        )
        worse = _SEV[new.severity] > _SEV[cur.severity]
        if better_cause or worse:
            if better_cause:
                t.rival_n = 0
            t.alert = replace(
                new, starts_at=cur.starts_at, anomalies=tuple(t.ids),
                severity=max(new.severity, cur.severity, key=_SEV.__getitem__),
            )
            if t.firing:
                t.sent_at = now
                t.unsent = False
                return [t.alert]
        elif new.cause == cur.cause and t.firing and math.isinf(t.hold):
            # Open until resolved (a failing drive): the freshest reading, re-sent now and then.
            t.unsent = t.unsent or (cur.title, cur.evidence) != (new.title, new.evidence)
            t.alert = replace(cur, title=new.title, evidence=new.evidence,
                              confidence=max(cur.confidence, new.confidence), anomalies=tuple(t.ids))
            if t.unsent and now - t.sent_at >= self.refresh_every:
                t.sent_at = now
                t.unsent = False
                return [t.alert]
        elif new.cause == cur.cause and t.firing:
            # Same story: more anomalies behind it; title and evidence stay as reported.
            t.alert = replace(cur, anomalies=tuple(t.ids))
        elif new.cause == cur.cause:
            # Not reported yet: the freshest reading, its title with it.
            t.alert = replace(cur, title=new.title, evidence=new.evidence,
                              confidence=max(cur.confidence, new.confidence), anomalies=tuple(t.ids))
        return self._maybe_fire(t, now)

    def _maybe_fire(self, t: _Tracked, now: float) -> list[Alert]:
        if t.firing or t.last_seen - t.first_seen < t.pending:
            return []
        t.firing = True
        t.sent_at = now
        t.alert = replace(t.alert, starts_at=t.onset, anomalies=tuple(t.ids))
        return [t.alert]

    def resolve(self, fp: str, now: float) -> list[Alert]:
        """Resolve one alert at ``now`` (its drive was replaced); a pending one is dropped."""
        t = self._alerts.pop(fp, None)
        if t is None or not t.firing:
            return []
        return [t.alert.resolved(now)]

    def tick(self, now: float) -> list[Alert]:
        """Advance time: fire pending alerts that are due, resolve quiet ones."""
        out: list[Alert] = []
        for fp, t in list(self._alerts.items()):
            if now - t.last_seen > (t.hold if t.firing else max(self.pending_gap, t.pending)):
                del self._alerts[fp]
                if t.firing:
                    out.append(t.alert.resolved(t.last_seen + t.hold))
            elif not t.firing:
                out.extend(self._maybe_fire(t, now))
        return out

    # -- state for checkpoints -----------------------------------------------
    def export(self) -> dict[str, tuple[dict[str, str | None], bytes]]:
        """Every tracked alert: fingerprint -> (labels, serialised state), for checkpoints.

        JSON (the alert's CONTRACT record and the tracker's times), no pickle;
        an infinite hold (open until resolved) is written ``null``.
        """
        return {
            fp: (t.alert.labels, orjson.dumps({
                "alert": t.alert.to_record(), "first_seen": t.first_seen, "last_seen": t.last_seen,
                "hold": None if math.isinf(t.hold) else t.hold, "pending": t.pending, "onset": t.onset,
                "firing": t.firing, "ids": t.ids, "sent_at": None if math.isinf(t.sent_at) else t.sent_at,
                "unsent": t.unsent, "rival_n": t.rival_n,
            }))
            for fp, t in self._alerts.items()
        }

    def load(self, data: bytes) -> dict[str, str | None]:
        """Take back one alert written by :meth:`export` (a worker was given its partition); its labels."""
        rec = orjson.loads(data)
        alert = alert_from_record(rec["alert"])
        hold, sent = rec["hold"], rec.get("sent_at")
        self._alerts[alert.fingerprint] = _Tracked(
            alert, rec["first_seen"], rec["last_seen"], math.inf if hold is None else hold, rec["pending"],
            rec["onset"], firing=bool(rec["firing"]), ids=list(rec["ids"]),
            sent_at=-math.inf if sent is None else sent, unsent=bool(rec.get("unsent", False)),
            rival_n=int(rec.get("rival_n", 0)))
        return alert.labels

    def forget(self, owned_elsewhere: Callable[[dict[str, str | None]], bool]) -> int:
        """Drop, without resolving them, the alerts whose labels another worker now owns."""
        gone = [fp for fp, t in self._alerts.items() if owned_elsewhere(t.alert.labels)]
        for fp in gone:
            del self._alerts[fp]
        return len(gone)
