"""Latitude/longitude <-> UTM (the paper's geography, §4.3) with pyproj, vectorized.

A dataset lives in one UTM zone, chosen from its data (the zone of the median point) and
overridable, so east/north distances are comparable across all its rows. Zones are written
like the datasets write them: number + latitude band letter, e.g. ``"17T"`` (Pittsburgh),
``"10S"`` (San Francisco), ``"35V"`` (Helsinki).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from pyproj import Transformer

_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_ZONE = re.compile(r"^(\d{1,2})([C-HJ-NP-X])$")


def _as_array(values, name: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name} has a non-finite value at index {bad}: {array[bad]!r}")
    return array


def utm_zone_for(latitude: float, longitude: float) -> str:
    """The standard UTM zone (number + band letter) of one point, e.g. ``"17T"``."""
    if not -80.0 <= latitude <= 84.0:
        raise ValueError(f"latitude {latitude} is outside UTM's range [-80, 84]")
    number = int((longitude + 180.0) // 6.0) % 60 + 1
    # Norway/Svalbard exceptions of the UTM grid.
    if 56.0 <= latitude < 64.0 and 3.0 <= longitude < 12.0:
        number = 32
    elif latitude >= 72.0 and 0.0 <= longitude < 42.0:
        number = {0: 31, 1: 31, 2: 33, 3: 33, 4: 35, 5: 35, 6: 37}[int(longitude // 6.0)]
    band = _BANDS[min(int((latitude + 80.0) // 8.0), len(_BANDS) - 1)]
    return f"{number}{band}"


def parse_utm_zone(zone: str) -> tuple[int, bool]:
    """``"17T"`` -> (17, northern=True). Raises ``ValueError`` for anything else."""
    match = _ZONE.match(str(zone).strip().upper())
    if not match or not 1 <= int(match.group(1)) <= 60:
        raise ValueError(f"not a UTM zone like '17T': {zone!r}")
    return int(match.group(1)), match.group(2) >= "N"


def utm_epsg(zone: str) -> int:
    """EPSG code of a WGS84 UTM zone: 326xx north, 327xx south."""
    number, northern = parse_utm_zone(zone)
    return (32600 if northern else 32700) + number


@lru_cache(maxsize=64)
def _transformer(epsg: int, inverse: bool) -> Transformer:
    source, target = ("EPSG:4326", f"EPSG:{epsg}")
    if inverse:
        source, target = target, source
    return Transformer.from_crs(source, target, always_xy=True)


def latlon_to_utm(latitude, longitude, zone: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Project points to one UTM zone: returns (east, north, zone).

    ``zone`` defaults to the zone of the median point, so a whole dataset shares one grid.
    """
    lat = _as_array(latitude, "latitude")
    lon = _as_array(longitude, "longitude")
    if lat.shape != lon.shape:
        raise ValueError(f"latitude and longitude shapes differ: {lat.shape} vs {lon.shape}")
    if zone is None:
        zone = utm_zone_for(float(np.median(lat)), float(np.median(lon)))
    east, north = _transformer(utm_epsg(zone), False).transform(lon, lat)
    return np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64), zone


def utm_to_latlon(east, north, zone: str) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``latlon_to_utm``: returns (latitude, longitude)."""
    e = _as_array(east, "utm_east")
    n = _as_array(north, "utm_north")
    if e.shape != n.shape:
        raise ValueError(f"utm_east and utm_north shapes differ: {e.shape} vs {n.shape}")
    lon, lat = _transformer(utm_epsg(zone), True).transform(e, n)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
