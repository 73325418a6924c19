"""Awkward inputs shared by the tests and ``benchmarks/reliability.py``: image files and IAL rows.

Each case says what must happen to it. An unreadable image is refused with an ``ImageLoadError``
naming it; a convertible one (CMYK, 16-bit, palette, alpha, EXIF-rotated, ...) is localized like
its plain RGB equivalent. A malformed row is refused by ``validate_row`` with a ``ValueError``
naming the row and the field. ``check_image_case``/``check_row_case`` raise ``AssertionError``
(or the unexpected exception itself) when a case is handled otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tiny_models import ADDRESSES, tiny_config, tiny_processor
from transformers import pipeline

from dataset_scripts.schema import IAL_FEATURES, encode_image, validate_row
from modeling_addressclip import AddressCLIPModel, ImageLoadError
from modeling_addressclip.geo import latlon_to_utm
from modeling_addressclip.pipeline_addressclip import TASK

PHOTO = np.random.default_rng(3).integers(0, 256, (24, 36, 3), dtype=np.uint8)
WIDE = (np.linspace(0, 65535, 40)[None, :] * np.ones((30, 1))).astype(np.uint16)  # a 16-bit gradient
ROTATED = np.zeros((20, 40, 3), dtype=np.uint8)  # as stored: left half red, right half blue
ROTATED[:, :20], ROTATED[:, 20:] = (255, 0, 0), (0, 0, 255)
TRANSPARENT_COLUMNS = 10  # the RGBA case's fully transparent left columns


# ----------------------------------------------------------------------------- image writers
def truncated_jpeg(path: Path) -> None:
    Image.fromarray(PHOTO).save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def not_an_image(path: Path) -> None:
    path.write_text("street,address\nMannerheimintie,Kluuvi\n")


def nothing(path: Path) -> None:
    """Write no file (a missing path, or an input that is not a file)."""


def small_png(path: Path) -> None:
    Image.new("RGB", (64, 64)).save(path)


def cmyk_jpeg(path: Path) -> None:
    Image.fromarray(PHOTO).convert("CMYK").save(path, "JPEG", quality=95)


def sixteen_bit_png(path: Path) -> None:
    Image.fromarray(WIDE).save(path)


def palette_png(path: Path) -> None:
    """A 16-colour palette image whose top-left pixel's colour is transparent."""
    image = Image.fromarray(PHOTO).quantize(colors=16)
    index = int(np.asarray(image)[0, 0])
    image.info["transparency"] = index
    image.save(path, transparency=index)


def rgba_png(path: Path) -> None:
    alpha = np.full(PHOTO.shape[:2] + (1,), 255, dtype=np.uint8)
    alpha[:, :TRANSPARENT_COLUMNS] = 0
    Image.fromarray(np.concatenate([PHOTO, alpha], axis=2), "RGBA").save(path)


def gray_png(path: Path) -> None:
    Image.fromarray(PHOTO[..., 0]).save(path)


def one_pixel_png(path: Path) -> None:
    Image.new("RGB", (1, 1), (200, 30, 30)).save(path)


def rotated_jpeg(path: Path) -> None:
    """``ROTATED`` with EXIF orientation 6 (rotate 90° clockwise to display)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(ROTATED).save(path, "JPEG", quality=95, exif=exif)


# ----------------------------------------------------------------------------- what each must look like
def stored_as_rgb(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def eight_bit_gradient(path: Path) -> Image.Image:
    return Image.fromarray(np.rint(WIDE / 257).astype(np.uint8)).convert("RGB")


def opaque_on_white(path: Path) -> Image.Image:
    opaque = PHOTO.copy()
    opaque[:, :TRANSPARENT_COLUMNS] = 255
    return Image.fromarray(opaque)


def gray_as_rgb(path: Path) -> Image.Image:
    return Image.fromarray(PHOTO[..., 0]).convert("RGB")


def turned_clockwise(path: Path) -> Image.Image:
    decoded = np.asarray(Image.open(path).convert("RGB"))  # JPEG-decoded as stored, not rotated
    return Image.fromarray(np.ascontiguousarray(np.rot90(decoded, k=-1)))


@dataclass(frozen=True)
class ImageCase:
    """An awkward image input and what the localizer must do with it.

    ``error`` (a regex after the file's path) means the input must be refused with an ``ImageLoadError``
    naming it; otherwise it must be localized, like ``same_as``'s RGB image when given. ``stored_mode``
    checks that the written file really has the awkward mode. ``source`` replaces the file as the input.
    """

    name: str
    write: Callable[[Path], None]
    error: str | None = None
    stored_mode: str | None = None
    same_as: Callable[[Path], Image.Image] | None = None
    max_image_pixels: int | None = None
    source: object = None


IMAGE_CASES = (
    ImageCase("truncated.jpg", truncated_jpeg, error=""),
    ImageCase("empty.png", zero_bytes, error=""),
    ImageCase("notes.jpg", not_an_image, error=""),
    ImageCase("nowhere/street.jpg", nothing, error="not found"),
    ImageCase("bomb.png", small_png, error="decompression bomb", max_image_pixels=1000),  # 64 x 64 > 2 x limit
    ImageCase("integer input", nothing, error="int", source=42),
    ImageCase("cmyk.jpg", cmyk_jpeg, stored_mode="CMYK", same_as=stored_as_rgb),
    ImageCase("depth16.png", sixteen_bit_png, stored_mode="I", same_as=eight_bit_gradient),
    ImageCase("palette.png", palette_png, stored_mode="P"),
    ImageCase("rgba.png", rgba_png, stored_mode="RGBA", same_as=opaque_on_white),
    ImageCase("gray.png", gray_png, stored_mode="L", same_as=gray_as_rgb),
    ImageCase("dot.png", one_pixel_png),
    ImageCase("rotated.jpg", rotated_jpeg, same_as=turned_clockwise),
)


def tiny_localizer():
    """The image-address-localization pipeline of a tiny random AddressCLIP (seeded) over ``ADDRESSES``."""
    processor = tiny_processor()
    torch.manual_seed(1)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    model.set_address_bank(ADDRESSES, processor)
    return pipeline(TASK, model=model, processor=processor, device="cpu")


def assert_same_prediction(got: list[dict], expected: list[dict], tolerance: float = 1e-5) -> None:
    """Same addresses in the same order, scores equal to ``tolerance``."""
    assert [r["address"] for r in got] == [r["address"] for r in expected], (got, expected)
    scores = zip((r["score"] for r in got), (r["score"] for r in expected))
    assert all(math.isclose(a, b, abs_tol=tolerance) for a, b in scores), (got, expected)


def check_image_case(localizer, case: ImageCase, directory: Path, top_k: int = 3) -> None:
    """Run ``case`` through ``localizer`` (an image-address-localization pipeline) in ``directory``."""
    path = directory / case.name
    if case.source is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        case.write(path)
    source = str(path) if case.source is None else case.source
    limit = Image.MAX_IMAGE_PIXELS
    if case.max_image_pixels is not None:
        Image.MAX_IMAGE_PIXELS = case.max_image_pixels
    try:
        if case.stored_mode is not None:
            mode = Image.open(path).mode
            assert re.match(case.stored_mode, mode), f"{case.name} was written as {mode}, not {case.stored_mode}"
        if case.error is not None:
            named = re.escape(str(path)) if case.source is None else ""
            pattern = ".*".join(p for p in (named, case.error) if p)
            try:
                localizer(source)
            except ImageLoadError as err:
                assert re.search(pattern, str(err)), f"{case.name}: {err!r} does not match {pattern!r}"
                return
            raise AssertionError(f"{case.name}: accepted, but it must raise ImageLoadError matching {pattern!r}")
        got = localizer(source, top_k=top_k)
        assert len(got) == top_k and all(r["address"] in localizer.model.address_bank for r in got), got
        assert all(math.isfinite(r["score"]) for r in got), got
        if case.same_as is not None:
            assert_same_prediction(got, localizer(case.same_as(path), top_k=top_k))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# ----------------------------------------------------------------------------- rows
ADDRESS = "Mannerheimintie between Arkadiankatu and Runeberginkatu, Kamppi"
STRING_FIELDS = ("address", "main_street", "neighborhood", "caption", "utm_zone", "location_id")
NUMBER_FIELDS = ("latitude", "longitude", "utm_east", "utm_north")
HUGE = 10**400  # an int that no float64 holds


def good_row(index: int = 0) -> dict:
    """One valid IAL row (Helsinki); ``index`` varies the image and the location id."""
    east, north, zone = latlon_to_utm(60.17, 24.94)
    return {
        "image": encode_image(Image.new("RGB", (16, 16), (index % 255, 80, 120))),
        "address": ADDRESS,
        "main_street": "Mannerheimintie",
        "cross_streets": ["Runeberginkatu", "Arkadiankatu"],
        "neighborhood": "Kamppi",
        "caption": "A street view of a wide avenue with tram tracks",
        "latitude": 60.17,
        "longitude": 24.94,
        "utm_east": float(east[0]),
        "utm_north": float(north[0]),
        "utm_zone": zone,
        "location_id": f"loc-{index}",
        "heading": 90.0,
    }


@dataclass(frozen=True)
class RowCase:
    """A malformed row and the field its error must name (None: the row is not a mapping)."""

    name: str
    row: object
    field: object


def _replaced(field: str, values: dict[str, object], named: str | None = None) -> list[RowCase]:
    return [
        RowCase(f"{field} = {label}", {**good_row(), field: value}, named or field) for label, value in values.items()
    ]


def bad_rows() -> list[RowCase]:
    """Malformed rows: each field missing, of a wrong type, non-finite, out of range, unparseable or inconsistent."""
    row = good_row()
    not_text = {"None": None, "int": 7, "float": 2.5, "NaN": math.nan, "bool": True, "bytes": b"x", "list": []}
    not_number = {"None": None, "text": "60.17", "bool": True, "list": [60.17], "bytes": b"x", "complex": 1j}
    not_finite = {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf, "huge int": HUGE}
    cases = [RowCase(f"{name} missing", {k: v for k, v in row.items() if k != name}, name) for name in IAL_FEATURES]
    for name in STRING_FIELDS:
        cases += _replaced(name, not_text)
    for name in NUMBER_FIELDS:
        cases += _replaced(name, {**not_number, **not_finite})
    cases += _replaced("latitude", {"91": 91.0, "-90.5": -90.5})
    cases += _replaced("longitude", {"181": 181.0, "-180.5": -180.5})
    cases += _replaced("heading", {**not_number, "inf": math.inf, "-inf": -math.inf, "huge int": HUGE})
    cases += _replaced("heading", {"360": 360.0, "-0.5": -0.5, "400": 400})
    cases += _replaced("image", {"None": None, "int": 7, "bool": True, "list": [], "empty dict": {}})
    cases += _replaced("image", {"no bytes or path": {"bytes": b"", "path": None}, "empty path": {"path": ""}})
    cases += _replaced(
        "cross_streets",
        {
            "None": None,
            "int": 7,
            "a string": "Arkadiankatu",
            "bytes": b"xy",
            "dict": {},
            "empty": [],
            "three": ["A", "B", "C"],
            "int name": [7, "Arkadiankatu"],
            "None names": [None, None],
            "nested list": [["Arkadiankatu"], ["Runeberginkatu"]],
            "one of two": ["Runeberginkatu"],
            "another street": ["Arkadiankatu", "Kaivokatu"],
        },
    )
    unparseable = ["", " ", "Mannerheimintie", "Mannerheimintie, Kamppi", "A between B, C", "A near B, C\\"]
    unparseable += ["A near B (x), C", "A between B and C and D, E", "A near B\n, C", "A between B and B, C"]
    cases += _replaced("address", {repr(text): text for text in unparseable})
    cases += _replaced("main_street", {"other street": "Aleksanterinkatu", "empty": ""})
    cases += _replaced("neighborhood", {"other neighborhood": "Kluuvi"})
    cases += _replaced("utm_zone", {repr(z): z for z in ("", "99Z", "17I", "0T", "61N", "T17", "35 V")})
    moved = {
        "utm_zone": {"wrong zone 34V": "34V", "far zone 1C": "1C"},
        "latitude": {"3 km north": 60.2},
        "longitude": {"1 km east": 24.96},
    }
    for name, values in moved.items():
        cases += _replaced(name, values, named="utm_east")  # lat/lon no longer match utm_east/utm_north
    cases += _replaced("utm_east", {"+100 m": row["utm_east"] + 100})
    cases += _replaced("utm_north", {"+100 m": row["utm_north"] + 100}, named="utm_east")
    cases += _replaced("location_id", {"empty": ""})
    cases.append(RowCase("extra field", {**row, "extra": 1}, "extra"))
    cases.append(RowCase("extra int key", {**row, 1: "x"}, 1))
    cases.append(RowCase("extra keys of two types", {**row, 1: "x", "zz": 2}, 1))
    cases += [RowCase(f"row is {type(r).__name__}", r, None) for r in (None, "row", list(row.items()), 7)]
    return cases


def check_row_case(case: RowCase, where: str = "row 7") -> None:
    """``validate_row`` must refuse ``case.row`` with a ``ValueError`` starting ``"{where}: field {field!r}"``."""
    expected = f"{where}: field {case.field!r}" if case.field is not None else f"{where}: row must be a mapping"
    try:
        validate_row(case.row, where)
    except ValueError as err:
        assert str(err).startswith(expected), f"{case.name}: {err} does not start with {expected!r}"
        return
    raise AssertionError(f"{case.name}: the row was accepted")
