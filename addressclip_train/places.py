"""Where each address of the bank is: its place (a point on its sub-street) and the sub-street's line.

Method (:func:`street_geometry`, vectorised over all rows at once, in UTM metres):

* the **place** of an address is the member image position nearest the members' mean. For street-level
  images the mean of a sub-street's positions can lie off the street (a bend, an L-shaped block); the
  nearest member is always a position where a photo was taken, on the street.
* the **line** is the members ordered along their principal direction (the major axis of their 2x2
  covariance, so a sub-street between two cross streets is traced end to end), then simplified with
  Douglas-Peucker (shapely ``simplify``, :data:`SIMPLIFY_TOLERANCE_M` = 2 m): a straight sub-street keeps
  its two ends, a bent one its corners. One member gives a one-point line.

:func:`address_places` applies it to the ``latitude``/``longitude`` of a dataset's train and database rows
(projected to the dataset's UTM zone with ``modeling_addressclip.geo``, and back to lat/lon), giving the
``address_places`` that ``AddressCLIPModel.set_address_bank(..., places=...)`` saves with the model.
:class:`StreetMap` is the same geometry in metres for drawing (``addressclip map``, the web demo).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import shapely

from modeling_addressclip.configuration_addressclip import PLACE_DECIMALS
from modeling_addressclip.geo import latlon_to_utm, utm_to_latlon

logger = logging.getLogger(__name__)
SIMPLIFY_TOLERANCE_M = 2.0


def street_geometry(
    east: np.ndarray, north: np.ndarray, group: np.ndarray, size: int, tolerance_m: float = SIMPLIFY_TOLERANCE_M
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Per group ``0..size-1`` of points in metres: (row index of its place, -1 if it has no points; its line).

    The place is the member nearest the members' mean; the line is the members ordered along their principal
    direction and simplified by ``tolerance_m`` (``(k, 2)`` east/north, k >= 1), None for an empty group.
    """
    east, north, group = (np.asarray(a) for a in (east, north, group))
    counts = np.bincount(group, minlength=size).astype(float)
    filled = counts > 0
    safe = np.where(filled, counts, 1.0)
    dx = east - (np.bincount(group, east, size) / safe)[group]
    dy = north - (np.bincount(group, north, size) / safe)[group]
    by_distance = np.lexsort((dx * dx + dy * dy, group))  # rows by group, nearest the mean first
    firsts = by_distance[_group_starts(group[by_distance])]
    place = np.full(size, -1, dtype=np.int64)
    place[group[firsts]] = firsts
    # Principal direction of each group: the major axis of its covariance, angle 0.5 * atan2(2 sxy, sxx - syy).
    sxx, syy, sxy = (np.bincount(group, w, size) for w in (dx * dx, dy * dy, dx * dy))
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    along = dx * np.cos(angle)[group] + dy * np.sin(angle)[group]
    order = np.lexsort((along, group))
    groups, dense = np.unique(group[order], return_inverse=True)
    twice = np.where(counts[group[order]] == 1, 2, 1)  # a LineString needs 2 points: a lone one is doubled
    xy = np.repeat(np.stack([east[order], north[order]], axis=1), twice, axis=0)
    lines = shapely.linestrings(xy, indices=np.repeat(dense, twice))
    simplified = shapely.simplify(lines, tolerance_m, preserve_topology=False)  # Douglas-Peucker
    coords, owner = shapely.get_coordinates(simplified, return_index=True)
    keep = np.ones(len(coords), dtype=bool)  # drop repeated vertices (several views at one position)
    keep[1:] = (owner[1:] != owner[:-1]) | np.any(coords[1:] != coords[:-1], axis=1)
    coords, owner = coords[keep], owner[keep]
    out: list[np.ndarray | None] = [None] * size
    for dense_index, chunk in zip(np.unique(owner), np.split(coords, _group_starts(owner)[1:]), strict=True):
        out[int(groups[dense_index])] = chunk
    return place, out


def _group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """Indices where a new group begins in a sorted group array."""
    if len(sorted_groups) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])


def _columns(split, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``names`` of every row as arrays (images never decoded), or None when the split lacks one of them."""
    if not set(names) <= set(split.column_names or ()):
        return None
    columns = split.select_columns(list(names))
    if isinstance(split, datasets.Dataset):  # arrow, not the numpy format: that one casts float64 to float32
        table = columns.with_format("arrow")[:]
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in names}
    rows = list(columns)  # a streaming split: read once, these columns only
    return {name: np.asarray([row[name] for row in rows]) for name in names}


def data_zone(splits: Sequence) -> str | None:
    """The most common ``utm_zone`` of the rows of ``splits`` (a dataset lives in one zone), None without one."""
    zones: Counter[str] = Counter()
    for split in splits:
        table = _columns(split, ("utm_zone",))
        if table is not None:
            zones.update(str(z) for z in table["utm_zone"])
    return zones.most_common(1)[0][0] if zones else None


def _coordinates(bank_index: dict[str, int], splits) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """(latitude, longitude, bank index, the data's most common UTM zone) of every usable row of ``splits``; rows of
    addresses outside the bank are not used."""
    lat, lon, ids, zones = [], [], [], Counter()
    for split in splits:
        zone = ("utm_zone",) if "utm_zone" in (split.column_names or ()) else ()
        table = _columns(split, ("address", "latitude", "longitude", *zone))  # one pass, also for a streaming split
        if table is None:
            logger.warning("address_places: a split has no latitude/longitude columns; its rows give no place")
            continue
        lat.append(np.asarray(table["latitude"], dtype=float))
        lon.append(np.asarray(table["longitude"], dtype=float))
        ids.append(np.fromiter((bank_index.get(str(a), -1) for a in table["address"]), np.int64, len(lat[-1])))
        zones.update(str(z) for z in table.get("utm_zone", ()))
    if not lat:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), None
    lat, lon, ids = np.concatenate(lat), np.concatenate(lon), np.concatenate(ids)
    usable = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    if not usable.all():
        bad = int((~usable).sum())
        logger.warning(f"address_places: {bad} of {len(lat)} rows lack a usable latitude/longitude (NaN, out of range)")
    usable &= ids >= 0
    return lat[usable], lon[usable], ids[usable], (zones.most_common(1)[0][0] if zones else None)


def address_places(bank: Sequence[str], *splits, tolerance_m: float = SIMPLIFY_TOLERANCE_M) -> list[dict | None]:
    """The place of every ``bank`` address from the ``latitude``/``longitude`` of its rows in ``splits``.

    Entry i is ``{"latitude", "longitude", "line": [[lat, lon], ...]}`` (the method: this module's docstring), or
    None when no row of ``splits`` gives address i a usable coordinate (no such columns, NaN, out of range).
    Positions are projected into the dataset's UTM zone (its ``utm_zone`` column, else the zone of the median
    point) for the metric steps, and the line converted back with ``modeling_addressclip.geo``.
    """
    bank = [str(a) for a in bank]
    lat, lon, ids, zone = _coordinates({a: i for i, a in enumerate(bank)}, splits)
    places: list[dict | None] = [None] * len(bank)
    if len(lat) == 0:
        return places
    east, north, zone = latlon_to_utm(lat, lon, zone)
    place, lines = street_geometry(east, north, ids, len(bank), tolerance_m)
    vertices = np.concatenate([line for line in lines if line is not None])
    line_lat, line_lon = utm_to_latlon(vertices[:, 0], vertices[:, 1], zone)
    line_points = np.round(np.stack([line_lat, line_lon], axis=1), PLACE_DECIMALS).tolist()
    start = 0
    for i, line in enumerate(lines):
        if line is None:
            continue
        row = place[i]
        places[i] = {
            "latitude": round(float(lat[row]), PLACE_DECIMALS),
            "longitude": round(float(lon[row]), PLACE_DECIMALS),
            "line": line_points[start : start + len(line)],
        }
        start += len(line)
    missing = places.count(None)
    if missing:
        logger.warning(f"address_places: {missing} of {len(bank)} bank addresses have no row with coordinates")
    return places


def has_places(places: Sequence[dict | None] | None) -> bool:
    """Whether any address of a bank has a place."""
    return any(place is not None for place in places or ())


@dataclass
class StreetMap:
    """The streets of an address bank in one UTM zone, in metres, for drawing.

    ``centres[address]`` is its place (east, north); ``lines[address]`` its sub-street, ``(k, 2)``. ``images``
    holds the dataset's image positions when the map was traced from them (no model places), else None.
    """

    zone: str
    centres: dict[str, tuple[float, float]]
    lines: dict[str, np.ndarray]
    images: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_places(cls, bank: Sequence[str], places: Sequence[dict | None], zone: str | None = None) -> StreetMap:
        """From a model's ``address_places`` (lat/lon), projected to ``zone`` (default: the places' median)."""
        known = [(str(a), p) for a, p in zip(bank, places, strict=True) if p is not None]
        if not known:
            raise ValueError("no address of the bank has a place")
        lines = [p["line"] or [[p["latitude"], p["longitude"]]] for _, p in known]
        points = np.asarray([[p["latitude"], p["longitude"]] for _, p in known] + [v for line in lines for v in line])
        east, north, zone = latlon_to_utm(points[:, 0], points[:, 1], zone)
        metres = np.stack([east, north], axis=1)
        pieces = np.split(metres[len(known) :], np.cumsum([len(line) for line in lines])[:-1])
        centres = {a: (float(e), float(n)) for (a, _), (e, n) in zip(known, metres[: len(known)], strict=True)}
        return cls(zone, centres, {a: piece for (a, _), piece in zip(known, pieces, strict=True)})

    @classmethod
    def from_images(cls, splits: Sequence) -> StreetMap:
        """Traced from datasets' image positions (``address``, ``utm_east``, ``utm_north``): :func:`street_geometry`."""
        tables = [_columns(split, ("address", "utm_east", "utm_north")) for split in splits]
        tables = [t for t in tables if t is not None and len(t["address"])]
        if not tables:
            raise ValueError("no split has rows with address, utm_east and utm_north to draw the streets from")
        address = np.concatenate([t["address"] for t in tables]).astype(str)
        east, north = (np.concatenate([t[c] for t in tables]).astype(float) for c in ("utm_east", "utm_north"))
        names, group = np.unique(address, return_inverse=True)
        place, lines = street_geometry(east, north, group, len(names))
        centres = {str(a): (float(east[row]), float(north[row])) for a, row in zip(names, place, strict=True)}
        lines = dict(zip(map(str, names), lines, strict=True))
        return cls(data_zone(splits) or "", centres, lines, np.stack([east, north], axis=1))


def street_map(model, splits: Sequence | None = None) -> StreetMap:
    """The streets to draw under a model's predictions: its bank's places (in the zone of ``splits`` when given,
    so they line up with those rows' UTM positions), else traced from the image positions of ``splits``."""
    places = getattr(model, "address_places", None)
    if has_places(places):
        return StreetMap.from_places(model.address_bank, places, data_zone(splits or ()))
    if not splits:
        raise ValueError("the model's address bank has no places, and no dataset was given to trace the streets from")
    return StreetMap.from_images(splits)


__all__ = [
    "SIMPLIFY_TOLERANCE_M",
    "StreetMap",
    "address_places",
    "data_zone",
    "has_places",
    "street_geometry",
    "street_map",
]
