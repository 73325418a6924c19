"""Geotagged photos -> an IAL dataset (dataset_scripts/geotagged.py): EXIF GPS, addresses, locations, splits, report.

The photos are small JPEGs written by ``fixtures.geotagged_photos`` with EXIF GPS at points on known
sub-streets of the shipped Helsinki extract, plus every photo the builder must report.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import Image as ImageFeature
from datasets import load_dataset
from PIL import ExifTags

from dataset_scripts import geotagged
from dataset_scripts.geotagged_exif import GPSError, parse_gps, read_exif_gps
from dataset_scripts.osm import HELSINKI_PBF, OSM_ATTRIBUTION, partition_streets
from dataset_scripts.schema import IAL_FEATURES, SPLITS
from fixtures.geotagged_photos import TALLINN, Rational, gps_ifd, make_geotagged_photos, write_photo

GPS = ExifTags.GPS


@pytest.fixture(scope="module")
def partition():
    return partition_streets(HELSINKI_PBF)


def _cli(*args: str) -> list[str]:
    return ["--pbf", str(HELSINKI_PBF), *args, "--no-progress"]


def _load(output: Path, cache: Path) -> dict[str, list[dict]]:
    """Each split's rows, as ``load_dataset`` reads them (features checked), images as ``{"bytes", "path"}``."""
    dataset = load_dataset(str(output), cache_dir=str(cache))
    assert all(d.features == IAL_FEATURES for d in dataset.values())
    return {s: list(dataset[s].cast_column("image", ImageFeature(decode=False))) for s in SPLITS}


# ---- EXIF GPS ---------------------------------------------------------------------------------


def test_exif_gps_reads_degrees_minutes_seconds_refs_and_a_true_heading(tmp_path):
    path = write_photo(tmp_path / "a.jpg", 0, gps_ifd(-33.8568, -151.2153, heading=359.5))
    gps = read_exif_gps(path)
    assert gps.latitude == pytest.approx(-33.8568, abs=1e-8) and gps.longitude == pytest.approx(-151.2153, abs=1e-8)
    assert gps.heading == pytest.approx(359.5) and gps.heading_note is None
    degrees_only = {GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: (60.25,), GPS.GPSLongitudeRef: b"E\x00",
                    GPS.GPSLongitude: (Rational(24, 1), Rational(30, 1), Rational(0, 1))}  # fmt: skip
    assert (parse_gps(degrees_only).latitude, parse_gps(degrees_only).longitude) == (60.25, 24.5)


@pytest.mark.parametrize(
    "heading, ref, note",
    [(45.0, "M", "heading_magnetic"), (45.0, "", "heading_unreferenced"), (400.0, "T", "heading_invalid")],
)
def test_exif_directions_other_than_true_north_are_kept_as_unknown(heading, ref, note):
    gps = gps_ifd(60.17, 24.94, heading, ref)
    if not ref:
        del gps[GPS.GPSImgDirectionRef]
    parsed = parse_gps(gps)
    assert parsed.latitude == pytest.approx(60.17) and math.isnan(parsed.heading) and parsed.heading_note == note


@pytest.mark.parametrize(
    "drop, change, reason, message",
    [
        ((GPS.GPSLatitude, GPS.GPSLongitude), {}, "gps_missing", "no GPSLatitude/GPSLongitude"),
        ((), {GPS.GPSStatus: "V"}, "gps_missing", "measurement void"),
        ((GPS.GPSLongitude,), {}, "gps_malformed", "no GPSLongitude"),
        ((), {GPS.GPSLatitude: (Rational(60, 0), Rational(1, 1), Rational(0, 1))}, "gps_malformed", "zero denominator"),
        ((), {GPS.GPSLatitude: (60.0, 75.0, 0.0)}, "gps_malformed", "minutes < 60"),
        ((), {GPS.GPSLatitude: (91.0, 0.0, 0.0)}, "gps_malformed", "beyond 90"),
        ((), {GPS.GPSLatitudeRef: "X"}, "gps_malformed", "GPSLatitudeRef is 'X'"),
        ((GPS.GPSLongitudeRef,), {}, "gps_malformed", "GPSLongitudeRef is 'missing'"),
        ((), {GPS.GPSLatitude: (1.0, 2.0, 3.0, 4.0)}, "gps_malformed", "4 values"),
        ((), {GPS.GPSLatitude: ("sixty",)}, "gps_malformed", "not a number"),
    ],
)
def test_missing_and_malformed_exif_gps_raise_their_reason(drop, change, reason, message):
    gps = {tag: value for tag, value in gps_ifd(60.17, 24.94).items() if tag not in drop} | change
    with pytest.raises(GPSError, match=message) as caught:
        parse_gps(gps)
    assert caught.value.reason == reason


# ---- locations ----------------------------------------------------------------------------------


def test_locations_group_photos_on_one_address_within_the_radius():
    points = [(0, 0), (0, 0), (3, 0), (0, 0), (8, 0), (11, 0), (500, 0)]
    addresses = ["A", "A", "A", "B", "A", "A", "A"]
    keys = [f"p{i}" for i in range(len(points))]
    # p0 takes everything within 5 m on A (p1 at the same point, p2 at 3 m); p3 is on B; p4 (8 m from p0)
    # starts its own location and takes p5 (3 m from it, 11 m from p0): a location never spans > 2 radii.
    assert geotagged.group_locations(np.array(points), addresses, keys, 5.0) == ["p0", "p0", "p0", "p3", "p4", "p4",
                                                                                  "p6"]  # fmt: skip
    assert geotagged.group_locations(np.array(points), addresses, keys, 0.0) == ["p0", "p0", "p2", "p3", "p4", "p5",
                                                                                  "p6"]  # fmt: skip
    assert geotagged.group_locations(np.zeros((0, 2)), [], [], 5.0) == []


# ---- a folder of photos -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(partition, tmp_path_factory):
    """The scene's folder built once with the CLI: (scene, JSON report, dataset with image paths, card)."""
    base = tmp_path_factory.mktemp("geotagged")
    scene = make_geotagged_photos(base / "photos", partition)
    args = _cli("--photos", str(scene.folder), "--output", str(base / "out"), "--report", str(base / "r.json"))
    assert geotagged.main(args) == 0
    rows = _load(base / "out", base / "cache")
    report = json.loads((base / "r.json").read_text())
    return scene, report, rows, (base / "out" / "README.md").read_text(), base


def test_every_photo_gets_its_sub_street_heading_and_position(built):
    scene, _, rows, _, _ = built
    written = {r["image"]["path"]: r for split in SPLITS for r in rows[split]}
    assert set(written) == set(scene.addresses)  # nothing else written, nothing good dropped
    for key, row in written.items():
        assert row["address"] == scene.addresses[key], key
        assert (row["latitude"], row["longitude"]) == pytest.approx(scene.positions[key], abs=1e-7)
        assert row["utm_zone"] == "35V" and row["caption"] == ""
        if key in scene.headings:
            assert row["heading"] == scene.headings[key]
        else:
            assert math.isnan(row["heading"]), key
    assert scene.headings == {"street/00_1.jpg": 90.0} and math.isnan(written[scene.magnetic]["heading"])


def test_photos_of_one_place_are_one_location_and_splits_are_7_2_1_by_location(built):
    scene, report, rows, _, _ = built
    location = {r["image"]["path"]: (split, r["location_id"]) for split in SPLITS for r in rows[split]}
    assert len({location[key] for key in scene.same_location}) == 1  # same point and 2 m away: one location, one split
    ids = {split: {r["location_id"] for r in rows[split]} for split in SPLITS}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values())) == scene.locations == 24
    assert [len(ids[s]) for s in SPLITS] == [report["splits"][s]["locations"] for s in SPLITS]
    assert len(ids["train"]) >= 17 and 3 <= len(ids["database"]) <= 5 and 1 <= len(ids["query"]) <= 2
    addresses = {split: {r["address"] for r in rows[split]} for split in SPLITS}
    assert addresses["database"] <= addresses["train"] and addresses["query"] <= addresses["train"]
    assert report["auto_split"] and report["query_addresses_not_in_train"] == 0


def test_photos_without_an_address_are_reported_with_their_reason(built):
    scene, report, _, _, _ = built
    assert {r["key"]: r["reason"] for r in report["reported"]} == scene.reasons
    assert report["reasons"] == dict(Counter(scene.reasons.values()))
    assert report["reasons"] == {"gps_missing": 1, "gps_malformed": 1, "outside_extract": 1, "no_street_nearby": 1,
                                 "image_unreadable": 2}  # fmt: skip
    assert report["rows_in"] == len(scene.addresses) + len(scene.reasons) == report["rows_written"] + 6
    details = {r["key"]: r["detail"] for r in report["reported"]}
    outside = f"({TALLINN[0]:.6f}, {TALLINN[1]:.6f}) is outside the bounds of helsinki.osm.pbf"
    assert outside in details["bad/tallinn.jpg"]
    nearest = float(details["bad/far.jpg"].split("nearest: ")[1].split(" m")[0])
    assert "no street within 30 m" in details["bad/far.jpg"] and 200 <= nearest < 215


def test_card_names_the_sources_settings_and_counts_without_local_paths(built):
    _, _, _, card, base = built
    for text in (OSM_ATTRIBUTION, "`helsinki.osm.pbf`", "photo folder `photos/`", "within 30 m", "within 5 m",
                 "license: other", "under the ODbL", "GPS position outside the OSM extract: 1",
                 "no sub-street within --max-distance: 1", "unreadable or truncated image: 2",
                 "1 photo(s) have one", "1 with GPSImgDirectionRef M", "`notes.txt`",
                 "dataset_scripts.captions"):  # fmt: skip
        assert text in card, text
    assert str(base) not in card


# ---- a table of photos --------------------------------------------------------------------------


def _write_table(path: Path, rows: list[dict], fields: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_photo_table_gives_positions_headings_captions_and_location_ids(built, tmp_path):
    scene, *_ = built
    rows = [{"image": f"photos/{key}", "latitude": lat, "longitude": lon, "heading": "", "caption": "",
             "location_id": ""} for key, (lat, lon) in sorted(scene.positions.items())]  # fmt: skip
    assert rows[3]["image"] == "photos/street/00_1.jpg"  # its EXIF heading is 90: the table's wins
    rows[3].update(heading="-90", caption="A tram stop.")
    rows[4]["location_id"] = rows[5]["location_id"] = "corner"  # 20 m apart on one address: the table's id wins
    rows += [{**rows[7], "image": "photos/bad/no_gps.jpg", "latitude": ""}, {**rows[7], "image": "photos/gone.jpg"}]
    table = _write_table(scene.folder.parent / "photos.csv", rows, list(rows[0]))
    output = tmp_path / "out"
    assert geotagged.main(_cli("--table", str(table), "--output", str(output), "--report", str(tmp_path / "r"))) == 0
    report = json.loads((tmp_path / "r").read_text())
    assert {(r["source"], r["reason"]) for r in report["reported"]} == {
        (f"photos.csv:{len(rows)}", "gps_missing"), (f"photos.csv:{len(rows) + 1}", "image_missing")}  # fmt: skip
    written = {r["image"]["path"]: r for split in _load(output, tmp_path / "cache").values() for r in split}
    assert len(written) == len(scene.positions)
    assert all(written[f"photos/{k}"]["address"] == a for k, a in scene.addresses.items())
    headed, corner = written[rows[3]["image"]], [written[rows[i]["image"]] for i in (4, 5)]
    assert (headed["heading"], headed["caption"]) == (270.0, "A tram stop.")
    assert sum(math.isfinite(r["heading"]) for r in written.values()) == 1
    assert [r["location_id"] for r in corner] == ["corner", "corner"]
    assert "photo table `photos.csv`" in (output / "README.md").read_text()


def test_a_malformed_photo_table_fails_naming_the_file_row_and_field(tmp_path, capsys):
    good = {"image": "a.jpg", "latitude": "60.17", "longitude": "24.94"}
    for rows, fields, message in [
        ([good], ["image", "longitude"], "photos.csv: missing column(s) ['latitude']"),
        ([good], ["image", "latitude", "longitude", "colour"], "unknown column(s) ['colour']"),
        ([good] * 5 + [{**good, "latitude": "north"}], list(good), "photos.csv:7: field 'latitude' is 'north', not a"),
        ([{**good, "longitude": "200"}], list(good), "photos.csv:2: field 'longitude' must be in [-180, 180]"),
        ([{**good, "image": ""}], list(good), "photos.csv:2: field 'image' is empty"),
    ]:
        table = _write_table(tmp_path / "photos.csv", [{k: r.get(k, "") for k in fields} for r in rows], fields)
        assert geotagged.main(_cli("--table", str(table), "--output", str(tmp_path / "out"))) == 1
        assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


# ---- refusing a build ----------------------------------------------------------------------------


def test_a_mostly_rejected_build_fails_and_publishes_nothing(built, tmp_path, capsys):
    scene, *_ = built
    folder = tmp_path / "photos"
    for index, key in enumerate(sorted(scene.positions)[:3]):
        write_photo(folder / f"{index}.jpg", index, gps_ifd(*scene.positions[key]))
    for index in range(4):
        write_photo(folder / f"nogps_{index}.jpg", 10 + index)
    args = _cli("--photos", str(folder), "--output", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"))
    assert geotagged.main(args) == 1
    err = capsys.readouterr().err
    assert "4 of 7 rows rejected" in err and "photo without a GPS position [gps_missing]: 4 row(s)" in err
    assert "hint: the camera saved no position" in err and "Nothing was written" in err
    assert not (tmp_path / "out").exists()
    assert json.loads((tmp_path / "r.json").read_text())["reasons"] == {"gps_missing": 4}
    assert geotagged.main(_cli("--photos", str(tmp_path / "none"), "--output", str(tmp_path / "out"))) == 1
    assert f"--photos {tmp_path / 'none'} is not a directory" in capsys.readouterr().err
