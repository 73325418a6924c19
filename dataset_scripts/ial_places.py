"""Where an annotated image was taken: ``Place`` from an ``@``-name or a table row, checked against the zone.

A locator is any ``Callable[[Annotation], Place]`` that raises ``Reject`` for missing or
non-finite coordinates; ``locate_in_zone`` then checks the point lies in the dataset's UTM
zone and returns its latitude/longitude.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dataset_scripts.ial_io import Annotation, Reject
from dataset_scripts.vg_names import is_vg_name, parse_vg_name
from modeling_addressclip.geo import latlon_to_utm, parse_utm_zone, utm_to_latlon, utm_zone_for

__all__ = ["Locator", "Place", "locate_in_zone", "place_from_vg_name", "prefer_table", "table_locator"]

# Valid UTM coordinates: eastings stay within ~167-833 km of a zone's false origin up to 84°N.
_EAST_RANGE = (100_000.0, 900_000.0)
_NORTH_RANGE = (0.0, 10_000_000.0)


@dataclass(frozen=True)
class Place:
    """UTM position, its zone (as the source states it), the location id and the compass heading (NaN if unknown)."""

    east: float
    north: float
    zone: str
    location_id: str
    heading: float = math.nan


Locator = Callable[[Annotation], Place]


def _number(value: Any, name: str, key: str) -> float:
    if value is None or value == "":
        raise Reject("coordinates_missing", f"{key!r} has no {name}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Reject("coordinates_missing", f"{key!r}: {name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise Reject("coordinates_missing", f"{key!r}: {name} is {number!r}")
    return number


def _heading(value: Any) -> float:
    try:
        heading = float(value)
    except (TypeError, ValueError):
        return math.nan
    return heading % 360.0 if math.isfinite(heading) else math.nan


def place_from_vg_name(key: str, zone: str) -> Place:
    """The place of a datasets_vg / SF-XL ``@``-named image; location = pano_id, else the UTM pair."""
    if not is_vg_name(key):
        raise Reject("coordinates_missing", f"{key!r} is not an @-name carrying coordinates")
    try:
        name = parse_vg_name(key)
    except ValueError as err:
        raise Reject("coordinates_missing", str(err)) from None
    east, north = _number(name.utm_east, "UTM east", key), _number(name.utm_north, "UTM north", key)
    stated = name.utm_zone or zone
    location = name.pano_id or f"{east:.2f}_{north:.2f}"
    return Place(east, north, stated, location, _heading(name.heading))


def table_locator(zone: str) -> Locator:
    """Locator for a CSV/JSONL row: ``utm_east``/``utm_north`` (+``utm_zone``) or ``latitude``/``longitude``."""

    def locate(annotation: Annotation) -> Place:
        fields: Mapping[str, Any] = annotation.fields
        key = annotation.key
        if "utm_east" in fields or "utm_north" in fields:
            east, north = (
                _number(fields.get("utm_east"), "utm_east", key),
                _number(fields.get("utm_north"), "utm_north", key),
            )
            stated = str(fields.get("utm_zone") or zone)
        else:
            lat, lon = (
                _number(fields.get("latitude"), "latitude", key),
                _number(fields.get("longitude"), "longitude", key),
            )
            if not (-80.0 <= lat <= 84.0 and -180.0 <= lon <= 180.0):
                raise Reject("coordinates_outside_zone", f"{key!r}: ({lat}, {lon}) is outside UTM's range")
            e, n, stated = latlon_to_utm(lat, lon, zone)
            east, north = float(e[0]), float(n[0])
        location = str(fields.get("location_id") or f"{east:.2f}_{north:.2f}")
        return Place(east, north, stated, location, _heading(fields.get("heading")))

    return locate


def prefer_table(layout: Locator, zone: str) -> Locator:
    """Coordinates from a table row if it has them, else from the raw layout; a row's location_id/heading win."""
    from_table = table_locator(zone)

    def locate(annotation: Annotation) -> Place:
        fields = annotation.fields
        if any(name in fields for name in ("utm_east", "utm_north", "latitude", "longitude")):
            return from_table(annotation)
        place = layout(annotation)
        location = str(fields.get("location_id") or place.location_id)
        heading = _heading(fields["heading"]) if "heading" in fields else place.heading
        return Place(place.east, place.north, place.zone, location, heading)

    return locate


def locate_in_zone(place: Place, zone: str, key: str) -> tuple[float, float]:
    """(latitude, longitude) of ``place``; ``Reject`` unless it is stated in ``zone`` and lies inside it."""
    if not (math.isfinite(place.east) and math.isfinite(place.north)):
        raise Reject("coordinates_missing", f"{key!r}: UTM ({place.east}, {place.north}) is not finite")
    if place.zone.upper() != zone.upper():
        raise Reject("coordinates_outside_zone", f"{key!r} is in zone {place.zone!r}, the dataset is in {zone!r}")
    inside = _EAST_RANGE[0] <= place.east <= _EAST_RANGE[1] and _NORTH_RANGE[0] <= place.north <= _NORTH_RANGE[1]
    if inside:
        lat, lon = (float(v[0]) for v in utm_to_latlon(place.east, place.north, zone))
        inside = math.isfinite(lat) and math.isfinite(lon) and -80.0 <= lat <= 84.0
    if not inside or parse_utm_zone(utm_zone_for(lat, lon))[0] != parse_utm_zone(zone)[0]:
        raise Reject(
            "coordinates_outside_zone", f"{key!r}: UTM ({place.east:.1f}, {place.north:.1f}) is not inside zone {zone}"
        )
    return lat, lon
