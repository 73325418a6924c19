"""Procedural street views and their scene captions (the demo city's images).

A view is a deterministic function of
(a) the street's character (``StreetStyle``: width, lanes, tram, trees, shops, palette),
(b) a smooth random ``AppearanceField`` over UTM metres (facade colour, storeys, window
    rhythm at a 150-400 m scale, so neighbouring places look alike),
(b') the block's character (``block_character``: palette shift, height, window rhythm and
    awning colour shared by the buildings of one sub-street, between two cross streets),
(c) the heading (looking along the street in perspective, or at one facade), and
(d) per-image nuisance (weather/light, camera jitter, cars, pedestrians, noise).
Buildings sit on a fixed grid along the sub-street, so every view of one place shows the
same buildings. ``caption_for`` describes what was drawn (BLIP style), never street names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from functools import lru_cache

import numpy as np
import shapely
from PIL import Image, ImageDraw

PALETTE = (  # Helsinki-like facade colours
    ("yellow", (214, 172, 78)), ("pale yellow", (234, 214, 150)), ("beige", (212, 192, 160)),
    ("white", (230, 228, 220)), ("pale green", (172, 198, 152)), ("blue-grey", (138, 160, 182)),
    ("grey", (152, 152, 148)), ("brown", (132, 98, 76)), ("red brick", (164, 74, 54)),
    ("salmon", (218, 140, 112)), ("pink", (224, 172, 172)), ("ochre", (196, 140, 64)),
)  # fmt: skip
_PALETTE_RGB = np.array([rgb for _, rgb in PALETTE], dtype=np.float32) / 255.0
WEATHERS = {  # name: (sky top, sky horizon, light gain, tint, caption phrase)
    "sunny": ((0.33, 0.55, 0.85), (0.70, 0.82, 0.95), 1.08, (1.04, 1.0, 0.94), "under a clear blue sky"),
    "overcast": ((0.62, 0.64, 0.68), (0.80, 0.81, 0.83), 0.90, (0.97, 0.99, 1.03), "under an overcast sky"),
    "dusk": ((0.28, 0.26, 0.45), (0.93, 0.62, 0.42), 0.78, (1.08, 0.93, 0.85), "at dusk"),
    "hazy": ((0.70, 0.74, 0.78), (0.88, 0.88, 0.86), 0.97, (1.0, 1.0, 1.0), "on a hazy day"),
}
PAVEMENTS = (  # per-street sidewalk surfaces (RGB), a street-level cue seen in every view
    (0.62, 0.62, 0.60), (0.62, 0.46, 0.41), (0.70, 0.64, 0.50), (0.44, 0.44, 0.45), (0.52, 0.56, 0.62),
    (0.76, 0.75, 0.72),
)  # fmt: skip
STOREY_M, CAMERA_M, FAR_M = 3.2, 1.6, 220.0
LAWN = np.array([0.33, 0.5, 0.25], np.float32)
KIND_WORDS = {"avenue": "a wide avenue", "street": "a city street", "narrow": "a narrow street",
              "pedestrian": "a pedestrian street"}  # fmt: skip


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


@dataclass(frozen=True)
class Camera:
    """One view: a place on a sub-street (``s`` metres along ``line``) and a relative view."""

    street: str  # main street name (identity seed only, never drawn)
    sub_street: str  # sub-street key (building seeds)
    style: StreetStyle
    line: shapely.LineString
    s: float
    view: str  # ahead | behind | left | right
    seed: int


@dataclass
class Scene:
    """What a rendered view shows; the caption is written from this."""

    view: str
    kind: str
    weather: str
    tram: bool
    trees: int = 0
    shops: bool = False
    colours: list[str] = field(default_factory=list)
    storeys: float = 0.0
    landmark: str = ""
    cars: int = 0
    people: int = 0


# --------------------------------------------------------------------------- buildings


@dataclass
class Buildings:
    """Per-building parameters for buildings ``first .. first+len-1`` on one side."""

    first: int
    colour: np.ndarray  # (n, 3)
    height: np.ndarray  # metres; 0 = park gap
    pitch: np.ndarray  # window pitch (m)
    width: np.ndarray  # window width fraction
    kind: np.ndarray  # 0 block, 1 tower, 2 glass, 3 park
    accent: np.ndarray  # (n, 3) awning / shop-sign colour
    names: list[str]


def _side_point(line: shapely.LineString, s: float, side: float, offset: float) -> tuple[float, float]:
    """UTM point ``offset`` metres to one side (+1 right, -1 left) of ``s`` along ``line`` (extrapolated)."""
    length = max(line.length, 1e-6)
    a, b = line.interpolate(np.clip(s - 1.0, 0, length)), line.interpolate(np.clip(s + 1.0, 0, length))
    dx, dy = b.x - a.x, b.y - a.y
    norm = max(np.hypot(dx, dy), 1e-9)
    base = line.interpolate(np.clip(s, 0, length))
    over = s - np.clip(s, 0, length)
    return (base.x + (dx * over + dy * side * offset) / norm, base.y + (dy * over - dx * side * offset) / norm)


def block_character(sub_street: str) -> np.ndarray:
    """A sub-street's own character in [-1, 1]: palette shift, storeys, window pitch, window width, and an
    awning colour (3 values) -- shared by its buildings, as a city block between two cross streets is
    often built in one period by one builder; it is what tells two sub-streets of one street apart."""
    return np.random.default_rng(stable_seed("block", sub_street)).uniform(-1, 1, 7).astype(np.float32)


def make_buildings(camera: Camera, field_: AppearanceField, side: float, u_min: float, u_max: float) -> Buildings:
    """Buildings on ``side`` covering along-street coordinates ``u_min..u_max``."""
    style, length = camera.style, camera.style.building_m
    first, last = int(np.floor(u_min / length)), int(np.floor(u_max / length))
    centres = [_side_point(camera.line, (b + 0.5) * length, side, style.road_m / 2 + style.sidewalk_m + 4) for b in
               range(first, last + 1)]  # fmt: skip
    values = field_(*np.array(centres).T)
    own = field_.street(*np.array(centres).T, camera.street)
    rng = [np.random.default_rng(stable_seed("building", camera.sub_street, side, b)) for b in range(first, last + 1)]
    jitter = np.array([r.uniform(-1, 1, 4) for r in rng], dtype=np.float32)
    block = block_character(camera.sub_street)
    # Smooth fields give the character of a neighbourhood and a street, the block its own palette, height and
    # window rhythm; each building adds its own identity, stable across every view that sees it.
    position = style.hue * len(PALETTE) + 3.0 * block[0] + values[:, 0] + 1.2 * own[:, 0] + 0.8 * jitter[:, 0]
    position = position % len(PALETTE)
    lower, frac = np.floor(position).astype(int), (position % 1.0)[:, None]
    colour = _PALETTE_RGB[lower % len(PALETTE)] * (1 - frac) + _PALETTE_RGB[(lower + 1) % len(PALETTE)] * frac
    colour = np.clip(colour * (1.0 + 0.1 * values[:, 4:5]), 0, 1)
    storeys = style.storeys + 1.5 * block[1] + 0.6 * values[:, 1] + 0.6 * own[:, 1] + 0.8 * jitter[:, 1]
    storeys = np.clip(np.round(storeys), 2, 9)
    landmark = values[:, 5] + 0.8 * jitter[:, 2]
    kind = np.select([landmark > 1.35, landmark < -1.5, jitter[:, 3] > 0.85], [1, 3, 2], 0)
    height = np.where(kind == 3, 0.0, storeys * STOREY_M + 0.8 + (kind == 1) * 2 * STOREY_M)
    names = [PALETTE[int(round(p)) % len(PALETTE)][0] for p in position]
    pitch = (2.9 + 0.5 * block[2] + 0.2 * values[:, 2] + 0.2 * own[:, 2] + 0.3 * jitter[:, 3]).astype(np.float32)
    width = (0.5 + 0.14 * block[3] + 0.06 * values[:, 3] + 0.06 * jitter[:, 2]).astype(np.float32)
    awning = np.clip(0.3 * np.array(style.accent, np.float32) + 0.5 + 0.4 * block[4:7], 0.05, 0.95)
    accent = np.tile(awning, (len(rng), 1))
    return Buildings(first, colour.astype(np.float32), height.astype(np.float32), pitch, width, kind, accent, names)


def _facade(h: np.ndarray, u: np.ndarray, z: np.ndarray, b: Buildings, index: np.ndarray, style: StreetStyle):
    """Facade colours (H, W, 3) for wall pixels: height ``h`` (pixel), along ``u`` and depth ``z`` (column)."""
    colour = b.colour[index][None]
    top = b.height[index][None]
    pitch = b.pitch[index][None]
    glass = (b.kind[index] == 2)[None]
    fu = (u[None] / pitch) % 1.0
    fh = (h / STOREY_M) % 1.0
    half = np.where(glass, 0.45, b.width[index][None] / 2)
    window = (np.abs(fu - 0.5) < half) & ((fh > 0.3) & (fh < 0.8) | glass) & (h > STOREY_M) & (h < top - 0.8)
    shop = style.shops & (h > 0.3) & (h < 2.6) & (np.abs(fu - 0.5) < 0.42)
    awning = (h >= (2.6 if style.shops else 2.8)) & (h < 3.0)
    cornice = (h >= top - 0.6) | ((b.kind[index] == 1)[None] & (h > top - 2 * STOREY_M) & (fh < 0.12))
    glass_rgb = np.array([0.22, 0.3, 0.38], np.float32)
    out = np.where(cornice[..., None], colour * 0.55, colour)
    fade = np.clip((70.0 - z) / 40.0, 0, 1)[None, :, None]
    out = np.where((window | shop)[..., None], out * (1 - fade) + glass_rgb * fade, out)
    return np.where(awning[..., None], b.accent[index][None], out)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return ys, xs


def _stack(left: Buildings, right: Buildings) -> Buildings:
    """Both sides' buildings in one table (left first)."""
    arrays = {f.name: np.concatenate([getattr(left, f.name), getattr(right, f.name)]) for f in fields(Buildings)
              if f.name not in ("first", "names")}  # fmt: skip
    return Buildings(first=0, names=left.names + right.names, **arrays)


def _column_index(b: Buildings, u: np.ndarray, length: float, offset: int = 0) -> np.ndarray:
    return np.clip(np.floor(u / length).astype(int) - b.first, 0, len(b.height) - 1) + offset


def _sky(size: int, horizon: float, weather: str) -> np.ndarray:
    """Vertical sky gradient, (size, 1, 3): broadcast over the columns."""
    top, low = (np.array(c, np.float32) for c in WEATHERS[weather][:2])
    t = np.clip((np.arange(size, dtype=np.float32) + 0.5) / max(horizon, 1.0), 0, 1)[:, None, None]
    return top * (1 - t) + low * t


def _ground(x_street: np.ndarray, u: np.ndarray, z: np.ndarray, style: StreetStyle, f: float) -> np.ndarray:
    """Road/sidewalk colours for ground pixels at lateral ``x_street``, along ``u``, depth ``z``."""
    half, pixel = style.road_m / 2, 0.6 * z / f + 0.04
    road = np.abs(x_street) < half
    tiles = ((np.floor(x_street) + np.floor(u)) % 2) * np.clip(1 - z / 25, 0, 1) * 0.05
    pavement = np.array(style.pavement, np.float32)
    out = np.where(road[..., None], style.asphalt, pavement + tiles[..., None]).astype(np.float32)
    out = np.where((np.abs(np.abs(x_street) - half) < pixel)[..., None] & (half > 0), 0.5, out)
    if style.lanes >= 2 and half > 0:
        mark = (np.abs(x_street) < pixel) & ((u % 6.0) < 3.0)
        out = np.where(mark[..., None], 0.85, out)
    if style.tram:
        bed = np.abs(x_street) < 2.7
        out = np.where(bed[..., None], out * np.array([1.08, 1.0, 0.9], np.float32), out)
        for rail in (-2.2, -0.8, 0.8, 2.2):
            out = np.where((np.abs(x_street - rail) < pixel * 0.7)[..., None], 0.2, out)
    return out.astype(np.float32)


@dataclass
class _Frame:
    """Camera intrinsics with jitter, shared by the two view kinds."""

    size: int
    f: float
    horizon: float
    cx: float
    weather: str
    rng: np.random.Generator


def _frame(camera: Camera, size: int) -> _Frame:
    rng = np.random.default_rng(camera.seed)
    weather = str(rng.choice(list(WEATHERS), p=[0.35, 0.35, 0.1, 0.2]))
    along = camera.view in ("ahead", "behind")
    horizon = size * ((0.52 if along else 0.7) + rng.uniform(-0.04, 0.04))
    focal = size * (0.75 if along else 0.55) * rng.uniform(0.92, 1.08)
    return _Frame(size, focal, horizon, size * (0.5 + rng.uniform(-0.05, 0.05)), weather, rng)


def _render_along(camera: Camera, field_: AppearanceField, fr: _Frame) -> tuple[np.ndarray, list, Scene]:
    """Perspective view along the street (one-point perspective, walls per image column)."""
    st, d = camera.style, (1.0 if camera.view == "ahead" else -1.0)
    ys, xs = _grid(fr.size)
    c = fr.rng.uniform(-0.3, 0.3) * max(st.road_m / 2, 1.0)
    half = st.road_m / 2 + st.sidewalk_m
    a = (xs[0] - fr.cx) / fr.f
    right = a > 0
    z = np.where(right, (half - c) / np.maximum(a, 1e-4), (half + c) / np.maximum(-a, 1e-4))
    u = camera.s + d * np.minimum(z, FAR_M)
    span = sorted((camera.s, camera.s + d * FAR_M))
    left_b, right_b = (make_buildings(camera, field_, side * d, *span) for side in (-1.0, 1.0))
    b = _stack(left_b, right_b)
    index = np.where(right, _column_index(right_b, u, st.building_m, len(left_b.height)),
                     _column_index(left_b, u, st.building_m))  # fmt: skip
    top = fr.horizon - fr.f * (b.height[index] - CAMERA_M) / z
    bottom = fr.horizon + fr.f * CAMERA_M / z
    wall = (ys >= top) & (ys < bottom) & (b.height[index] > 0)
    h = CAMERA_M + (fr.horizon - ys) * z / fr.f
    facade = _facade(h, u, z, b, index, st) * np.where(right, 1.0, 0.85)[None, :, None]
    img = np.where(wall[..., None], _haze(facade, z[None], fr.weather), _sky(fr.size, fr.horizon, fr.weather))
    r0 = int(np.clip(np.ceil(fr.horizon + 0.5), 0, fr.size))
    zg = fr.f * CAMERA_M / (ys[r0:] - fr.horizon)
    ground = _ground(a * zg + c, camera.s + d * zg, zg, st, fr.f)
    ground = np.where((zg > z)[..., None], LAWN, ground)
    img[r0:] = np.where(wall[r0:, :, None], img[r0:], _haze(ground, zg, fr.weather))
    near = np.unique(index[z < 45]) if np.any(z < 45) else index[:1]
    scene = Scene(camera.view, st.kind, fr.weather, st.tram, shops=st.shops,
                  colours=[b.names[i] for i in near if b.height[i] > 0],
                  storeys=float(np.median(b.height[near])) / STOREY_M, landmark=_landmark(b.kind[near]))  # fmt: skip
    return img, _along_objects(camera, fr, c, d, scene), scene


def _haze(rgb: np.ndarray, z: np.ndarray, weather: str) -> np.ndarray:
    amount = np.clip(z / (140.0 if weather == "hazy" else 320.0), 0, 0.85)[..., None]
    return rgb * (1 - amount) + np.array(WEATHERS[weather][1], np.float32) * amount


def _landmark(kinds: np.ndarray) -> str:
    for code, words in ((1, "a corner tower"), (2, "a modern glass building"), (3, "a small park")):
        if np.any(kinds == code):
            return words
    return ""


def _grid_positions(start: float, stop: float, spacing: float, phase: float) -> np.ndarray:
    """World-fixed positions ``phase + k * spacing`` inside [start, stop]."""
    k0, k1 = np.ceil((start - phase) / spacing), np.floor((stop - phase) / spacing)
    return phase + spacing * np.arange(k0, k1 + 1)


def _nuisance_objects(fr: _Frame, st: StreetStyle, scene: Scene, place) -> list:
    """Passing cars and pedestrians: ``place(lateral, along_offset)`` -> (z, x) or None."""
    ops = []
    for _ in range(int(fr.rng.integers(0, 4)) if st.road_m > 0 else 0):
        spot = place(fr.rng.choice([-1, 1]) * st.road_m / 4, fr.rng.uniform(-25, 60))
        if spot:
            ops.append((*spot, "car", tuple(fr.rng.uniform(0.1, 0.9, 3))))
    for _ in range(int(fr.rng.integers(0, 5))):
        lateral = fr.rng.choice([-1, 1]) * (st.road_m / 2 + fr.rng.uniform(0.5, st.sidewalk_m - 0.5))
        spot = place(lateral, fr.rng.uniform(-15, 35))
        if spot:
            ops.append((*spot, "person", tuple(fr.rng.uniform(0.05, 0.7, 3))))
    scene.cars = sum(op[2] == "car" for op in ops)
    scene.people = sum(op[2] == "person" for op in ops)
    return ops


def _along_objects(camera: Camera, fr: _Frame, c: float, d: float, scene: Scene) -> list:
    st = camera.style

    def place(lateral: float, ahead: float):
        return (ahead, fr.cx + fr.f * (lateral - c) / ahead) if 1.5 < ahead < 120 else None

    ops = []
    if st.trees:
        phase = stable_seed("trees", camera.street) % 9
        for u in _grid_positions(camera.s - 120 * (d < 0), camera.s + 120 * (d > 0), 9.0, phase):
            for side in (-1, 1):
                spot = place(side * (st.road_m / 2 + 0.8), d * (u - camera.s))
                ops += [(*spot, "tree", st.tree_colour)] if spot else []
        scene.trees = 2
    if st.tram:
        ops += [(1.6, fr.cx + fr.f * (x - c) / 1.6, "wire", (x - c, d)) for x in (-1.5, 1.5)]
    return ops + _nuisance_objects(fr, st, scene, place)


def _render_facade(camera: Camera, field_: AppearanceField, fr: _Frame) -> tuple[np.ndarray, list, Scene]:
    """Frontal view of the facades on one side, across the sidewalk (and road)."""
    st, side = camera.style, (1.0 if camera.view == "right" else -1.0)
    ys, xs = _grid(fr.size)
    c = fr.rng.uniform(-1.0, 1.0) * min(1.0, st.road_m / 4 + 0.3)
    depth = st.road_m / 2 + st.sidewalk_m + c
    u = camera.s - side * (xs[0] - fr.cx) * depth / fr.f
    b = make_buildings(camera, field_, side, float(u.min()), float(u.max()))
    index = _column_index(b, u, st.building_m)
    h = CAMERA_M + (fr.horizon - ys) * depth / fr.f
    wall = (h >= 0) & (h < b.height[index][None])
    z = np.full(fr.size, depth, np.float32)
    img = np.where(wall[..., None], _facade(h, u, z, b, index, st), _sky(fr.size, fr.horizon, fr.weather))
    park = (b.height[index] == 0)[None] & (h < 0.9)
    img = np.where(park[..., None], LAWN * 0.8, img)
    r0 = int(np.clip(np.ceil(fr.horizon + fr.f * CAMERA_M / depth), 0, fr.size))
    zg = fr.f * CAMERA_M / (ys[r0:] - fr.horizon)
    img[r0:] = _ground(np.broadcast_to(zg - c, zg.shape), np.broadcast_to(u, zg.shape), zg, st, fr.f)
    centre = index[fr.size // 2]
    scene = Scene(camera.view, st.kind, fr.weather, st.tram, shops=st.shops, colours=[b.names[centre]],
                  storeys=float(b.height[centre]) / STOREY_M, landmark=_landmark(b.kind[index]))  # fmt: skip

    def place(lateral: float, along: float):
        z_obj = lateral * side + c if st.road_m > 0 or lateral * side > 0 else -1
        return (z_obj, fr.cx - side * along * fr.f / z_obj) if 1.0 < z_obj < depth - 0.3 else None

    ops = [
        (
            depth + 3.0,
            fr.cx - side * ((b.first + i + 0.5) * st.building_m - camera.s) * fr.f / (depth + 3.0),
            "tree",
            st.tree_colour,
        )
        for i in np.flatnonzero(b.kind == 3)
    ]  # trees in park gaps
    if st.trees:
        phase = stable_seed("trees", camera.street) % 9
        for t in _grid_positions(float(u.min()) - 3, float(u.max()) + 3, 9.0, phase):
            spot = place(side * (st.road_m / 2 + 0.8), t - camera.s)
            ops += [(*spot, "tree", st.tree_colour)] if spot else []
        scene.trees = len(ops)
    return img, ops + _nuisance_objects(fr, st, scene, place), scene


def _draw_objects(image: Image.Image, ops: list, fr: _Frame) -> None:
    """Paint trees, cars, people and tram wires far to near (painter's algorithm)."""
    draw = ImageDraw.Draw(image)
    for z, x, kind, colour in sorted(ops, key=lambda op: -op[0]):
        k, ground = fr.f / z, fr.horizon + fr.f * CAMERA_M / z
        rgb = tuple(int(255 * np.clip(v, 0, 1)) for v in colour) if kind != "wire" else (40, 40, 40)
        if kind == "tree":
            draw.rectangle([x - 0.15 * k, ground - 3.5 * k, x + 0.15 * k, ground], fill=(70, 55, 40))
            draw.ellipse([x - 2.0 * k, ground - 7.5 * k, x + 2.0 * k, ground - 3.0 * k], fill=rgb)
        elif kind == "car":
            draw.rectangle([x - 0.9 * k, ground - 1.0 * k, x + 0.9 * k, ground - 0.2 * k], fill=rgb)
            draw.rectangle([x - 0.7 * k, ground - 1.5 * k, x + 0.7 * k, ground - 1.0 * k], fill=(40, 50, 60))
            draw.rectangle([x - 0.8 * k, ground - 0.3 * k, x + 0.8 * k, ground], fill=(20, 20, 20))
        elif kind == "person":
            draw.rectangle([x - 0.22 * k, ground - 1.45 * k, x + 0.22 * k, ground], fill=rgb)
            draw.ellipse([x - 0.14 * k, ground - 1.75 * k, x + 0.14 * k, ground - 1.45 * k], fill=(220, 180, 150))
        elif kind == "wire":
            lateral, _ = colour
            far = (fr.cx + fr.f * lateral / FAR_M, fr.horizon - fr.f * 4.4 / FAR_M)
            draw.line([(x, fr.horizon - k * 4.4), far], fill=rgb, width=1)


def render_view(camera: Camera, field_: AppearanceField, size: int = 128) -> tuple[Image.Image, Scene]:
    """Render one view; deterministic in (camera, field seed, size)."""
    fr = _frame(camera, size)
    renderer = _render_along if camera.view in ("ahead", "behind") else _render_facade
    rgb, ops, scene = renderer(camera, field_, fr)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    _draw_objects(image, ops, fr)
    weather = WEATHERS[fr.weather]
    light = weather[2] * fr.rng.uniform(0.85, 1.15) * np.array(weather[3], np.float32) * fr.rng.uniform(0.95, 1.05, 3)
    out = np.asarray(image, np.float32) / 255.0 * light
    out += fr.rng.standard_normal(out.shape, dtype=np.float32) * fr.rng.uniform(0.01, 0.03)
    return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8)), scene


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_for(scene: Scene) -> str:
    """A BLIP-style scene caption from what was drawn (never a street name)."""
    height = "low" if scene.storeys < 3.5 else "tall" if scene.storeys >= 6 else "mid-rise"
    names = list(dict.fromkeys(scene.colours))[:2] or ["pale"]
    street = KIND_WORDS[scene.kind] + (" with tram tracks" if scene.tram else "")
    extras = []
    if scene.landmark:
        extras.append(scene.landmark)
    if scene.trees:
        extras.append("trees on both sides" if scene.view in ("ahead", "behind") else "trees in front")
    extras += ["cars"] * bool(scene.cars) + ["people walking"] * bool(scene.people)
    if scene.view in ("ahead", "behind"):
        shops = " with shop fronts" if scene.shops else ""
        main = f"A street view of {street}, {height} {' and '.join(names)} buildings{shops}"
    else:
        shops = " with shop fronts" if scene.shops else ""
        main = f"A street view of a {height} {names[0]} building{shops} seen from across {street}"
    tail = f" with {_join(extras)}" if extras else ""
    return f"{main}{tail} {WEATHERS[scene.weather][4]}"
