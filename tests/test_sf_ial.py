"""SF-IAL builder on small SF-XL ``processed/`` trees (@-named crops, 12 per panorama)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from datasets import load_dataset

from dataset_scripts import sf_ial
from dataset_scripts.ial_builder import BuildError, BuildOptions
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
    tree = make_vg_tree(tmp_path, places=3, views=4)
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


def _shards(out) -> dict[str, bytes]:
    """Every parquet shard of a built directory (the card, with its timings, left out)."""
    return {path.name: path.read_bytes() for path in sorted((out / "data").iterdir())}


def _args(root, tree, out, *extra) -> list[str]:
    return ["--sfxl-root", str(root), "--annotations", str(tree.annotations), "--output", str(out), "--no-progress",
            *extra]  # fmt: skip


@pytest.mark.parametrize("folder, given", [("processed", "sf_xl"), ("sf_xl/processed", "sf_xl"),
                                           ("processed", "processed")])  # fmt: skip
def test_keys_with_the_sfxl_folder_in_front_build_the_same_dataset(tmp_path, folder, given):
    tree = make_vg_tree(tmp_path, places=3, views=4)
    options = BuildOptions(progress=False)
    plain = sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "plain", options=options)
    tree.rekey(folder)
    root = tree.root if given == "sf_xl" else tree.root / "processed"
    prefixed = sf_ial.build_sf_ial(root, tree.annotations, tmp_path / "prefixed", options=options)
    assert sorted((r["key"], r["reason"]) for r in prefixed.reported) == sorted(tree.planted)
    assert prefixed.reasons == plain.reasons and dict(prefixed.images) == dict(plain.images)
    assert _shards(tmp_path / "prefixed") == _shards(tmp_path / "plain")  # byte for byte: paths relative to processed/


def test_a_key_naming_two_different_files_is_reported_not_guessed(tmp_path):
    tree = make_vg_tree(tmp_path, places=3, views=4)
    key = tree.entries["train"][1][0]
    (tree.root / key).parent.mkdir(parents=True)
    (tree.root / key).write_bytes((tree.root / "processed" / key).read_bytes() + b"other")  # sf_xl/train/… too
    report = sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "out", options=BuildOptions(progress=False))
    ambiguous = [r for r in report.reported if r["reason"] == "key_ambiguous"]
    assert [r["key"] for r in ambiguous] == [key] and "different files" in ambiguous[0]["detail"]
    assert report.rows_written == sum(tree.expected.values()) - 1


def test_a_wrong_sfxl_root_fails_with_reasons_and_a_hint_and_writes_nothing(tmp_path, capsys):
    tree = make_vg_tree(tmp_path, places=3, views=4)
    tree.rekey("processed")
    (tmp_path / "wrong" / "processed").mkdir(parents=True)
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert sf_ial.main(_args(tmp_path / "wrong", tree, out, "--report", str(report))) == 1
    err = capsys.readouterr().err
    assert "no rows in split(s) train (12 rejected), database (4 rejected), query (6 rejected)" in err
    assert "22 of 22 rows rejected (100%" in err and "image missing [image_missing]: 21 row(s), e.g. " in err
    assert "hint: keys are resolved relative to --sfxl-root/processed or --sfxl-root" in err
    assert "path escapes the data root [path_escapes_root]: 1 row(s)" in err
    assert f"every rejected row is listed in {report}" in err
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    written = json.loads(report.read_text())
    assert written["rows_reported"] == written["rows_in"] == 22 and written["reasons"]["image_missing"] == 21


def test_a_mostly_rejected_build_fails_unless_the_limit_allows_it(tmp_path, capsys):
    tree = make_vg_tree(tmp_path, places=3, views=2)  # 7 good rows, 9 planted bad ones
    assert sf_ial.main(_args(tree.root, tree, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "9 of 16 rows rejected (56%; --max-rejected-fraction is 0.5)" in err and "no rows in split" not in err
    assert "pass --report FILE to list every rejected row" in err and not (tmp_path / "out").exists()
    assert sf_ial.main(_args(tree.root, tree, tmp_path / "out", "--max-rejected-fraction", "0.6")) == 0
    assert load_dataset(str(tmp_path / "out"), split="query", cache_dir=str(tmp_path / "c")).num_rows == 2
    with pytest.raises(SystemExit, match="between 0 and 1"):
        sf_ial.main(_args(tree.root, tree, tmp_path / "x", "--max-rejected-fraction", "2"))


def test_an_empty_query_split_fails_naming_it(tmp_path):
    tree = make_vg_tree(tmp_path, places=4, views=4)
    tree.entries["query"] = []
    tree.write_release("SF_base")
    with pytest.raises(BuildError, match=r"no rows in split\(s\) query \(none annotated\)\.") as caught:
        sf_ial.build_sf_ial(tree.root, tree.annotations, tmp_path / "out", options=BuildOptions(progress=False))
    assert caught.value.report.images["train"] == tree.expected["train"] and not (tmp_path / "out").exists()
