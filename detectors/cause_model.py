"""The learned cause model: an online River classifier over the cause features.

:class:`CauseModel` maps the features of a flagged service window
(:func:`feature_vector`: load, harm and its spread, hosts serving, where the
load sits on the service's own curve, who sends the traffic against who
usually does) to one of ``capacity_saturation``, ``suspected_attack``,
``disk_failure`` or ``benign``. It is a ``river.compose`` pipeline:
``StandardScaler | SoftmaxRegression``, trained at start-up from a shipped
text table of labelled windows (``detectors/data/cause_windows.csv``, made
from the simulator's tuning worlds by ``benchmarks/incidents.py
--write-table``), and updated online by :meth:`CauseModel.learn_label` from
the causes people give (the ``labels`` topic, ``tocsin.label.v1``): the
features of recent alerts are kept by fingerprint in a bounded LRU for that.

The printed confidence is not the classifier's probability but the measured
frequency of being right at that probability (a reliability table shipped
with the training table, measured on the tuning worlds; the report-only
worlds' table is printed by the benchmark).

Where River is not used: the per-service baselines the features are deltas
against (``detectors.cause_features``, ``MixBaseline``) are exponentially
weighted means of a dozen floats, learned only on windows that nothing
flagged; River's ``stats.EWMean`` per feature would hold the same number
as a Python object each, ten times the memory per service, for no gain.

>>> m = CauseModel.from_rows([({"log_rate_ratio": 2.0, "d_hosting": 0.8}, "suspected_attack"),
...                           ({"log_rate_ratio": 1.5, "d_hosting": 0.0}, "capacity_saturation")] * 50)
>>> m.predict({"log_rate_ratio": 2.0, "d_hosting": 0.9})[0]
'suspected_attack'
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from river import compose, linear_model, optim, preprocessing

from .cause_features import FEATURE_NAMES, MixFeatures

__all__ = ["CauseModel", "MixBaseline", "CAUSES", "TABLE", "CALIBRATION", "feature_vector"]

CAUSES = ("capacity_saturation", "suspected_attack", "disk_failure", "benign")
_DATA = Path(__file__).with_name("data")
TABLE = _DATA / "cause_windows.csv"
CALIBRATION = _DATA / "cause_calibration.json"

_MIX_FIELDS = ("heavy_share", "single_endpoint_share", "asset_ratio", "assetless_share", "login_fail",
               "auth_fail", "login_share", "known_net_share", "known_asn_share", "ua_churn", "bot_share", "rpc_p90")


class MixBaseline:
    """Usual client mix of one service: EW means of the :class:`MixFeatures` shares (a dozen floats)."""

    __slots__ = ("n", "values")

    def __init__(self) -> None:
        self.n = 0
        self.values = [0.0] * len(_MIX_FIELDS)

    def learn(self, m: MixFeatures, alpha: float = 0.02) -> None:
        if m.requests < 20:
            return
        self.n += 1
        a = max(alpha, 1.0 / self.n)
        for i, name in enumerate(_MIX_FIELDS):
            x = getattr(m, name)
            if name == "rpc_p90":
                x = math.log1p(x)
            self.values[i] += a * (x - self.values[i])

    def usual(self, name: str) -> float:
        return self.values[_MIX_FIELDS.index(name)]


def feature_vector(
    *, rate_ratio: float, p95_ratio: float, error_5xx: float, ratio_4xx: float, ratio_429: float,
    slow_host_share: float, hosts_ratio: float, load_vs_peak: float, composition: dict[str, float],
    mix: MixFeatures | None, base: MixBaseline | None, disk_on_slow_host: bool, disk_anywhere: bool,
) -> dict[str, float]:
    """The model's inputs (:data:`FEATURE_NAMES`), every one a number that stays small."""
    x = {
        "log_rate_ratio": math.log(max(rate_ratio, 0.05)),
        "log_p95_ratio": math.log(max(p95_ratio, 0.05)),
        "error_5xx": error_5xx, "ratio_4xx": ratio_4xx, "ratio_429": ratio_429,
        "slow_host_share": slow_host_share, "hosts_ratio": hosts_ratio,
        "load_vs_peak": min(load_vs_peak, 5.0),
        "disk_on_slow_host": float(disk_on_slow_host), "disk_anywhere": float(disk_anywhere),
    }
    x.update(composition)
    warm = mix is not None and base is not None and base.n >= 20 and mix.requests >= 20
    for name in _MIX_FIELDS:
        if not warm:
            x[name] = 0.0
            continue
        assert mix is not None and base is not None
        v = getattr(mix, name)
        if name == "rpc_p90":
            v = math.log1p(v)
        x[name] = v - base.usual(name)
    x["d_login_share"] = x.pop("login_share")
    return {k: float(x.get(k, 0.0)) for k in FEATURE_NAMES}


def _pipeline() -> compose.Pipeline:
    return preprocessing.StandardScaler() | linear_model.SoftmaxRegression(optimizer=optim.SGD(0.03), l2=1e-4)


class CauseModel:
    """Online cause classifier with calibrated confidence and learning from labels.

    Parameters
    ----------
    lru_size
        Alerts whose features are kept (by fingerprint) for :meth:`learn_label`.
    label_weight
        Times a person's label is learned (it counts more than a simulated window).
    """

    def __init__(self, lru_size: int = 1024, label_weight: int = 5) -> None:
        self.lru_size = lru_size
        self.label_weight = label_weight
        self._model = _pipeline()
        self._recent: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._calibration: list[tuple[float, float]] = []  # (upper bound of the probability bin, accuracy)
        self.n_learned = 0

    # -- training -------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[tuple[dict[str, float], str]], epochs: int = 3, seed: int = 7,
                  **kw: int) -> CauseModel:
        """A model trained on (features, cause) rows, shuffled with ``seed``, ``epochs`` passes."""
        m = cls(**kw)
        data = list(rows)
        # Balance the causes: flagged windows that are nothing (benign) outnumber the
        # incidents' several times; each cause is repeated up to 5 times towards the largest.
        counts: dict[str, int] = {}
        for _, y in data:
            counts[y] = counts.get(y, 0) + 1
        top = max(counts.values(), default=0)
        data = [r for r in data for _ in range(min(5, max(1, round(top / counts[r[1]]))))]
        rng = random.Random(seed)
        for _ in range(epochs):
            rng.shuffle(data)
            for x, y in data:
                m.learn_one(x, y)
        return m

    @staticmethod
    def read_table(path: str | Path = TABLE) -> list[tuple[dict[str, float], str, str]]:
        """The (features, cause, world) rows of a CSV table; world is the ``seed`` column's text
        (the simulated world the window came from), empty when the table has none."""
        with open(path, newline="") as fh:
            rows = [({k: float(v) for k, v in r.items() if k in FEATURE_NAMES}, r["cause"], r.get("seed") or "")
                    for r in csv.DictReader(fh)]
        bad = {y for _, y, _ in rows} - set(CAUSES)
        if bad:
            raise ValueError(f"{path}: unknown causes {sorted(bad)}")
        return rows

    @classmethod
    def from_table(cls, path: str | Path = TABLE, calibration: str | Path | None = CALIBRATION,
                   exclude: Iterable[str] = (), **kw: int) -> CauseModel:
        """A model trained on a CSV table (columns: the features and ``cause``), with its reliability table.

        ``exclude``: worlds (``seed`` column) left out, for out-of-fold measurements.
        """
        out = set(exclude)
        rows = [(x, y) for x, y, w in cls.read_table(path) if w not in out]
        m = cls.from_rows(rows, **kw)
        if calibration is not None and Path(calibration).exists():
            m.set_calibration(json.loads(Path(calibration).read_text())["bins"])
        return m

    @staticmethod
    def write_table(path: str | Path, rows: Iterable[tuple[dict[str, float], str]],
                    worlds: Iterable[str] | None = None) -> int:
        """Write (features, cause) rows as the CSV :meth:`from_table` reads; return the count.

        ``worlds``: the world (seed) of each row, written as a ``seed`` column.
        """
        n = 0
        ws = list(worlds) if worlds is not None else None
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*FEATURE_NAMES, "cause"] + (["seed"] if ws is not None else []))
            for i, (x, y) in enumerate(rows):
                w.writerow([f"{x.get(k, 0.0):.4g}" for k in FEATURE_NAMES] + [y] + ([ws[i]] if ws is not None else []))
                n += 1
        return n

    def learn_one(self, x: dict[str, float], y: str) -> None:
        if y not in CAUSES:
            raise ValueError(f"unknown cause {y!r} (one of {', '.join(CAUSES)})")
        self._model.learn_one(x, y)
        self.n_learned += 1

    # -- labels from people ---------------------------------------------------
    def remember(self, fingerprint: str, x: dict[str, float]) -> None:
        """Keep an alert's features so a later label can be learned (bounded LRU)."""
        self._recent[fingerprint] = x
        self._recent.move_to_end(fingerprint)
        while len(self._recent) > self.lru_size:
            self._recent.popitem(last=False)

    def learn_label(self, fingerprint_or_features: str | dict[str, float], cause: str) -> bool:
        """Learn a cause a person gave (``tocsin.label.v1``); False when the alert's features are gone."""
        if isinstance(fingerprint_or_features, str):
            x = self._recent.get(fingerprint_or_features)
            if x is None:
                return False
        else:
            x = fingerprint_or_features
        for _ in range(self.label_weight):
            self.learn_one(x, cause)
        return True

    # -- prediction -----------------------------------------------------------
    def proba(self, x: dict[str, float]) -> dict[str, float]:
        p = self._model.predict_proba_one(x)
        return {c: float(p.get(c, 0.0)) for c in CAUSES}

    def predict(self, x: dict[str, float]) -> tuple[str, float]:
        """The most likely cause and its probability."""
        p = self.proba(x)
        best = max(CAUSES, key=lambda c: p[c])
        return best, p[best]

    def contributions(self, x: dict[str, float], cause: str, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` features that pushed most towards ``cause`` (weight times scaled value)."""
        scaler = self._model["StandardScaler"]
        w = self._model["SoftmaxRegression"].weights.get(cause, {})
        z = scaler.transform_one(x)
        out = sorted(((name, w.get(name, 0.0) * z.get(name, 0.0)) for name in x), key=lambda t: -t[1])
        return [t for t in out[:k] if t[1] > 0]

    def set_calibration(self, bins: list[list[float]] | list[tuple[float, float]]) -> None:
        self._calibration = sorted((float(a), float(b)) for a, b in bins)

    def confidence(self, p: float) -> float:
        """The measured frequency of being right at probability ``p`` (``p`` itself without a table)."""
        for upper, acc in self._calibration:
            if p <= upper:
                return acc
        return p
