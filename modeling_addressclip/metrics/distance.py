"""Distance accuracy of image address localization: how far the predicted address's place is from the photo.

AddressCLIP (§6.1) scores addresses as text (SSA/SA). When the references carry coordinates, the place of the
top-1 predicted address (``model.address_places``) can also be measured against where each photo was taken,
as image geo-localization does (GeoCLIP's "% within d km"), with thresholds at street scale: the median error
in metres and the share of queries within 25 m, 100 m and 1 km. Distances are geodesic on the WGS84 ellipsoid
(``pyproj.Geod(ellps="WGS84").inv``), exact to well under a millimetre at these scales.

This file is imported by the ``address_accuracy`` evaluate script (which ``evaluate`` copies into its module
cache), so it is imported by its absolute name, ``modeling_addressclip.metrics.distance``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
from pyproj import Geod

DEFAULT_THRESHOLDS_M = (25, 100, 1000)
_GEOD = Geod(ellps="WGS84")


def threshold_key(threshold_m: float) -> str:
    """The result key of one threshold: ``within_25m`` below 1 km, ``within_1km`` for whole kilometres."""
    if threshold_m >= 1000 and threshold_m % 1000 == 0:
        return f"within_{threshold_m / 1000:g}km"
    return f"within_{threshold_m:g}m"


def _thresholds(thresholds_m: Iterable[float]) -> list[float]:
    """Sorted distinct positive finite thresholds in metres; anything else raises naming it."""
    values = [thresholds_m] if isinstance(thresholds_m, numbers.Real) else list(thresholds_m)
    if not values:
        raise ValueError("thresholds_m must name at least one distance in metres, got an empty list")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"thresholds_m must be numbers of metres, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"thresholds_m must be positive and finite, got {value!r}")
    return sorted(set(float(v) for v in values))


def _coordinates(pairs: Sequence, name: str) -> np.ndarray:
    """``(N, 2)`` float array of (latitude, longitude) pairs; a missing, NaN or out-of-range pair raises naming
    ``name[index]``."""
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__len__"):
        raise TypeError(f"{name} must be a sequence of (latitude, longitude) pairs, got {type(pairs).__name__}")
    rows = []
    for i, pair in enumerate(pairs.tolist() if hasattr(pairs, "tolist") else pairs):  # numpy, torch
        where = f"{name}[{i}]"
        if pair is None:
            raise ValueError(f"{where} is None: every query needs a (latitude, longitude) pair")
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"{where} must be a (latitude, longitude) pair, got {pair!r}")
        for value in pair:
            if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{where} must hold two numbers (latitude, longitude), got {pair!r}")
            if not math.isfinite(value):
                raise ValueError(f"{where} has a non-finite coordinate: {pair!r}")
        latitude, longitude = float(pair[0]), float(pair[1])
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise ValueError(f"{where} = {pair!r} is not a (latitude in [-90, 90], longitude in [-180, 180]) pair")
        rows.append((latitude, longitude))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def geodesic_distances(predicted: Sequence, reference: Sequence) -> np.ndarray:
    """Geodesic distance in metres on WGS84 between each predicted and reference (latitude, longitude) pair."""
    pred = _coordinates(predicted, "predicted")
    ref = _coordinates(reference, "reference")
    if len(pred) != len(ref):
        raise ValueError(
            f"predicted and reference must have the same length, got {len(pred)} predicted and {len(ref)} "
            "reference coordinates"
        )
    if len(ref) == 0:
        raise ValueError("distance_accuracy needs at least one query, got empty coordinates")
    _, _, metres = _GEOD.inv(pred[:, 1], pred[:, 0], ref[:, 1], ref[:, 0])
    return np.asarray(metres, dtype=np.float64)


def distance_accuracy(
    predicted: Sequence, reference: Sequence, thresholds_m: Iterable[float] = DEFAULT_THRESHOLDS_M
) -> dict[str, float]:
    """Median geodesic error and the share of queries within each threshold.

    Args:
        predicted: per query, the (latitude, longitude) of the top-1 predicted address's place.
        reference: per query, the (latitude, longitude) where the photo was taken.
        thresholds_m: distances in metres (default 25, 100, 1000); a query within ``d`` has error ``<= d``.

    Returns:
        ``{"median_error_m": float, "within_25m": float, "within_100m": float, "within_1km": float}``: metres,
        then fractions of queries in [0, 1] (keys from :func:`threshold_key`, in increasing distance).

    Raises:
        ValueError: a None, NaN or out-of-range pair (naming ``predicted[i]`` / ``reference[i]``), inputs of
            different lengths, no queries, or a threshold that is not a positive number.
    """
    thresholds = _thresholds(thresholds_m)
    metres = geodesic_distances(predicted, reference)
    result = {"median_error_m": float(np.median(metres))}
    for threshold in thresholds:
        key = threshold_key(threshold)
        if key in result:
            raise ValueError(f"thresholds_m {sorted(thresholds)} give the key {key!r} twice")
        result[key] = float(np.mean(metres <= threshold))
    return result


__all__ = ["DEFAULT_THRESHOLDS_M", "distance_accuracy", "geodesic_distances", "threshold_key"]
