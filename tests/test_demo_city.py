"""The demo city: a tiny build loads with the exact schema, splits follow the paper, builds repeat."""

from __future__ import annotations

import hashlib
import shutil
import time

import datasets
import numpy as np
import pytest
import shapely

from dataset_scripts import osm
from dataset_scripts.demo_city import DEFAULT_IMAGE_SIZE, build_demo_city, default_cache_dir, load_demo_city, plan_views
from dataset_scripts.schema import IAL_FEATURES, SPLITS, validate_row
from dataset_scripts.street_view import AppearanceField, caption_for, render_view
from modeling_addressclip.address import Address


def load(directory) -> datasets.DatasetDict:
    """Load a freshly built directory (force: datasets' cache key ignores rebuilt files at one path)."""
    return datasets.load_dataset(str(directory), download_mode="force_redownload")


def row_hash(row: dict) -> str:
    parts = [row["image"]["bytes"] if isinstance(row["image"], dict) else row["image"].tobytes()]
    parts += [repr(row[k]).encode() for k in sorted(row) if k != "image"]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def hand_made_partition() -> osm.StreetPartition:
    """Three parallel streets crossed by three others, in UTM 35V near Helsinki (6 addresses, the minimum is 5)."""
    east, north = 385600.0, 6672000.0
    subs = []
    streets = ((0.0, "Alpha Avenue", "primary", {"tram": "yes"}), (150.0, "Beta Lane", "residential", {}),
               (300.0, "Gamma Road", "residential", {}))  # fmt: skip
    for y, name, highway, tags in streets:
        for x0, x1, a, b in ((0, 120, "First Street", "Second Street"), (120, 260, "Second Street", "Third Street")):
            line = shapely.LineString([(east + x0, north + y), (east + x1, north + y)])
            subs.append(osm.SubStreet(Address(name, (a, b), "Testville"), line, highway, tags))
    bounds = (east, north, east + 260, north + 300)
    return osm.StreetPartition(subs, "35V", {"Testville": (east + 100, north + 80)}, bounds, {})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    start = time.perf_counter()
    report = build_demo_city(out, seed=0, max_addresses=6)
    report.extra["test_seconds"] = time.perf_counter() - start
    return report


def test_tiny_build_is_fast_and_loads_with_exact_schema(tiny):
    assert tiny.extra["test_seconds"] < 30
    loaded = load(tiny.output)
    assert list(loaded) == list(SPLITS)
    for split in SPLITS:
        assert loaded[split].features == IAL_FEATURES
        assert len(loaded[split]) == tiny.images[split] > 0
    streamed = datasets.load_dataset(str(tiny.output), streaming=True)
    assert streamed["train"].features == IAL_FEATURES
    assert next(iter(streamed["train"]))["utm_zone"] == "35V"
    assert len({row["address"] for row in loaded["train"]}) == 6


def test_every_tiny_row_validates_and_splits_follow_the_paper(tiny):
    loaded = load(tiny.output)
    for split in SPLITS:
        for index, row in enumerate(loaded[split]):
            validate_row(row, f"{split} row {index}")
    locations = {s: set(loaded[s]["location_id"]) for s in SPLITS}
    assert not locations["train"] & locations["database"]
    assert not locations["train"] & locations["query"]
    assert not locations["database"] & locations["query"]
    train_addresses = set(loaded["train"]["address"])
    assert set(loaded["database"]["address"]) <= train_addresses
    assert set(loaded["query"]["address"]) <= train_addresses
    per_location = {}
    for location in loaded["train"]["location_id"]:
        per_location[location] = per_location.get(location, 0) + 1
    assert set(per_location.values()) == {4}


def test_card_has_license_attribution_statistics_and_baseline(tiny):
    card = (tiny.output / "README.md").read_text()
    assert "license: odbl" in card
    assert osm.OSM_ATTRIBUTION in card
    assert "pretty_name: AddressCLIP demo city (Helsinki)" in card and "# AddressCLIP demo city: Helsinki" in card
    assert f"`helsinki.osm.pbf` (sha256 `{osm.HELSINKI_SHA256}`)" in card and "UTM zone 35V" in card
    assert "Neighborhoods: Hakaniemi, Kaartinkaupunki, Kaisaniemi, Keskusta, Kluuvi, Siltasaari" in card
    assert tiny.city == "Helsinki" and all(p.location_id.startswith("hel-") for p in tiny.extra["plans"])
    assert "SSA@1" in card and "| query |" in card
    assert 0.0 <= tiny.nn_ssa1 <= tiny.nn_sa1 <= 1.0


def test_caption_never_contains_a_street_name(tiny):
    loaded = load(tiny.output)
    for split in SPLITS:
        for row in loaded[split].remove_columns("image"):
            assert row["caption"].startswith("A street view of")
            for name in [row["main_street"], *row["cross_streets"], row["neighborhood"]]:
                assert name.lower() not in row["caption"].lower()


def test_same_seed_gives_identical_rows(tiny, tmp_path):
    again = build_demo_city(tmp_path / "again", seed=0, max_addresses=6)
    first, second = (load(r.output) for r in (tiny, again))
    for split in SPLITS:
        first[split] = first[split].cast_column("image", datasets.Image(decode=False))
        second[split] = second[split].cast_column("image", datasets.Image(decode=False))
        assert [row_hash(r) for r in first[split]] == [row_hash(r) for r in second[split]]


def test_corrupted_extract_raises_and_writes_nothing(tmp_path):
    broken = tmp_path / "helsinki.osm.pbf"
    data = bytearray(osm.HELSINKI_PBF.read_bytes())
    data[1000:1010] = b"\xff" * 10
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        build_demo_city(tmp_path / "out", pbf=broken, sha256=osm.HELSINKI_SHA256, max_addresses=2)
    with pytest.raises(ValueError, match="helsinki.osm.pbf is not a readable OSM file"):  # no checksum to compare
        build_demo_city(tmp_path / "out", pbf=broken, max_addresses=2)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["helsinki.osm.pbf"]


def test_hand_made_partition_builds(tmp_path):
    partition = hand_made_partition()
    report = build_demo_city(tmp_path / "hand", seed=1, partition=partition, workers=1)
    assert sum(report.addresses.values()) > 0
    assert report.addresses["train"] == 6
    plans = plan_views(partition, seed=1)
    assert len(plans) == 4 * (12 + 14) * 3
    assert all(0.0 <= p.heading < 360.0 for p in plans)


def test_views_depend_on_heading_and_are_deterministic():
    plans = plan_views(hand_made_partition(), seed=0)[:4]
    field = AppearanceField(0)
    images = [np.asarray(render_view(p.camera, field, 64)[0]) for p in plans]
    assert all(img.shape == (64, 64, 3) for img in images)
    assert np.array_equal(images[0], np.asarray(render_view(plans[0].camera, field, 64)[0]))
    assert not np.array_equal(images[0], images[1])
    scene = render_view(plans[0].camera, field, 64)[1]
    assert "tram tracks" in caption_for(scene)


def test_load_demo_city_reuses_the_cache(tiny, tmp_path):
    cached = tmp_path / default_cache_dir(seed=0, image_size=DEFAULT_IMAGE_SIZE).name
    shutil.copytree(tiny.output, cached)
    loaded = load_demo_city(cache_dir=tmp_path)  # the tiny copy is reused, not rebuilt
    assert len(loaded["train"]) == tiny.images["train"]


@pytest.mark.slow
def test_full_build_on_the_real_extract(tmp_path):
    start = time.perf_counter()
    report = build_demo_city(tmp_path / "full", seed=0)
    seconds = time.perf_counter() - start
    print(f"full demo build: {seconds:.1f} s (render {report.render_seconds:.1f} s), images {report.images}, "
          f"addresses {report.addresses}, NN-pixel SSA@1 {report.nn_ssa1:.3f} SA@1 {report.nn_sa1:.3f}")  # fmt: skip
    assert report.addresses["train"] >= 100
    assert sum(report.images.values()) >= 4000
    loaded = load(report.output)
    for split in SPLITS:
        for index, row in enumerate(loaded[split].cast_column("image", datasets.Image(decode=False))):
            validate_row(row, f"{split} row {index}")
