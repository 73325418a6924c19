"""The ``addressclip`` command: predict prints a table or JSON, map draws the similarity map, others forward."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

from addressclip_train import cli, similarity_map
from addressclip_train.train import resolve_recipe, shipped_recipes
from dataset_scripts.schema import IAL_FEATURES
from fixtures.tiny_models import ADDRESSES, save_tiny_model
from modeling_addressclip import Address

ZONE = "35V"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(4)
    paths = []
    for i in range(2):
        paths.append(str(folder / f"street{i}.jpg"))
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def ial_rows(per_address: int = 4) -> list[dict]:
    """IAL-schema rows: each address is a short line of camera positions somewhere in a 1 km square."""
    rng = np.random.default_rng(5)
    rows = []
    for a, text in enumerate(ADDRESSES):
        address = Address.parse(text)
        start, direction = rng.uniform(0, 800, 2), rng.normal(size=2)
        for i in range(per_address):
            east, north = start + 40 * i * direction / np.linalg.norm(direction)
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            rows.append(
                dict(image=Image.fromarray(pixels), address=text, main_street=address.main_street,
                     cross_streets=list(address.cross_streets), neighborhood=address.neighborhood, caption="",
                     latitude=60.17, longitude=24.94, utm_east=385_000 + east, utm_north=6_672_000 + north,
                     utm_zone=ZONE, location_id=f"loc{a}-{i}", heading=math.nan)
            )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A Hub-style parquet directory, laid out like the demo city's (``data/<split>-*.parquet``)."""
    directory = tmp_path_factory.mktemp("ial")
    (directory / "data").mkdir()
    split = datasets.Dataset.from_list(ial_rows(), features=IAL_FEATURES)
    split.to_parquet(str(directory / "data" / "query-00000-of-00001.parquet"))
    return directory


def test_predict_prints_a_ranked_table(model_dir, images, capsys):
    assert cli.main(["predict", "--model", str(model_dir), "--top-k", "3", *images]) == 0
    out = capsys.readouterr().out
    for path in images:
        assert path in out
    ranked = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(ranked) == 6 and all(any(a in line for a in ADDRESSES) for line in ranked)
    assert "latitude" in out and "longitude" in out  # columns, blank here: this model's bank has no places
    assert all(len(line.split()) == 3 + len(next(a for a in ADDRESSES if a in line).split()) for line in ranked)


def test_predict_json_and_skipped_errors(model_dir, images, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    argv = ["predict", "--model", str(model_dir), "--json", "--top-k", "2", "--errors", "skip"]
    assert cli.main([*argv, images[0], str(broken)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in records] == [images[0], str(broken)]
    assert len(records[0]["predictions"]) == 2 and records[0]["predictions"][0]["address"] in ADDRESSES
    assert all(p["latitude"] is None and p["longitude"] is None for p in records[0]["predictions"])  # no places
    assert str(broken) in records[1]["error"]


def test_predict_fails_fast_naming_the_bad_image(model_dir, images, tmp_path, capsys):
    missing = str(tmp_path / "missing.png")
    assert cli.main(["predict", "--model", str(model_dir), missing, images[0]]) == 1
    assert missing in capsys.readouterr().err


def test_map_writes_a_png_of_the_requested_size(model_dir, dataset_dir, tmp_path, capsys):
    out = tmp_path / "map.png"
    argv = ["map", "--model", str(model_dir), "--dataset", str(dataset_dir), "--query", "Mannerheimintie"]
    assert cli.main([*argv, "--out", str(out), "--width", "640", "--height", "480", "--batch-size", "5"]) == 0
    with Image.open(out) as picture:
        assert picture.size == (640, 480)
    summary = capsys.readouterr().out
    assert "street: 8 images" in summary  # two Mannerheimintie sub-streets x 4 views


def test_query_similarity_is_the_cosine_to_the_templated_text(model_dir, dataset_dir):
    localizer = cli.load_localizer(model_dir)
    rows = similarity_map.load_split(str(dataset_dir), "query")
    similarity = similarity_map.query_similarity(localizer, rows, "Kluuvi", batch_size=7)
    assert similarity.shape == (len(rows),)
    text = localizer.encode_addresses(["Kluuvi"])[0]
    direct = (localizer.embed_images([rows[3]["image"]])[0] @ text).item()
    assert similarity[3] == pytest.approx(direct, abs=1e-5)
    mask, kind = similarity_map.query_matches(rows, "kluuvi")
    assert kind == "neighborhood" and mask.sum() == 12
    mask, kind = similarity_map.query_matches(rows, ADDRESSES[2])
    assert kind == "address" and mask.sum() == 4


def test_load_split_reads_save_to_disk_directories(tmp_path):
    split = datasets.Dataset.from_list(ial_rows(1), features=IAL_FEATURES)
    datasets.DatasetDict(query=split).save_to_disk(str(tmp_path / "saved"))
    assert len(similarity_map.load_split(str(tmp_path / "saved"), "query")) == len(ADDRESSES)


def test_convex_hull_outlines_points():
    points = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [1, 0]])
    assert {tuple(p) for p in similarity_map.convex_hull(points)} == {(0, 0), (2, 0), (2, 2), (0, 2)}


def test_forwarded_commands_pass_their_arguments(monkeypatch):
    seen = {}
    monkeypatch.setattr("dataset_scripts.demo_city.main", lambda argv: seen.update(build=argv))
    monkeypatch.setattr("addressclip_train.train.main", lambda argv: seen.update(train=argv))
    assert cli.main(["build-demo", "--output", "x", "--max-addresses", "4"]) == 0
    assert cli.main(["train", "configs/demo.json", "--max_steps", "2"]) == 0
    assert seen == {
        "build": ["--output", "x", "--max-addresses", "4"],
        "train": ["configs/demo.json", "--max_steps", "2"],
    }


def test_shipped_recipes_resolve_by_name_or_old_path(tmp_path):
    assert {"demo", "tiny", "pitts_ial", "sf_ial_base", "sf_ial_large"} <= set(shipped_recipes())
    for name in ("pitts_ial", "pitts_ial.json", "configs/pitts_ial.json"):
        assert resolve_recipe(name).name == "pitts_ial.json" and resolve_recipe(name).is_file()
    own = tmp_path / "mine.json"
    own.write_text("{}")
    assert resolve_recipe(str(own)) == own
    with pytest.raises(SystemExit, match="no shipped recipe has that name"):
        resolve_recipe("no_such_recipe.json")


def test_console_script_is_installed():
    proc = subprocess.run(
        [sys.executable, "-c", "from importlib.metadata import entry_points as e; "
         "print([x.value for x in e(group='console_scripts') if x.name == 'addressclip'])"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "addressclip_train.cli:main" in proc.stdout
