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

This module is the public entry point; the code lives in ``street_style`` (street style,
appearance fields, block character), ``street_camera`` (camera, weather and intrinsics,
scene and caption), ``street_buildings`` (building parameters and facade texture) and
``street_render`` (drawing a view).
"""

from __future__ import annotations

from dataset_scripts.street_buildings import STOREY_M, Buildings, make_buildings
from dataset_scripts.street_camera import KIND_WORDS, WEATHERS, Camera, Scene, caption_for
from dataset_scripts.street_render import CAMERA_M, FAR_M, LAWN, render_view
from dataset_scripts.street_style import (
    PALETTE,
    PAVEMENTS,
    AppearanceField,
    StreetStyle,
    block_character,
    stable_seed,
    street_style,
)

__all__ = [
    "CAMERA_M",
    "FAR_M",
    "KIND_WORDS",
    "LAWN",
    "PALETTE",
    "PAVEMENTS",
    "STOREY_M",
    "WEATHERS",
    "AppearanceField",
    "Buildings",
    "Camera",
    "Scene",
    "StreetStyle",
    "block_character",
    "caption_for",
    "make_buildings",
    "render_view",
    "stable_seed",
    "street_style",
]
