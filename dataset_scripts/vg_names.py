"""The datasets_vg / CosPlace / SF-XL image file name: metadata between ``@`` signs.

``@UTM_east@UTM_north@zone_number@zone_letter@lat@lon@pano_id@tile@heading@pitch@roll@height@timestamp@note@.jpg``

Every field may be empty. ``format_vg_name`` and ``parse_vg_name`` are inverses:
``parse_vg_name(format_vg_name(v)) == v`` for every ``VGName`` (numbers are written with
``repr`` so no digit is lost), and real names such as ``@0551248.40@4180740.41@10@S@...``
(zero padded) parse to the same numbers.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, fields

__all__ = ["VGName", "format_vg_name", "is_vg_name", "parse_vg_name"]

_FLOATS = ("utm_east", "utm_north", "latitude", "longitude", "heading", "pitch", "roll", "height")
_INTS = ("zone_number",)


@dataclass(frozen=True)
class VGName:
    """The 14 fields of an ``@``-name; ``None`` where the name leaves a field empty."""

    utm_east: float | None = None
    utm_north: float | None = None
    zone_number: int | None = None
    zone_letter: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    pano_id: str | None = None
    tile: str | None = None
    heading: float | None = None
    pitch: float | None = None
    roll: float | None = None
    height: float | None = None
    timestamp: str | None = None
    note: str | None = None

    @property
    def utm_zone(self) -> str | None:
        """``"10S"`` when both zone parts are present, else None."""
        if self.zone_number is None or self.zone_letter is None:
            return None
        return f"{self.zone_number}{self.zone_letter}"


_NAMES = tuple(f.name for f in fields(VGName))


def _write(name: str, value) -> str:
    if value is None:
        return ""
    if name in _FLOATS:
        if not math.isfinite(value):
            raise ValueError(f"VGName.{name} must be finite or None, got {value!r}")
        return repr(float(value))
    text = str(value)
    if not text or any(ch in text for ch in "@/\\"):
        raise ValueError(f"VGName.{name} must be non-empty without '@', '/' or '\\': {text!r}")
    return text


def format_vg_name(name: VGName, extension: str = ".jpg") -> str:
    """The file name of ``name`` (inverse of ``parse_vg_name``)."""
    return "@" + "@".join(_write(field, getattr(name, field)) for field in _NAMES) + "@" + extension


def _read(field: str, text: str, filename: str):
    if text == "":
        return None
    try:
        if field in _FLOATS:
            return float(text)
        if field in _INTS:
            return int(text)
    except ValueError:
        raise ValueError(f"@-name {filename!r}: field {field!r} is not a number: {text!r}") from None
    return text


def is_vg_name(path: str) -> bool:
    """Whether the last component of ``path`` looks like an ``@``-name (14 fields)."""
    base = posixpath.basename(path.replace("\\", "/"))
    return base.startswith("@") and base.count("@") == len(_NAMES) + 1


def parse_vg_name(path: str) -> VGName:
    """Read the fields of an ``@``-name (a bare file name or a path ending in one)."""
    base = posixpath.basename(path.replace("\\", "/"))
    if not is_vg_name(base):
        raise ValueError(f"not an @-name with {len(_NAMES)} fields: {base!r}")
    parts = base.split("@")[1:-1]
    return VGName(**{field: _read(field, text, base) for field, text in zip(_NAMES, parts)})
