"""The buildings along a sub-street: their parameters, laid on a fixed grid, and their facade texture.

``make_buildings`` gives each building on one side of a sub-street its colour, height, window
rhythm, kind and awning colour from the appearance fields, the block character and its own
seed, so every view of one place shows the same buildings; ``facade_colours`` paints their walls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import shapely

from dataset_scripts.street_camera import Camera
from dataset_scripts.street_style import PALETTE, AppearanceField, StreetStyle, block_character, stable_seed

_PALETTE_RGB = np.array([rgb for _, rgb in PALETTE], dtype=np.float32) / 255.0
STOREY_M = 3.2


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


def stack_sides(left: Buildings, right: Buildings) -> Buildings:
    """Both sides' buildings in one table (left first)."""
    arrays = {f.name: np.concatenate([getattr(left, f.name), getattr(right, f.name)]) for f in fields(Buildings)
              if f.name not in ("first", "names")}  # fmt: skip
    return Buildings(first=0, names=left.names + right.names, **arrays)


def column_index(b: Buildings, u: np.ndarray, length: float, offset: int = 0) -> np.ndarray:
    """Row of ``b`` (plus ``offset``) of the building at along-street ``u``, clipped to those ``b`` holds."""
    return np.clip(np.floor(u / length).astype(int) - b.first, 0, len(b.height) - 1) + offset


def facade_colours(h: np.ndarray, u: np.ndarray, z: np.ndarray, b: Buildings, index: np.ndarray, style: StreetStyle):
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
