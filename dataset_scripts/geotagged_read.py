"""The photos of a geotagged build and where each was taken: a folder (EXIF GPS) or a CSV table.

``photos_from_folder`` reads every image file below a folder (by suffix, recursively, sorted), after
checking it decodes under the one image policy (``image_utils.load_image``), its position and heading
from EXIF (``geotagged_exif``). ``photos_from_table`` reads ``image,latitude,longitude`` and optionally
``heading,caption,location_id`` from a CSV (the table is the source of truth: EXIF is not read). A
photo without a usable position is a ``Photo`` carrying its reason; a malformed table raises
``ValueError`` naming the file, row and field.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.geotagged_exif import GPSError, read_exif_gps
from dataset_scripts.ial_io import ImageKeys, Reject
from modeling_addressclip.image_utils import load_image

__all__ = ["IMAGE_SUFFIXES", "TABLE_COLUMNS", "Photo", "photo_files", "photos_from_folder", "photos_from_table"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif")
TABLE_REQUIRED = ("image", "latitude", "longitude")
TABLE_COLUMNS = (*TABLE_REQUIRED, "heading", "caption", "location_id")


@dataclass(frozen=True)
class Photo:
    """One photo as its source gives it: position (degrees) and heading, or the reason it has none."""

    key: str
    source: str
    latitude: float | None = None
    longitude: float | None = None
    heading: float = math.nan
    caption: str = ""
    location_id: str | None = None
    heading_note: str | None = None
    reject: tuple[str, str] | None = None  # (reason, detail)


def photo_files(folder: Path) -> tuple[list[str], list[str]]:
    """(image keys, other file keys) below ``folder``, sorted; keys are ``/``-separated relative paths."""
    images, others = [], []
    for directory, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted(names):
            key = Path(directory, name).relative_to(folder).as_posix()
            (images if name.lower().endswith(IMAGE_SUFFIXES) else others).append(key)
    return images, others


def _photo_from_file(images: ImageKeys, key: str, source: str) -> Photo:
    """The EXIF position of one file; unreadable under the image policy or without GPS: a ``Photo`` with its reason."""
    try:
        path, _ = images.resolve(key)
    except Reject as reject:  # build_ial meets the same reason when it resolves the key
        return Photo(key, source, reject=(reject.reason, reject.detail))
    try:
        load_image(path, draft=1)  # the one image policy decides what is readable
        gps = read_exif_gps(path)
    except GPSError as err:
        return Photo(key, source, reject=(err.reason, f"{key!r}: {err.detail}"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return Photo(key, source, reject=("image_unreadable", f"{key!r}: {err}"))
    return Photo(key, source, gps.latitude, gps.longitude, gps.heading, heading_note=gps.heading_note)


def photos_from_folder(folder: Path, progress: bool | None = None) -> tuple[list[Photo], list[str]]:
    """(photos, keys of the files not read as photos: no image suffix) of every image file below ``folder``."""
    keys, others = photo_files(folder)
    images = ImageKeys.under(folder, "--photos")
    bar = tqdm(keys, unit=" photos", desc="reading EXIF", disable={True: False, False: True, None: None}[progress])
    return [_photo_from_file(images, key, f"{folder.name}/{key}") for key in bar], others


def _cell(record: Mapping[str, str | None], column: str, where: str) -> float | None:
    """A number cell; None if empty; ``ValueError`` naming the row and field if it is not a finite number."""
    text = (record.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: field {column!r} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: field {column!r} must be a finite number, got {text!r}")
    return value


def _table_photo(record: Mapping[str, str | None], where: str) -> Photo:
    if None in record:
        raise ValueError(f"{where}: more cells than the header has columns")
    image = (record.get("image") or "").strip()
    if not image:
        raise ValueError(f"{where}: field 'image' is empty")
    lat, lon = _cell(record, "latitude", where), _cell(record, "longitude", where)
    for name, value, limit in (("latitude", lat, 90.0), ("longitude", lon, 180.0)):
        if value is not None and not -limit <= value <= limit:
            raise ValueError(f"{where}: field {name!r} must be in [-{limit:g}, {limit:g}], got {value:g}")
    heading = _cell(record, "heading", where)
    heading = math.nan if heading is None else heading % 360.0
    caption, location = (record.get("caption") or "").strip(), (record.get("location_id") or "").strip() or None
    if lat is None or lon is None:
        missing = " and ".join(n for n, v in (("latitude", lat), ("longitude", lon)) if v is None)
        return Photo(image, where, caption=caption, reject=("gps_missing", f"{image!r}: the table has no {missing}"))
    return Photo(image, where, lat, lon, heading, caption, location)


def photos_from_table(table: Path) -> list[Photo]:
    """The photos of a ``.csv`` table (header: ``image,latitude,longitude`` + optional ``heading,caption,location_id``).

    An empty latitude/longitude is a photo without a position (reported); anything else malformed
    raises ``ValueError`` naming ``table:row`` (line numbers, header = 1) and the field.
    """
    if table.suffix.lower() != ".csv":
        raise ValueError(f"--table {table}: a photo table must be a .csv file")
    with open(table, encoding="utf-8-sig", newline="") as handle:  # -sig: a spreadsheet's BOM
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in TABLE_REQUIRED if c not in columns]
        unknown = sorted(set(columns) - set(TABLE_COLUMNS))
        if missing or unknown:
            problem = f"missing column(s) {missing}" if missing else f"unknown column(s) {unknown}"
            raise ValueError(f"{table}: {problem}; a photo table has the columns {', '.join(TABLE_COLUMNS)} "
                             f"({', '.join(TABLE_REQUIRED)} required)")  # fmt: skip
        return [_table_photo(record, f"{table.name}:{number}") for number, record in enumerate(reader, start=2)]
