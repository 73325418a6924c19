"""Drawing one street view: sky, ground and facades in perspective, then trees, cars, people, light and noise.

A view looks along the street (one-point perspective, walls per image column) or frontally at the
facades of one side; ``render_view`` picks one by the camera's view and returns the image and
the ``Scene`` it shows.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from dataset_scripts.street_buildings import STOREY_M, column_index, facade_colours, make_buildings, stack_sides
from dataset_scripts.street_camera import WEATHERS, Camera, Frame, Scene, frame_for
from dataset_scripts.street_style import AppearanceField, StreetStyle, stable_seed

CAMERA_M, FAR_M = 1.6, 220.0
LAWN = np.array([0.33, 0.5, 0.25], np.float32)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return ys, xs


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


def _haze(rgb: np.ndarray, z: np.ndarray, weather: str) -> np.ndarray:
    amount = np.clip(z / (140.0 if weather == "hazy" else 320.0), 0, 0.85)[..., None]
    return rgb * (1 - amount) + np.array(WEATHERS[weather][1], np.float32) * amount


def _render_along(camera: Camera, field_: AppearanceField, fr: Frame) -> tuple[np.ndarray, list, Scene]:
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
    b = stack_sides(left_b, right_b)
    index = np.where(right, column_index(right_b, u, st.building_m, len(left_b.height)),
                     column_index(left_b, u, st.building_m))  # fmt: skip
    top = fr.horizon - fr.f * (b.height[index] - CAMERA_M) / z
    bottom = fr.horizon + fr.f * CAMERA_M / z
    wall = (ys >= top) & (ys < bottom) & (b.height[index] > 0)
    h = CAMERA_M + (fr.horizon - ys) * z / fr.f
    facade = facade_colours(h, u, z, b, index, st) * np.where(right, 1.0, 0.85)[None, :, None]
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


def _landmark(kinds: np.ndarray) -> str:
    for code, words in ((1, "a corner tower"), (2, "a modern glass building"), (3, "a small park")):
        if np.any(kinds == code):
            return words
    return ""


def _grid_positions(start: float, stop: float, spacing: float, phase: float) -> np.ndarray:
    """World-fixed positions ``phase + k * spacing`` inside [start, stop]."""
    k0, k1 = np.ceil((start - phase) / spacing), np.floor((stop - phase) / spacing)
    return phase + spacing * np.arange(k0, k1 + 1)


def _nuisance_objects(fr: Frame, st: StreetStyle, scene: Scene, place) -> list:
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


def _along_objects(camera: Camera, fr: Frame, c: float, d: float, scene: Scene) -> list:
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


def _render_facade(camera: Camera, field_: AppearanceField, fr: Frame) -> tuple[np.ndarray, list, Scene]:
    """Frontal view of the facades on one side, across the sidewalk (and road)."""
    st, side = camera.style, (1.0 if camera.view == "right" else -1.0)
    ys, xs = _grid(fr.size)
    c = fr.rng.uniform(-1.0, 1.0) * min(1.0, st.road_m / 4 + 0.3)
    depth = st.road_m / 2 + st.sidewalk_m + c
    u = camera.s - side * (xs[0] - fr.cx) * depth / fr.f
    b = make_buildings(camera, field_, side, float(u.min()), float(u.max()))
    index = column_index(b, u, st.building_m)
    h = CAMERA_M + (fr.horizon - ys) * depth / fr.f
    wall = (h >= 0) & (h < b.height[index][None])
    z = np.full(fr.size, depth, np.float32)
    img = np.where(wall[..., None], facade_colours(h, u, z, b, index, st), _sky(fr.size, fr.horizon, fr.weather))
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


def _draw_objects(image: Image.Image, ops: list, fr: Frame) -> None:
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
    fr = frame_for(camera, size)
    renderer = _render_along if camera.view in ("ahead", "behind") else _render_facade
    rgb, ops, scene = renderer(camera, field_, fr)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    _draw_objects(image, ops, fr)
    weather = WEATHERS[fr.weather]
    light = weather[2] * fr.rng.uniform(0.85, 1.15) * np.array(weather[3], np.float32) * fr.rng.uniform(0.95, 1.05, 3)
    out = np.asarray(image, np.float32) / 255.0 * light
    out += fr.rng.standard_normal(out.shape, dtype=np.float32) * fr.rng.uniform(0.01, 0.03)
    return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8)), scene
