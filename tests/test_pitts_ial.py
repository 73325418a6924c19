"""Pitts-IAL builder on small raw trees in the Pitts250k (.mat) and datasets_vg (@-name) layouts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasets import load_dataset

from dataset_scripts import pitts_ial
from dataset_scripts.ial_builder import BuildError, BuildOptions
from dataset_scripts.schema import IAL_FEATURES, SPLITS
from fixtures.raw_layouts import PITTS_CENTER, make_pitts_tree, make_vg_tree, write_pitts_mat


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The Pitts250k-layout tree, built once through the command line."""
    base = tmp_path_factory.mktemp("pitts")
    tree = make_pitts_tree(base)
    args = ["--pitts-root", str(tree.root), "--annotations", str(tree.annotations), "--output", str(base / "out"),
            "--report", str(base / "report.json"), "--no-progress"]  # fmt: skip
    assert pitts_ial.main(args) == 0
    return tree, base / "out", json.loads((base / "report.json").read_text())


def test_report_lists_exactly_the_planted_rows(built):
    tree, _, report = built
    assert sorted((r["key"], r["reason"]) for r in report["reported"]) == sorted(tree.planted)
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    assert {s: v["images"] for s, v in report["splits"].items()} == tree.expected
    assert report["query_addresses_not_in_train"] == 0 and report["auto_split"] is False


def test_load_dataset_and_streaming_give_the_schema(built, tmp_path):
    tree, out, _ = built
    dataset = load_dataset(str(out), cache_dir=str(tmp_path))
    assert {s: len(dataset[s]) for s in SPLITS} == tree.expected
    assert dataset["train"].features == IAL_FEATURES
    row = dataset["query"].filter(lambda r: r["location_id"].startswith("pitts250k-query/"))[0]
    assert row["utm_zone"] == "17T" and math.isnan(row["heading"])
    assert abs(row["latitude"] - PITTS_CENTER[0]) < 0.01 and row["image"].size == (16, 12)
    streamed = load_dataset(str(out), streaming=True)
    assert {s: sum(1 for _ in streamed[s]) for s in SPLITS} == tree.expected
    first = next(iter(streamed["train"]))
    assert first["address"] == "Forbes Avenue between Craig Street and Morewood Avenue, Oakland"
    assert first["location_id"] == "pitts250k/000000" and first["cross_streets"] == ["Craig Street", "Morewood Avenue"]


def test_card_has_source_license_statistics_and_citation(built):
    _, out, report = built
    card = (out / "README.md").read_text()
    for text in ("Pitts250k", "non-commercial research", "@inproceedings{xu2024addressclip", "| train | 17 |",
                 "SF-IAL-Large (1,960,000 images) would take about", "configs:", "license: other"):  # fmt: skip
        assert text in card, text
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")]


def test_strict_fails_on_the_first_bad_row_and_writes_nothing(tmp_path, capsys):
    tree = make_pitts_tree(tmp_path)
    args = ["--pitts-root", str(tree.root), "--annotations", str(tree.annotations), "--output",
            str(tmp_path / "out"), "--strict", "--no-progress"]  # fmt: skip
    assert pitts_ial.main(args) == 1
    assert "--strict" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pitts250k", "annotations", "outside.jpg"]


def test_push_to_hub_offline_fails_clearly_after_a_complete_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tree = make_pitts_tree(tmp_path, places=6, views=3)
    args = ["--pitts-root", str(tree.root), "--annotations", str(tree.annotations), "--output", str(tmp_path / "out"),
            "--push-to-hub", "someone/pitts-ial", "--no-progress", "--image-size", "8"]  # fmt: skip
    assert pitts_ial.main(args) == 2
    err = capsys.readouterr().err
    assert "is complete" in err and "someone/pitts-ial" in err
    train = load_dataset(str(tmp_path / "out"), split="train", streaming=True)
    assert min(next(iter(train))["image"].size) == 8


def test_vg_layout_reads_coordinates_from_names(tmp_path):
    tree = make_vg_tree(tmp_path, center=PITTS_CENTER, zone=(17, "T"), other_zone=(10, "S"), places=5, views=2,
                        folder="images/train/database", prefix="Pitts")  # fmt: skip
    report = pitts_ial.build_pitts_ial(tree.root, tree.annotations, tmp_path / "out", BuildOptions(progress=False))
    assert sorted((r["key"], r["reason"]) for r in report.reported) == sorted(tree.planted)
    assert dict(report.images) == {s: n for s, n in tree.expected.items() if n}


def test_mat_reader_is_strict_about_fields_and_shapes(tmp_path):
    path = tmp_path / "pitts250k_test.mat"
    write_pitts_mat(path, [("000/000000_pitch1_yaw1.jpg", 584000.0, 4477000.0)], [("000/000000_pitch1_yaw1.jpg", 1, 2)])
    index = pitts_ial.read_pitts_mat(path)  # one image each: scipy squeezes the 2 x 1 arrays to (2,)
    assert index == {
        "000/000000_pitch1_yaw1.jpg": (584000.0, 4477000.0),
        "queries_real/000/000000_pitch1_yaw1.jpg": (1, 2),
    }
    import scipy.io

    struct = {"whichSet": "val", "dbImageFns": np.array(["a.jpg", "b.jpg"], dtype=object).reshape(-1, 1),
              "utmDb": np.zeros((3, 2)), "qImageFns": np.zeros((0, 1), dtype=object), "utmQ": np.zeros((2, 0)),
              "numImages": 2, "numQueries": 0}  # fmt: skip
    scipy.io.savemat(str(path), {"dbStruct": struct})
    with pytest.raises(ValueError, match=r"pitts250k_test.mat: dbStruct.utmDb must be 2 x 2"):
        pitts_ial.read_pitts_mat(path)
    del struct["numQueries"]
    scipy.io.savemat(str(path), {"dbStruct": struct})
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['numQueries'\]"):
        pitts_ial.read_pitts_mat(path)
    scipy.io.savemat(str(path), {"other": 1})
    with pytest.raises(ValueError, match="no 'dbStruct'"):
        pitts_ial.read_pitts_mat(path)


def _built_shards(out) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((out / "data").iterdir())}


@pytest.mark.parametrize("folder", ["pitts250k", "Pitts250k"])
def test_keys_with_a_leading_folder_build_the_same_dataset(tmp_path, folder):
    tree = make_pitts_tree(tmp_path)
    options = BuildOptions(progress=False)
    plain = pitts_ial.build_pitts_ial(tree.root, tree.annotations, tmp_path / "plain", options)
    tree.rekey(folder)  # the root folder is named Pitts250k
    prefixed = pitts_ial.build_pitts_ial(tree.root, tree.annotations, tmp_path / "prefixed", options)
    assert sorted((r["key"], r["reason"]) for r in prefixed.reported) == sorted(tree.planted)
    assert prefixed.reasons == plain.reasons and dict(prefixed.images) == dict(plain.images)
    assert _built_shards(tmp_path / "prefixed") == _built_shards(tmp_path / "plain")


def test_a_leading_folder_that_also_exists_inside_the_root_is_ambiguous(tmp_path):
    tree = make_pitts_tree(tmp_path)
    key = "000/000002_pitch1_yaw1.jpg"
    inner = tree.root / "pitts250k" / key
    inner.parent.mkdir(parents=True)
    inner.write_bytes((tree.root / key).read_bytes() + b"other")
    tree.rekey("pitts250k")
    report = pitts_ial.build_pitts_ial(tree.root, tree.annotations, tmp_path / "out", BuildOptions(progress=False))
    assert [r["key"] for r in report.reported if r["reason"] == "key_ambiguous"] == [f"pitts250k/{key}"]
    assert report.rows_written == sum(tree.expected.values()) - 1


def test_a_query_split_whose_rows_are_all_rejected_fails_naming_it(tmp_path, capsys):
    tree = make_pitts_tree(tmp_path)
    for key, value in tree.entries["query"]:
        if isinstance(value, list):  # not the planted malformed entry, whose key is a train image
            (tree.root / key).unlink()
    args = ["--pitts-root", str(tree.root), "--annotations", str(tree.annotations), "--output", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    assert pitts_ial.main(args) == 1
    err = capsys.readouterr().err
    assert "no rows in split(s) query (9 rejected)." in err and "image missing [image_missing]: 9 row(s)" in err
    assert "hint: keys are resolved relative to --pitts-root, with or without a leading 'Pitts250k/'" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(BuildError, match=r"split\(s\) query") as caught:
        pitts_ial.build_pitts_ial(tree.root, tree.annotations, tmp_path / "out", BuildOptions(progress=False))
    assert caught.value.report.images["train"] == tree.expected["train"]


def test_a_table_without_splits_locates_prefixed_keys_through_the_mat_files(tmp_path):
    tree = make_pitts_tree(tmp_path)
    planted = {key for key, _ in tree.planted}
    good = [(key, value) for rows in tree.entries.values() for key, value in rows if key not in planted]
    table = tmp_path / "rows.jsonl"
    table.write_text(
        "".join(json.dumps({"image": f"Pitts250k/{key}", "address": value[2]}) + "\n" for key, value in good)
    )
    report = pitts_ial.build_pitts_ial(tree.root, table, tmp_path / "out", BuildOptions(progress=False))
    assert report.auto_split and report.rows_written == report.rows_in == len(good) and not report.reported
    assert sum(report.locations.values()) == 12  # 10 Pitts250k places + 2 query places, each in one split
