"""Where a photo was taken, from its EXIF GPS IFD (tag 0x8825, Exif 2.3 §4.6.6), read with PIL.

* position: ``GPSLatitude``/``GPSLongitude`` as degrees, minutes, seconds (rationals; 1-3 values
  accepted, as some writers store decimal degrees with zero minutes/seconds) signed by
  ``GPSLatitudeRef`` ``N``/``S`` and ``GPSLongitudeRef`` ``E``/``W``. ``GPSStatus`` ``V``
  (measurement void) counts as no position.
* heading: ``GPSImgDirection`` (degrees) is the compass heading only when ``GPSImgDirectionRef``
  is ``T`` (true north). A magnetic (``M``) or unreferenced direction differs from true north by
  the local declination (about 10° in Finland), so it is not stored as a heading: the photo is
  kept with an unknown heading (NaN) and the builder counts it (``ExifGPS.heading_note``).

A photo without a position raises ``GPSError("gps_missing", ...)``; a position that cannot be
read (a zero denominator, minutes >= 60, latitude beyond 90°, a missing or unknown reference)
raises ``GPSError("gps_malformed", ...)``, never a guess.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

__all__ = ["ExifGPS", "GPSError", "parse_gps", "read_exif_gps"]

GPS = ExifTags.GPS


class GPSError(ValueError):
    """No usable position in a photo's EXIF; ``reason`` is ``gps_missing`` or ``gps_malformed``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class ExifGPS:
    """A photo's position (degrees, WGS84), true-north heading (NaN if unknown) and why a heading was not kept."""

    latitude: float
    longitude: float
    heading: float = math.nan
    heading_note: str | None = None  # "heading_magnetic", "heading_unreferenced" or "heading_invalid"


def _text(value: Any) -> str:
    """An EXIF ASCII value (``str`` or ``bytes``) without NUL padding and spaces, upper case."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").upper() if value is not None else ""


def _number(value: Any, tag: str) -> float:
    """One rational as a float; ``gps_malformed`` for a zero denominator or a non-number."""
    if isinstance(value, TiffImagePlugin.IFDRational) and value.denominator == 0:
        raise GPSError("gps_malformed", f"{tag} has a zero denominator ({value.numerator}/0)")
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise GPSError("gps_malformed", f"{tag} value {value!r} is not a number") from None
    if not math.isfinite(number):
        raise GPSError("gps_malformed", f"{tag} is {number!r}")
    return number


def _degrees(gps: Mapping[int, Any], value_tag: GPS, ref_tag: GPS, refs: tuple[str, str], limit: float) -> float:
    """Signed decimal degrees of ``GPSLatitude``/``GPSLongitude`` and its reference (``refs`` = positive, negative)."""
    name, value = value_tag.name, gps.get(value_tag)
    parts = value if isinstance(value, tuple) else (value,)
    if not 1 <= len(parts) <= 3:
        raise GPSError("gps_malformed", f"{name} has {len(parts)} values, expected degrees, minutes, seconds")
    numbers = [_number(part, name) for part in parts]
    if any(n < 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
        raise GPSError("gps_malformed", f"{name} {tuple(numbers)} is not degrees, minutes < 60, seconds < 60")
    degrees = sum(n / 60**i for i, n in enumerate(numbers))
    if degrees > limit:
        raise GPSError("gps_malformed", f"{name} {degrees:g}° is beyond {limit:g}°")
    ref = _text(gps.get(ref_tag))
    if ref not in refs:
        raise GPSError("gps_malformed", f"{ref_tag.name} is {ref or 'missing'!r}, expected {refs[0]!r} or {refs[1]!r}")
    return -degrees if ref == refs[1] else degrees


def _heading(gps: Mapping[int, Any]) -> tuple[float, str | None]:
    """(true-north heading in [0, 360) or NaN, the note saying why a recorded direction was not kept)."""
    if GPS.GPSImgDirection not in gps:
        return math.nan, None
    try:
        direction = _number(gps[GPS.GPSImgDirection], "GPSImgDirection")
    except GPSError:
        return math.nan, "heading_invalid"
    if not 0.0 <= direction <= 360.0:
        return math.nan, "heading_invalid"
    ref = _text(gps.get(GPS.GPSImgDirectionRef))
    if ref != "T":
        return math.nan, "heading_magnetic" if ref == "M" else "heading_unreferenced"
    return direction % 360.0, None


def parse_gps(gps: Mapping[int, Any]) -> ExifGPS:
    """The position and heading of a GPS IFD (``{tag: value}`` as PIL reads it); ``GPSError`` if it has none."""
    if GPS.GPSLatitude not in gps and GPS.GPSLongitude not in gps:
        raise GPSError("gps_missing", "its EXIF has no GPSLatitude/GPSLongitude")
    if _text(gps.get(GPS.GPSStatus)) == "V":
        raise GPSError("gps_missing", "its EXIF GPSStatus is 'V' (measurement void: no fix)")
    for tag in (GPS.GPSLatitude, GPS.GPSLongitude):
        if tag not in gps:
            raise GPSError("gps_malformed", f"its EXIF has no {tag.name}")
    latitude = _degrees(gps, GPS.GPSLatitude, GPS.GPSLatitudeRef, ("N", "S"), 90.0)
    longitude = _degrees(gps, GPS.GPSLongitude, GPS.GPSLongitudeRef, ("E", "W"), 180.0)
    heading, note = _heading(gps)
    return ExifGPS(latitude, longitude, heading, note)


def read_exif_gps(path: str | os.PathLike) -> ExifGPS:
    """``parse_gps`` of the image file at ``path`` (opened lazily: only its header and EXIF are read).

    ``OSError``/``SyntaxError`` if PIL cannot open the file at all; an EXIF block that PIL cannot
    parse is ``gps_malformed``.
    """
    with Image.open(path) as image:
        try:
            gps = dict(image.getexif().get_ifd(ExifTags.IFD.GPSInfo))
        except Exception as err:  # untrusted metadata: any parse failure is a reported row, not a crash
            raise GPSError("gps_malformed", f"its EXIF cannot be read: {type(err).__name__}: {err}") from None
    return parse_gps(gps)
