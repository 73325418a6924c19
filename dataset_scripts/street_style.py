"""The look of the demo city before any drawing: per-street style and the smooth appearance fields.

``street_style`` gives a street's constant character (``StreetStyle``, from its OSM tags and a
name-seeded palette), ``AppearanceField`` the smooth random appearance over UTM metres, and
``block_character`` the character shared by the buildings of one sub-street. ``stable_seed``
turns any printable parts into a seed independent of ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

PALETTE = (  # Helsinki-like facade colours
    ("yellow", (214, 172, 78)), ("pale yellow", (234, 214, 150)), ("beige", (212, 192, 160)),
    ("white", (230, 228, 220)), ("pale green", (172, 198, 152)), ("blue-grey", (138, 160, 182)),
    ("grey", (152, 152, 148)), ("brown", (132, 98, 76)), ("red brick", (164, 74, 54)),
    ("salmon", (218, 140, 112)), ("pink", (224, 172, 172)), ("ochre", (196, 140, 64)),
)  # fmt: skip
PAVEMENTS = (  # per-street sidewalk surfaces (RGB), a street-level cue seen in every view
    (0.62, 0.62, 0.60), (0.62, 0.46, 0.41), (0.70, 0.64, 0.50), (0.44, 0.44, 0.45), (0.52, 0.56, 0.62),
    (0.76, 0.75, 0.72),
)  # fmt: skip


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class StreetStyle:
    """The per-street character: constant along the whole street, a street-level (SA) cue."""

    kind: str  # avenue | street | narrow | pedestrian
    road_m: float  # carriageway width (0 for pedestrian streets)
    sidewalk_m: float
    lanes: int
    tram: bool
    trees: bool
    shops: bool
    storeys: float  # typical number of storeys
    hue: float  # street palette offset in [0, 1)
    accent: tuple[float, float, float]  # awning / shop-sign colour
    building_m: float  # building length along the street
    tree_colour: tuple[float, float, float]
    pavement: tuple[float, float, float] = PAVEMENTS[0]  # sidewalk colour
    asphalt: float = 0.34  # carriageway grey level


def _tag_number(tags: dict, key: str) -> float | None:
    try:
        return float(str(tags.get(key, "")).split(";")[0].split()[0])
    except (ValueError, IndexError):
        return None


def street_style(name: str, highway: str, tags: dict | None = None) -> StreetStyle:
    """Street character from OSM ``highway``/``lanes``/``width``/``tram`` plus a name-seeded palette."""
    tags = tags or {}
    rng = np.random.default_rng(stable_seed("street", name))
    kind = {"trunk": "avenue", "primary": "avenue", "secondary": "street", "tertiary": "street"}.get(highway, "narrow")
    if highway in ("pedestrian", "footway", "living_street"):
        kind = "pedestrian"
    lanes = int(_tag_number(tags, "lanes") or {"avenue": 4, "street": 2, "narrow": 2, "pedestrian": 0}[kind])
    road = _tag_number(tags, "width") or (0.0 if kind == "pedestrian" else 3.2 * max(lanes, 1) + 1.0)
    tram = str(tags.get("tram", "no")).lower() == "yes" or "tram" in str(tags.get("railway", ""))
    return StreetStyle(
        kind=kind, road_m=float(np.clip(road, 0.0, 24.0)), sidewalk_m=float(rng.uniform(2.5, 5.0)),
        lanes=lanes, tram=tram, trees=bool(rng.random() < {"avenue": 0.7, "pedestrian": 0.5}.get(kind, 0.4)),
        shops=bool(rng.random() < {"avenue": 0.8, "pedestrian": 0.9, "street": 0.6}.get(kind, 0.3)),
        storeys=float(rng.uniform(5.0, 7.0) if kind == "avenue" else rng.uniform(3.0, 6.0)),
        hue=float(rng.random()), accent=tuple(float(c) for c in rng.uniform(0.15, 0.9, 3)),
        building_m=float(rng.uniform(13.0, 24.0)),
        tree_colour=tuple(float(c) for c in rng.uniform((0.15, 0.3, 0.1), (0.4, 0.55, 0.25))),
        pavement=PAVEMENTS[int(rng.integers(len(PAVEMENTS)))], asphalt=float(rng.uniform(0.26, 0.42)),
    )  # fmt: skip


class _Waves:
    """Sums of random plane waves over UTM metres; values roughly in [-1.5, 1.5]."""

    def __init__(self, seed: int, channels: int, waves: int, scale_m: tuple[float, float]) -> None:
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * np.pi, (channels, waves))
        wavenumber = 2 * np.pi / rng.uniform(*scale_m, (channels, waves))
        self.kx, self.ky = np.cos(angle) * wavenumber, np.sin(angle) * wavenumber
        self.phase = rng.uniform(0, 2 * np.pi, (channels, waves))
        self.norm = np.sqrt(2.0 / waves)

    def __call__(self, east, north) -> np.ndarray:
        e = np.asarray(east, dtype=np.float64)[..., None, None] % 1e5
        n = np.asarray(north, dtype=np.float64)[..., None, None] % 1e5
        return (np.sin(self.kx * e + self.ky * n + self.phase).sum(-1) * self.norm).astype(np.float32)


class AppearanceField:
    """The smooth random appearance of the city, a function of UTM position.

    ``city(e, n)`` is shared by all streets (150-400 m scale: neighbouring places look
    alike); channels 0 palette, 1 storeys, 2 window pitch, 3 window width, 4 lightness,
    5 landmarks. ``street(e, n, name)`` is a street-specific slice of a finer field
    (100-250 m): channels 0 palette, 1 storeys, 2 window pitch; it makes consecutive
    sub-streets of one street differ gradually.
    """

    def __init__(self, seed: int) -> None:
        self.city = _Waves(stable_seed("city", seed), 6, 4, (150.0, 400.0))
        self._street = _Waves(stable_seed("street-field", seed), 3, 3, (100.0, 250.0))

    def __call__(self, east, north) -> np.ndarray:
        return self.city(east, north)

    def street(self, east, north, name: str) -> np.ndarray:
        shift = np.random.default_rng(stable_seed("slice", name)).uniform(0, 5e4, 2)
        return self._street(np.asarray(east) + shift[0], np.asarray(north) + shift[1])


def block_character(sub_street: str) -> np.ndarray:
    """A sub-street's own character in [-1, 1]: palette shift, storeys, window pitch, window width, and an
    awning colour (3 values) -- shared by its buildings, as a city block between two cross streets is
    often built in one period by one builder; it is what tells two sub-streets of one street apart."""
    return np.random.default_rng(stable_seed("block", sub_street)).uniform(-1, 1, 7).astype(np.float32)
