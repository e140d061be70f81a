"""benchmarks/nab.py: the fast threshold sweep of the folds equals NAB's exhaustive one."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "nab_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "nab.py"
)
nab_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nab_bench)

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def _score_at(corpus, scores, prof, thr):
    """NAB's rule, written plainly: each window counts its best detection or a miss."""
    total = 0.0
    for rel, rows in corpus.items():
        best = {}
        for (kind, w, u), s in zip(rows, scores[rel], strict=True):
            if kind == "P":
                continue
            if kind == "W":
                best.setdefault(w, -prof["fn"])
                if s >= thr:
                    best[w] = max(best[w], u * prof["tp"])
            elif s >= thr:
                total += u * prof["fp"]
        total += sum(best.values())
    return total


def _corpus(seed):
    rng = random.Random(seed)
    corpus, scores = {}, {}
    for k in range(5):
        n = rng.randint(30, 80)
        rows = [("P", None, -1.0)] * 5
        w = 0
        i = 5
        while i < n:
            if rng.random() < 0.08:
                length = rng.randint(3, 8)
                rows += [("W", w, 1.0 - j / length) for j in range(length)]
                w += 1
                i += length
            else:
                rows.append(("O", None, rng.uniform(-1.0, 0.0)))
                i += 1
        corpus[f"cat{k % 2}/s{k}.csv"] = rows
        # coarse scores: many ties, as NAB detectors produce
        scores[f"cat{k % 2}/s{k}.csv"] = [round(rng.random(), 1) for _ in rows]
    return corpus, scores


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("pname", list(PROFILES))
def test_sweep_threshold_is_the_exhaustive_optimum_on_every_fold(seed, pname):
    corpus, scores = _corpus(seed)
    prof = PROFILES[pname]
    sweep = nab_bench.Sweep(corpus, scores, prof)
    for train in (set(corpus), {r for r in corpus if r.startswith("cat0")}, set(list(corpus)[1:])):
        sub = {r: corpus[r] for r in train}
        cands = sorted({s for r in train for s in scores[r]} | {1.1}, reverse=True)
        best_thr, best = 1.1, _score_at(sub, scores, prof, 1.1)
        for c in cands:  # decreasing: a tie keeps the higher threshold, as NAB does
            v = _score_at(sub, scores, prof, c)
            if v > best + 1e-12:
                best_thr, best = c, v
        got = sweep.threshold(train)
        assert _score_at(sub, scores, prof, got) == pytest.approx(best)
        assert got == best_thr
