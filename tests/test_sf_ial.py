"""SF-IAL builder on small SF-XL ``processed/`` trees (@-named crops, 12 per panorama)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from datasets import load_dataset

from dataset_scripts import sf_ial
from dataset_scripts.ial_builder import BuildOptions
from dataset_scripts.schema import IAL_FEATURES, SPLITS
from fixtures.raw_layouts import make_vg_tree, release_value


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("sf")
    tree = make_vg_tree(base, places=5)
    args = ["--sfxl-root", str(tree.root), "--annotations", str(tree.annotations), "--config", "base",
            "--output", str(base / "out"), "--report", str(base / "report.json"), "--no-progress"]  # fmt: skip
    assert sf_ial.main(args) == 0
    return tree, base / "out", json.loads((base / "report.json").read_text())


def test_report_lists_exactly_the_planted_rows(built):
    tree, _, report = built
    assert sorted((r["key"], r["reason"]) for r in report["reported"]) == sorted(tree.planted)
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"] == sum(map(len, tree.entries.values()))
    assert report["splits"]["train"] == {"images": tree.expected["train"], "locations": 4, "addresses": 3}


def test_load_dataset_and_streaming(built, tmp_path):
    tree, out, _ = built
    dataset = load_dataset(str(out), cache_dir=str(tmp_path))
    assert {s: dataset[s].num_rows for s in SPLITS} == tree.expected and dataset["query"].features == IAL_FEATURES
    train = dataset["train"].remove_columns("image")
    assert sorted({r["heading"] for r in train if r["location_id"] == "pano0000"}) == [30.0 * v for v in range(12)]
    no_pano = [r for r in train if not r["location_id"].startswith("pano")]
    assert len(no_pano) == 1 and math.isnan(no_pano[0]["heading"]) and no_pano[0]["location_id"].count("_") == 1
    assert set(dataset["train"]["location_id"]).isdisjoint(dataset["query"]["location_id"])
    streamed = load_dataset(str(out), streaming=True)
    assert {s: sum(1 for _ in streamed[s]) for s in SPLITS} == tree.expected
    assert next(iter(streamed["database"]))["utm_zone"] == "10S"


def test_config_picks_its_annotation_files(tmp_path):
    tree = make_vg_tree(tmp_path, places=3, views=2)
    large = {"SF_base": "SF_large"}
    for path in list(tree.annotations.iterdir()):
        shutil.copy(path, tree.annotations / path.name.replace("SF_base", large["SF_base"]))
    extra = json.loads((tree.annotations / "SF_large_train.json").read_text())
    extra["train/plain_extra.jpg"] = release_value(0)
    (tree.annotations / "SF_large_train.json").write_text(json.dumps(extra))
    options = BuildOptions(progress=False)
    base = sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "base", "base", options)
    large_report = sf_ial.build_sf_ial(tree.root / "processed", tree.annotations, tmp_path / "large", "large", options)
    assert large_report.rows_in == base.rows_in + 1
    assert "# SF-IAL-Large" in (tmp_path / "large" / "README.md").read_text()
    (tree.annotations / "SF_base_queries.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"_queries.json for config 'base'"):
        sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "x", "base", options)
    with pytest.raises(ValueError, match="--config"):
        sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "x", "huge", options)


def test_shards_roll_over_at_the_size_limit(tmp_path):
    tree = make_vg_tree(tmp_path, places=3, views=4)
    options = BuildOptions(progress=False, max_shard_bytes=4 * 1024)
    report = sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "out", options=options)
    shards = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    train = [name for name in shards if name.startswith("train-")]
    assert len(train) > 1 and all(name.endswith(f"-of-{len(train):05d}.parquet") for name in train)
    assert sum(1 for _ in load_dataset(str(tmp_path / "out"), split="train", streaming=True)) == report.images["train"]
