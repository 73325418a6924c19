""" "No confident address": the abstain threshold, calibrated on the query split after training.

The pipeline answers only when the top-1 ``score`` (softmax over the bank) reaches ``min_score``; its
default, ``config.abstain_threshold``, is the top-1 score that keeps a chosen share (``coverage``, 95% by
default) of the in-domain query photos answered. Photos that score lower than nearly every real street
view of the city (a portrait, another city) then get "no confident address". The card reports the whole
coverage / accuracy trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REPORTED_COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.6, 0.4)


@dataclass(frozen=True)
class OperatingPoint:
    """One abstain threshold and what it gives on the query split."""

    threshold: float
    coverage: float  # share of query photos answered
    ssa_at_1: float  # SSA@1 among the answered photos (NaN if none)


def operating_point(scores: Sequence[float], correct: Sequence[bool], coverage: float) -> OperatingPoint:
    """The largest threshold that still answers ``coverage`` of the photos, and its answered SSA@1."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    if scores.size == 0:
        raise ValueError("no query scores to calibrate the abstain threshold on")
    ordered = np.sort(scores)[::-1]
    threshold = float(ordered[max(0, int(np.ceil(coverage * scores.size)) - 1)])
    answered = scores >= threshold
    accuracy = float(correct[answered].mean()) if answered.any() else float("nan")
    return OperatingPoint(threshold, float(answered.mean()), accuracy)


def abstention_curve(
    scores: Sequence[float], correct: Sequence[bool], coverages: Sequence[float] = REPORTED_COVERAGES
) -> list[OperatingPoint]:
    """The trade-off at each of ``coverages``: threshold, share answered, SSA@1 of the answered."""
    return [operating_point(scores, correct, c) for c in coverages]


def calibrate(
    ranked: Sequence[Sequence[str]], references: Sequence[str], scores: Sequence[float], coverage: float = 0.95
) -> tuple[OperatingPoint, list[OperatingPoint]]:
    """The threshold answering ``coverage`` of a localized query split (``AddressCLIPTrainer.last_localization``:
    ranked addresses, references, top-1 scores), and the reported trade-off curve."""
    correct = [bool(row) and row[0] == reference for row, reference in zip(ranked, references)]
    return operating_point(scores, correct, coverage), abstention_curve(scores, correct)


__all__ = ["OperatingPoint", "REPORTED_COVERAGES", "abstention_curve", "calibrate", "operating_point"]
