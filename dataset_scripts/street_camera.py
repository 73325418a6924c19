"""One view's camera and what it shows: ``Camera``, per-image weather and intrinsics, ``Scene`` and its caption.

``frame_for`` draws a view's weather, horizon, focal length and centre from the camera's seed;
``caption_for`` describes a ``Scene`` (what was drawn) BLIP style, never naming the street.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from dataset_scripts.street_style import StreetStyle

WEATHERS = {  # name: (sky top, sky horizon, light gain, tint, caption phrase)
    "sunny": ((0.33, 0.55, 0.85), (0.70, 0.82, 0.95), 1.08, (1.04, 1.0, 0.94), "under a clear blue sky"),
    "overcast": ((0.62, 0.64, 0.68), (0.80, 0.81, 0.83), 0.90, (0.97, 0.99, 1.03), "under an overcast sky"),
    "dusk": ((0.28, 0.26, 0.45), (0.93, 0.62, 0.42), 0.78, (1.08, 0.93, 0.85), "at dusk"),
    "hazy": ((0.70, 0.74, 0.78), (0.88, 0.88, 0.86), 0.97, (1.0, 1.0, 1.0), "on a hazy day"),
}
KIND_WORDS = {"avenue": "a wide avenue", "street": "a city street", "narrow": "a narrow street",
              "pedestrian": "a pedestrian street"}  # fmt: skip


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


@dataclass
class Frame:
    """Camera intrinsics with jitter, shared by the two view kinds."""

    size: int
    f: float
    horizon: float
    cx: float
    weather: str
    rng: np.random.Generator


def frame_for(camera: Camera, size: int) -> Frame:
    """The view's weather, horizon, focal length and centre from ``camera.seed``; its rng draws the rest."""
    rng = np.random.default_rng(camera.seed)
    weather = str(rng.choice(list(WEATHERS), p=[0.35, 0.35, 0.1, 0.2]))
    along = camera.view in ("ahead", "behind")
    horizon = size * ((0.52 if along else 0.7) + rng.uniform(-0.04, 0.04))
    focal = size * (0.75 if along else 0.55) * rng.uniform(0.92, 1.08)
    return Frame(size, focal, horizon, size * (0.5 + rng.uniform(-0.05, 0.05)), weather, rng)


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
