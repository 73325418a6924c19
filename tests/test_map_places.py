"""Every prediction on the map: address places from a dataset's coordinates, the streets they draw, ``addressclip
predict`` with latitude/longitude and ``addressclip map --image``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import datasets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from PIL import Image

from addressclip_train import cli
from addressclip_train.places import StreetMap, address_places, has_places, street_geometry, street_map
from addressclip_train.similarity_map import draw_streets
from addressclip_train.web_map import CityMap
from fixtures.tiny_models import ADDRESSES, save_tiny_model, tiny_config, tiny_processor
from modeling_addressclip import Address, AddressCLIPModel
from modeling_addressclip.geo import latlon_to_utm, utm_to_latlon

ZONE = "35V"
SCRIPT = str(Path(sys.executable).with_name("addressclip"))


def street_rows(address: str, start, heading: float, count: int, step: float = 15.0, jitter: float = 0.0, seed=0):
    """``count`` camera positions ``step`` metres apart from ``start`` (UTM 35V) towards ``heading`` degrees."""
    rng = np.random.default_rng(seed)
    direction = np.array([math.sin(math.radians(heading)), math.cos(math.radians(heading))])
    points = np.asarray(start, dtype=float) + step * np.arange(count)[:, None] * direction
    points += rng.normal(scale=jitter, size=points.shape) if jitter else 0.0
    lat, lon = utm_to_latlon(points[:, 0], points[:, 1], ZONE)
    parts = Address.parse(address)
    return [
        dict(address=address, main_street=parts.main_street, neighborhood=parts.neighborhood, latitude=float(a),
             longitude=float(o), utm_east=float(e), utm_north=float(n), utm_zone=ZONE)
        for a, o, (e, n) in zip(lat, lon, points, strict=True)
    ]  # fmt: skip


def city_rows() -> list[dict]:
    """The first five test addresses on streets of central Helsinki; the sixth has no rows."""
    rows = street_rows(ADDRESSES[0], (385_000, 6_672_000), 30, 7, jitter=0.3)
    rows += street_rows(ADDRESSES[1], (385_100, 6_672_300), 90, 5)  # an L: east, then north
    rows += street_rows(ADDRESSES[1], (385_160, 6_672_315), 0, 3)
    rows += street_rows(ADDRESSES[2], (385_400, 6_671_800), 120, 1)
    rows += street_rows(ADDRESSES[3], (384_700, 6_671_900), 200, 4)
    rows += street_rows(ADDRESSES[4], (385_300, 6_672_500), 160, 3)
    return rows


def shuffled(rows: list[dict], seed: int = 1) -> list[dict]:
    return [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]


def with_images(rows: list[dict], seed: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [dict(row, image=Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))) for row in rows]


def same_path(line, expected, tolerance: float) -> bool:
    """``line`` has the vertices of ``expected`` in order, walked either way."""
    line, expected = np.asarray(line, dtype=float), np.asarray(expected, dtype=float)
    return line.shape == expected.shape and any(
        np.allclose(line, e, atol=tolerance) for e in (expected, expected[::-1])
    )


def _metres(place_point) -> np.ndarray:
    east, north, _ = latlon_to_utm([place_point[0]], [place_point[1]], ZONE)
    return np.array([east[0], north[0]])


def test_places_lie_on_their_members_and_lines_run_along_the_street():
    rows = shuffled(city_rows())
    half = len(rows) // 2
    train, database = datasets.Dataset.from_list(rows[:half]), datasets.Dataset.from_list(rows[half:])
    places = address_places(ADDRESSES, train, database)
    assert len(places) == len(ADDRESSES) and places[5] is None  # no row at all
    for i in range(5):
        members = [(r["latitude"], r["longitude"]) for r in rows if r["address"] == ADDRESSES[i]]
        metres = np.array([[r["utm_east"], r["utm_north"]] for r in rows if r["address"] == ADDRESSES[i]])
        point = (places[i]["latitude"], places[i]["longitude"])
        nearest = members[int(np.argmin(np.linalg.norm(metres - metres.mean(axis=0), axis=1)))]
        assert point == pytest.approx(nearest, abs=1e-7)  # a member, the one nearest the mean
    # A straight street with sub-metre jitter simplifies (2 m) to its two end members, in order along it.
    straight = [r for r in city_rows() if r["address"] == ADDRESSES[0]]
    ends = [[r["latitude"], r["longitude"]] for r in (straight[0], straight[-1])]
    assert len(places[0]["line"]) == 2
    assert same_path(places[0]["line"], ends, 1e-7)
    # The L keeps its corner, its vertices in order (either direction); its mean lies off both arms.
    l_shape = np.array([_metres(v) for v in places[1]["line"]]) - [385_100, 6_672_300]
    assert same_path(l_shape, [[0, 0], [60, 0], [60, 45]], 0.05)
    assert places[2]["line"] == [[places[2]["latitude"], places[2]["longitude"]]]  # one member: one point
    assert all(len(p["line"]) >= 1 for p in places[:5])


def test_no_usable_coordinates_give_no_place():
    rows = city_rows()
    no_columns = datasets.Dataset.from_list(rows).remove_columns(["latitude", "longitude"])
    assert address_places(ADDRESSES, no_columns) == [None] * len(ADDRESSES)
    assert not has_places(address_places(ADDRESSES, no_columns)) and not has_places(None)
    broken = [dict(r, latitude=math.nan) if r["address"] == ADDRESSES[3] else r for r in rows]
    places = address_places(ADDRESSES, datasets.Dataset.from_list(broken))
    assert places[3] is None and places[4] is not None and has_places(places)


def test_street_geometry_orders_along_the_principal_direction():
    east, north = np.array([30.0, 0.0, 10.0, 20.0, 5.0]), np.array([3.0, 0.0, 1.0, 2.0, 100.0])
    place, lines = street_geometry(east, north, np.array([0, 0, 0, 0, 1]), 3, tolerance_m=0.01)
    np.testing.assert_allclose(np.abs(lines[0] - lines[0][0]), [[0, 0], [30, 3]])  # collinear: two ends
    assert place[1] == 4 and lines[1].tolist() == [[5.0, 100.0]] and place[2] == -1 and lines[2] is None


def test_address_places_is_fast_for_100k_rows():
    rng = np.random.default_rng(0)
    bank = [f"Street{i} near Cross{i}, Hood" for i in range(10_000)]
    start, direction = rng.uniform(0, 5000, (10_000, 2)), rng.normal(size=(10_000, 2))
    steps = rng.permuted(np.tile(np.arange(10.0), (10_000, 1)), axis=1) * 15
    points = start[:, None] + steps[..., None] * (direction / np.linalg.norm(direction, axis=1)[:, None])[:, None]
    lat, lon = utm_to_latlon(385_000 + points[..., 0].ravel(), 6_671_000 + points[..., 1].ravel(), ZONE)
    split = datasets.Dataset.from_dict({"address": np.repeat(bank, 10), "latitude": lat, "longitude": lon})
    begin = time.perf_counter()
    places = address_places(bank, split)
    seconds = time.perf_counter() - begin
    assert seconds < 10, f"{seconds:.1f} s for 100k rows"
    assert all(len(p["line"]) == 2 for p in places)  # straight streets: two ends each


def test_street_map_from_places_and_from_images_agree():
    rows = city_rows()
    split = datasets.Dataset.from_list(rows)
    places = address_places(ADDRESSES, split)
    placed, traced = StreetMap.from_places(ADDRESSES, places, ZONE), StreetMap.from_images([split])
    assert placed.zone == traced.zone == ZONE and set(placed.centres) == set(traced.centres) == set(ADDRESSES[:5])
    for address in ADDRESSES[:5]:
        assert placed.centres[address] == pytest.approx(traced.centres[address], abs=0.05)
        np.testing.assert_allclose(placed.lines[address], traced.lines[address], atol=0.05)
    assert placed.images is None and traced.images.shape == (len(rows), 2)
    _, ax = plt.subplots()
    draw_streets(ax, placed)
    segments = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments) == 1 and len(segments[0].get_segments()) == 4  # the one-point street is a dot
    plt.close("all")
    with pytest.raises(ValueError, match="no places"):
        street_map(AddressCLIPModel(tiny_config()))


# ----------------------------------------------------------------------------- the model with places and the CLI
@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    rows = with_images(shuffled(city_rows()))
    folder = tmp_path_factory.mktemp("city") / "city"
    datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows[:14]), query=datasets.Dataset.from_list(rows[14:])
    ).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def places() -> list[dict | None]:
    return address_places(ADDRESSES, datasets.Dataset.from_list(city_rows()))


@pytest.fixture(scope="module")
def placed_model(tmp_path_factory, places) -> Path:
    processor, folder = tiny_processor(), tmp_path_factory.mktemp("placed")
    torch.manual_seed(3)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    model.set_address_bank(list(ADDRESSES), processor, places=places)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "street.jpg"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_json_in_a_subprocess_gives_every_ranked_address_its_coordinates(placed_model, photo, places):
    proc = subprocess.run(
        [SCRIPT, "predict", "--model", str(placed_model), "--json", "--top-k", "6", "--min-score", "0", str(photo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads(proc.stdout)[0]["predictions"]
    assert sorted(p["address"] for p in predictions) == sorted(ADDRESSES)
    for prediction in predictions:
        place = places[ADDRESSES.index(prediction["address"])]
        expected = (None, None) if place is None else (place["latitude"], place["longitude"])
        assert (prediction["latitude"], prediction["longitude"]) == pytest.approx(expected)


def test_predict_table_has_latitude_and_longitude_columns(placed_model, photo, places, capsys):
    assert cli.main(["predict", "--model", str(placed_model), "--top-k", "6", "--min-score", "0", str(photo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "latitude" in lines[1] and "longitude" in lines[1]
    for line in lines[2:]:
        address = next(a for a in ADDRESSES if line.endswith(a))
        place = places[ADDRESSES.index(address)]
        if place is None:
            assert len(line.split()) == 3 + len(address.split())  # rank, score, cosine, blank columns, address
        else:
            assert f"{place['latitude']:.6f}" in line and f"{place['longitude']:.6f}" in line


def red_pixels(picture: Image.Image) -> int:
    """How many pixels have the rank-1 colour (RANK_COLOURS[0], #d62728)."""
    pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3).astype(int)
    return int((np.abs(pixels - [214, 39, 40]).sum(axis=1) < 30).sum())


def test_map_image_draws_the_top_addresses_at_their_places(placed_model, photo, tmp_path, capsys):
    out = tmp_path / "where.png"
    argv = ["map", "--model", str(placed_model), "--image", str(photo), "--top-k", "3", "--min-score", "0"]
    assert cli.main([*argv, "--out", str(out), "--width", "640", "--height", "560"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and f"wrote {out}" in summary[0] and "3 ranked addresses on 5 streets" in summary[0]
    assert any(f"1. {a} (score" in summary[0] for a in ADDRESSES)
    with Image.open(out) as picture:
        assert picture.size == (640, 560)
        drawn = red_pixels(picture)
    model = AddressCLIPModel.from_pretrained(placed_model)
    background = red_pixels(CityMap(street_map(model), size=(640, 560)).render([]))  # the legend's red star
    assert drawn > background + 100  # the best address's star and street, in rank-1 red


def test_map_query_draws_the_street_lines_under_the_similarity_dots(placed_model, city_dir, tmp_path, capsys):
    out = tmp_path / "similarity.png"
    argv = ["map", "--model", str(placed_model), "--dataset", str(city_dir), "--query", "Mannerheimintie"]
    assert cli.main([*argv, "--out", str(out), "--width", "500", "--height", "400"]) == 0
    assert "street:" in capsys.readouterr().out and Image.open(out).size == (500, 400)


def test_map_image_without_places_needs_a_dataset_and_uses_its_images(photo, city_dir, tmp_path, capsys):
    unplaced = save_tiny_model(tmp_path / "unplaced", seed=4)
    argv = ["map", "--model", str(unplaced), "--image", str(photo), "--out", str(tmp_path / "m.png")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("addressclip map:") and "--dataset" in error[0]
    assert cli.main([*argv, "--dataset", str(city_dir), "--min-score", "0"]) == 0
    assert "on 5 streets" in capsys.readouterr().out and (tmp_path / "m.png").is_file()
