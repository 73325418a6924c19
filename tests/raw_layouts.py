"""Small raw trees in the real layouts of Pitts250k, datasets_vg and SF-XL ``processed/``, with planted bad rows.

Each builder returns a ``RawTree``: where the images and annotations are, how many rows each
split should get, and the (key, reason) of every planted bad row.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from dataset_scripts.vg_names import VGName, format_vg_name
from modeling_addressclip.geo import latlon_to_utm

PITTS_CENTER = (40.4406, -79.9959)
SF_CENTER = (37.7990, -122.4100)
RELEASE_ADDRESSES = [
    ("Forbes Avenue, Oakland (Craig Street, Morewood Avenue)",
     "Forbes Avenue between Craig Street and Morewood Avenue, Oakland"),
    ("Fifth Avenue, Oakland (Bellefield Avenue)", "Fifth Avenue near Bellefield Avenue, Oakland"),
    ("Grant Street, Downtown (Fifth Avenue, Sixth Avenue)",
     "Grant Street between Fifth Avenue and Sixth Avenue, Downtown"),
    ("Smithfield Street, Downtown (Forbes Avenue)", "Smithfield Street near Forbes Avenue, Downtown"),
]  # fmt: skip
BAD_ADDRESS = "Somewhere without a neighborhood"


@dataclass
class RawTree:
    """A raw download plus what a correct build must do with it."""

    root: Path
    annotations: Path
    expected: dict[str, int] = field(default_factory=lambda: {"train": 0, "database": 0, "query": 0})
    planted: list[tuple[str, str]] = field(default_factory=list)
    entries: dict[str, list[tuple[str, object]]] = field(
        default_factory=lambda: {"train": [], "database": [], "query": []}
    )

    def annotate(self, split: str, key: str, value: object, reason: str | None = None) -> None:
        """Add an annotation entry; ``reason`` marks it as planted bad, else it counts as a good row."""
        self.entries[split].append((key, value))
        if reason:
            self.planted.append((key, reason))
        else:
            self.expected[split] += 1

    def write_release(self, prefix: str = "Pitts") -> Path:
        """The three release JSON files, written by hand so duplicate keys survive."""
        self.annotations.mkdir(parents=True, exist_ok=True)
        for split, suffix in (("train", "train"), ("database", "database"), ("query", "queries")):
            body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in self.entries[split])
            (self.annotations / f"{prefix}_{suffix}.json").write_text("{\n" + body + "\n}", encoding="utf-8")
        return self.annotations


def jpeg(seed: int, size: tuple[int, int] = (16, 12)) -> bytes:
    """A tiny JPEG with seed-dependent content."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def release_value(index: int, caption: str | None = None) -> list[str]:
    release, _ = RELEASE_ADDRESSES[index % len(RELEASE_ADDRESSES)]
    return [caption if caption is not None else f"a street view of place {index}", "verbose, Pittsburgh, PA", release]


def _utm(center: tuple[float, float], place: int) -> tuple[float, float]:
    east, north, _ = latlon_to_utm(center[0] + 0.0005 * place, center[1] + 0.0004 * place)
    return float(east[0]), float(north[0])


# --------------------------------------------------------------------------- Pitts250k


def write_pitts_mat(path: Path, db: list[tuple[str, float, float]], queries: list[tuple[str, float, float]]) -> None:
    """``pitts250k_*.mat`` with a ``dbStruct`` in the real field order and shapes (names N x 1, utm 2 x N)."""

    def cells(rows):
        return np.array([r[0] for r in rows], dtype=object).reshape(-1, 1)

    struct = {
        "whichSet": "train", "dbImageFns": cells(db), "utmDb": np.array([[r[1] for r in db], [r[2] for r in db]]),
        "qImageFns": cells(queries), "utmQ": np.array([[r[1] for r in queries], [r[2] for r in queries]]),
        "numImages": len(db), "numQueries": len(queries), "posDistThr": 25, "posDistSqThr": 625,
        "nonTrivPosDistSqThr": 100,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"dbStruct": struct})


def _pitts_name(place: int, view: int) -> str:
    return f"{place // 1000:03d}/{place:06d}_pitch{view // 12 + 1}_yaw{view % 12 + 1}.jpg"


def _pitts_images(tree: RawTree, places: int, views: int) -> tuple[list, list]:
    db, queries = [], []
    for place in range(places):
        east, north = _utm(PITTS_CENTER, place)
        for view in range(views):
            db.append((_pitts_name(place, view), east, north))
            _write(tree.root / _pitts_name(place, view), jpeg(place * 100 + view))
    for place in range(2):
        east, north = _utm(PITTS_CENTER, place + 0.3)
        queries.append((_pitts_name(place, 0), east, north))
        _write(tree.root / "queries_real" / _pitts_name(place, 0), jpeg(9000 + place))
    return db, queries


def _plant_pitts(tree: RawTree, db: list, queries: list) -> None:
    """Bad rows of every kind; their files/entries are made here."""
    root, east, north = tree.root, *_utm(PITTS_CENTER, 50)
    extra = {"nan": (math.nan, north), "outside": (5_000_000.0, 100.0), "missing": (east, north),
             "trunc": (east, north), "badaddress": (east, north)}  # fmt: skip
    for tag, (e, n) in extra.items():
        db.append((f"010/{tag}_pitch1_yaw1.jpg", e, n))
    for tag in ("nan", "outside", "badaddress"):
        _write(root / f"010/{tag}_pitch1_yaw1.jpg", jpeg(7))
    _write(root / "010/trunc_pitch1_yaw1.jpg", jpeg(8, (64, 64))[:200])
    _write(root / "010/notinmat_pitch1_yaw1.jpg", jpeg(9))
    _write(root.parent / "outside.jpg", jpeg(10))
    os.symlink(root.parent / "outside.jpg", root / "010/link.jpg")
    for key, reason in [
        ("010/missing_pitch1_yaw1.jpg", "image_missing"), ("010/trunc_pitch1_yaw1.jpg", "image_unreadable"),
        ("010/nan_pitch1_yaw1.jpg", "coordinates_missing"), ("010/notinmat_pitch1_yaw1.jpg", "coordinates_missing"),
        ("010/outside_pitch1_yaw1.jpg", "coordinates_outside_zone"), ("../outside.jpg", "path_escapes_root"),
        ("010/link.jpg", "path_escapes_root"),
    ]:  # fmt: skip
        tree.annotate("train", key, release_value(0), reason)


def make_pitts_tree(base: Path, places: int = 10, views: int = 3) -> RawTree:
    """Pitts250k layout (``000/``, ``queries_real/``, ``datasets/*.mat``) + release annotations with plants."""
    tree = RawTree(base / "Pitts250k", base / "annotations")
    db, queries = _pitts_images(tree, places, views)
    _plant_pitts(tree, db, queries)
    cut_db, cut_q = places - 4, places - 2
    for name, _, _ in db[: places * views]:
        place = int(name[4:10])
        split = "train" if place < cut_db else "database" if place < cut_q else "query"
        tree.annotate(split, name, release_value(place))
    for name, _, _ in queries:
        tree.annotate("query", f"queries_real/{name}", release_value(int(name[4:10])))
    first = _pitts_name(0, 0)
    tree.annotate("train", first, release_value(0), "duplicate_key")
    tree.annotate("database", first, release_value(0), "duplicate_key")
    tree.annotate("train", "010/badaddress_pitch1_yaw1.jpg", ["cap", "verbose", BAD_ADDRESS], "address_unparseable")
    tree.annotate("query", "000/000001_pitch1_yaw1.jpg", "not a list", "annotation_malformed")
    _move_view_to_other_split(tree, places, views)
    half = len(db) // 2
    write_pitts_mat(tree.root / "datasets" / "pitts250k_train.mat", db[:half], queries)
    write_pitts_mat(tree.root / "datasets" / "pitts250k_val.mat", db[half:], [])
    tree.write_release("Pitts")
    return tree


def _move_view_to_other_split(tree: RawTree, places: int, views: int) -> None:
    """The last view of the last train place is annotated in ``database``: location in two splits."""
    place = places - 5
    key = _pitts_name(place, views - 1)
    entries = tree.entries["train"]
    index = next(i for i, (k, _) in enumerate(entries) if k == key)
    entries.pop(index)
    tree.expected["train"] -= 1
    tree.annotate("database", key, release_value(place), "location_in_two_splits")


# --------------------------------------------------------------------------- @-named (SF-XL / datasets_vg)


def vg_name(center: tuple[float, float], place: int, view: int, zone=(10, "S"), **overrides) -> str:
    east, north = _utm(center, place)
    fields = dict(utm_east=round(east, 2), utm_north=round(north, 2), zone_number=zone[0], zone_letter=zone[1],
                  latitude=center[0], longitude=center[1], pano_id=f"pano{place:04d}", heading=30.0 * view)  # fmt: skip
    fields.update(overrides)
    return format_vg_name(VGName(**fields))


def make_vg_tree(base: Path, center=SF_CENTER, zone=(10, "S"), other_zone=(17, "T"), places: int = 6, views: int = 12,
                 folder: str = "processed/train", prefix: str = "SF_base") -> RawTree:  # fmt: skip
    """@-named crops (``views`` per panorama) + release annotations keyed relative to the data root, with plants."""
    tree = RawTree(base / "sf_xl", base / "annotations")
    data_root = tree.root / "processed" if folder.startswith("processed") else tree.root
    rel = folder.removeprefix("processed").strip("/")
    keys = []
    for place in range(places):
        split = "train" if place < places - 2 else "database" if place == places - 2 else "query"
        for view in range(views):
            key = f"{rel}/{vg_name(center, place, view, zone)}"
            _write(data_root / key, jpeg(place * 100 + view))
            tree.annotate(split, key, release_value(place))
            keys.append(key)
    plants = {
        f"{rel}/{vg_name(center, 90, 0, zone, utm_east=None)}": "coordinates_missing",
        f"{rel}/{vg_name(center, 91, 0, other_zone)}": "coordinates_outside_zone",
        f"{rel}/{vg_name(center, 92, 0, zone)}": "image_unreadable",
        f"{rel}/plain_name.jpg": "coordinates_missing",
        f"{rel}/{vg_name(center, 93, 0, zone, pano_id=None)}": "address_unparseable",
    }
    for key in plants:
        _write(data_root / key, b"not a jpeg" if plants[key] == "image_unreadable" else jpeg(3))
    for key, reason in plants.items():
        tree.annotate("train", key, [""] * 2 + [BAD_ADDRESS] if reason == "address_unparseable" else release_value(0),
                      reason)  # fmt: skip
    tree.annotate("train", f"{rel}/{vg_name(center, 94, 0, zone)}", release_value(0), "image_missing")
    no_pano = f"{rel}/{vg_name(center, 95, 0, zone, pano_id=None, heading=None)}"
    _write(data_root / no_pano, jpeg(6))
    tree.annotate("train", no_pano, release_value(1))
    tree.annotate("train", f"../{rel}/{vg_name(center, 0, 0, zone)}", release_value(0), "path_escapes_root")
    tree.annotate("query", keys[0], release_value(0), "duplicate_key")
    moved = f"{rel}/{vg_name(center, 0, 0, zone, heading=359.0)}"
    _write(data_root / moved, jpeg(5))
    tree.annotate("query", moved, release_value(0), "location_in_two_splits")
    tree.write_release(prefix)
    return tree
