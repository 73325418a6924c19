"""Shared builder pieces: @-names, streaming JSON, key tracking, path safety, users' own tables, the benchmark."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset
from hypothesis import given
from hypothesis import strategies as st

from dataset_scripts import ial_builder
from dataset_scripts.ial_io import ImageKeys, Reject, iter_json_object, resolve_key
from dataset_scripts.ial_report import SeenSet
from dataset_scripts.schema import IAL_FEATURES, SPLITS
from dataset_scripts.vg_names import VGName, format_vg_name, is_vg_name, parse_vg_name
from fixtures import ROOT
from fixtures.raw_layouts import RELEASE_ADDRESSES, jpeg

finite = st.floats(allow_nan=False, allow_infinity=False) | st.none()
text = st.text(st.characters(blacklist_characters="@/\\", blacklist_categories=("Cs",)), min_size=1) | st.none()


@given(finite, finite, st.integers(1, 60) | st.none(), st.sampled_from("CDEFGHJKLMNPQRSTUVWX") | st.none(), finite,
       finite, text, text, finite, finite, text)  # fmt: skip
def test_vg_name_format_and_parse_are_inverse(east, north, number, letter, lat, lon, pano, tile, heading, pitch, note):
    name = VGName(east, north, number, letter, lat, lon, pano, tile, heading, pitch, None, None, None, note)
    assert parse_vg_name("some/dir/" + format_vg_name(name)) == name


def test_vg_name_reads_real_names():
    real = "@0551248.40@4180740.41@10@S@37.77047@-122.43179@jsBPKBGj2bf4Q6ZoZZoVpw@@180@@@@201311@@.jpg"
    name = parse_vg_name(real)
    assert (name.utm_east, name.utm_north, name.utm_zone, name.heading) == (551248.4, 4180740.41, "10S", 180.0)
    assert name.pano_id == "jsBPKBGj2bf4Q6ZoZZoVpw" and name.tile is None and name.timestamp == "201311"
    assert not is_vg_name("000/000015_pitch1_yaw1.jpg")
    with pytest.raises(ValueError, match="'zone_number' is not a number"):
        parse_vg_name("@1@2@x@S@@@@@@@@@@@.jpg")


def test_json_object_streams_across_chunks_and_keeps_duplicates(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{ "a\\u00e9": [1, "x}"], "b" :{"n": 2},\n"a\\u00e9": null, "c": 12345 }')
    assert list(iter_json_object(path, chunk_size=3)) == [
        ("aé", [1, "x}"]),
        ("b", {"n": 2}),
        ("aé", None),
        ("c", 12345),
    ]
    path.write_text("{}")
    assert list(iter_json_object(path)) == []
    for bad in ('{"a": [1, 2}', '["a"]', '{"a" 1}', '{"a": 1 "b": 2}'):
        path.write_text(bad)
        with pytest.raises(ValueError, match="a.json"):
            list(iter_json_object(path, chunk_size=2))


def test_seen_set_remembers_across_merges():
    seen = SeenSet(buffer_size=4)
    assert all(seen.add(f"k{i}") for i in range(50))
    assert not any(seen.add(f"k{i}") for i in range(50)) and seen.add("k50") and len(seen) == 51


def test_resolve_key_keeps_paths_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "a" / "link.jpg")
    os.symlink(tmp_path, root / "up")
    assert resolve_key(root, "a/b.jpg") == str(root / "a" / "b.jpg")
    for key in ("../secret.jpg", "/etc/passwd", "a/../../secret.jpg", "a/link.jpg", "up/secret.jpg", ""):
        with pytest.raises(Reject) as caught:
            resolve_key(root, key)
        assert caught.value.reason == "path_escapes_root"


def test_image_keys_accept_each_form_and_name_exactly_one_file(tmp_path):
    sfxl, elsewhere = tmp_path / "sf_xl", tmp_path / "big_disk" / "processed"
    (elsewhere / "train").mkdir(parents=True)
    (elsewhere / "train" / "a.jpg").write_bytes(b"a")
    (sfxl / "small").mkdir(parents=True)
    (sfxl / "small" / "b.jpg").write_bytes(b"b")
    os.symlink(elsewhere, sfxl / "processed")  # processed/ on another disk: read through --sfxl-root/processed
    keys = ImageKeys(
        (str(sfxl / "processed"), str(sfxl)), ("processed", "sf_xl"), ("--sfxl-root/processed", "--sfxl-root")
    )
    found = str(sfxl / "processed" / "train" / "a.jpg")
    for key in ("train/a.jpg", "processed/train/a.jpg", "sf_xl/processed/train/a.jpg", "SF_XL\\train\\a.jpg"):
        assert keys.resolve(key) == (found, "train/a.jpg"), key
    assert keys.resolve("small/b.jpg") == (str(sfxl / "small" / "b.jpg"), "small/b.jpg")  # another top folder
    (elsewhere / "small").mkdir()
    os.link(sfxl / "small" / "b.jpg", elsewhere / "small" / "b.jpg")  # the same file by two forms: not ambiguous
    assert keys.resolve("small/b.jpg") == (str(sfxl / "processed" / "small" / "b.jpg"), "small/b.jpg")
    (elsewhere / "small" / "b.jpg").unlink()
    (elsewhere / "small" / "b.jpg").write_bytes(b"another b")
    for key, reason in [("small/b.jpg", "key_ambiguous"), ("train/none.jpg", "image_missing"),
                        ("processed/../x.jpg", "path_escapes_root"), ("/etc/passwd", "path_escapes_root")]:  # fmt: skip
        with pytest.raises(Reject) as caught:
            keys.resolve(key)
        assert caught.value.reason == reason, key
    where = f"--sfxl-root/processed ({sfxl / 'processed'}) or --sfxl-root ({sfxl})"
    with pytest.raises(Reject, match=re.escape(f"'train/none.jpg' is no file under {where}")):
        keys.resolve("train/none.jpg")
    assert keys.hint().startswith("keys are resolved relative to --sfxl-root/processed or --sfxl-root, with or")


def test_image_keys_never_read_through_a_link_that_leaves_the_root(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    keys = ImageKeys.under(root, "--image-root")
    for key in ("link.jpg", "photos/link.jpg", "../secret.jpg"):
        with pytest.raises(Reject) as caught:
            keys.resolve(key)
        assert caught.value.reason == "path_escapes_root", key
    (root / "a.jpg").write_bytes(b"a")
    assert keys.resolve("photos/a.jpg") == (str(root / "a.jpg"), "a.jpg")
    with pytest.raises(Reject, match="is no file under --image-root"):
        keys.resolve("b.jpg")


def _table_rows(tmp_path: Path, locations: int = 20) -> list[dict]:
    rows = []
    for loc in range(locations):
        for view in range(3):
            name = f"img/{loc:03d}_{view}.jpg"
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_bytes(jpeg(loc * 10 + view))
            rows.append({"image": name, "address": RELEASE_ADDRESSES[loc % 4][1], "caption": "",
                         "latitude": 60.17 + loc * 1e-3, "longitude": 24.94, "location_id": f"L{loc}",
                         "heading": 90 * view})  # fmt: skip
    return rows


def test_csv_without_splits_is_split_7_2_1_by_location(tmp_path):
    rows = _table_rows(tmp_path)
    rows.append({**rows[0], "image": "img/missing.jpg", "location_id": "L99"})
    rows.append({**rows[1], "latitude": "nan", "image": "img/nan.jpg"})
    (tmp_path / "img" / "nan.jpg").write_bytes(jpeg(0))
    with open(tmp_path / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["--table", str(tmp_path / "rows.csv"), "--image-root", str(tmp_path), "--utm-zone", "35V",
            "--output", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"), "--no-progress"]  # fmt: skip
    assert ial_builder.main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["reason"] for r in report["reported"]) == ["coordinates_missing", "image_missing"]
    assert report["auto_split"] and report["query_addresses_not_in_train"] == 0
    locations = [report["splits"][s]["locations"] for s in SPLITS]
    assert sum(locations) == 20 and 14 <= locations[0] <= 15 and locations[1] >= 3 and locations[2] == 2
    dataset = load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    assert dataset["train"].features == IAL_FEATURES and sum(d.num_rows for d in dataset.values()) == 60
    by_split = {s: set(dataset[s]["location_id"]) for s in SPLITS}
    assert not (by_split["train"] & by_split["database"]) and not (by_split["train"] & by_split["query"])


def test_jsonl_with_splits_and_bad_rows(tmp_path):
    rows = [dict(r, split=SPLITS[max(0, i // 3 - 1)]) for i, r in enumerate(_table_rows(tmp_path, 4))]
    rows += [{"image": "img/000_0.jpg", "address": "x", "color": "red"}, {"image": "img/001_0.jpg"}]
    lines = [json.dumps(r) for r in rows] + ["{broken", "[1, 2]"]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    info = ial_builder.DatasetInfo("mine", "35V", "# mine")
    table = tmp_path / "rows.jsonl"
    locate, options = ial_builder.table_locator("35V"), ial_builder.BuildOptions(progress=False)
    report = ial_builder.build_ial(
        tmp_path / "out", lambda: ial_builder.iter_table(table), tmp_path, locate, info, options
    )
    assert report.rows_in == 16 and report.reasons == {"annotation_malformed": 4}
    assert dict(report.images) == {"train": 6, "database": 3, "query": 3}
    assert not report.auto_split
    row = next(iter(load_dataset(str(tmp_path / "out"), split="train", streaming=True)))
    assert row["utm_zone"] == "35V" and math.isclose(row["latitude"], 60.17) and row["heading"] == 0.0


def test_rows_with_and_without_splits_are_refused(tmp_path):
    rows = _table_rows(tmp_path, 2)
    rows[-1]["split"] = "train"
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    args = ["--table", str(tmp_path / "rows.jsonl"), "--image-root", str(tmp_path), "--utm-zone", "35V",
            "--output", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert ial_builder.main(args) == 1 and not (tmp_path / "out").exists()


def test_benchmark_tiny_mode_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.build_throughput", "--tiny", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2000 rows:" in done.stdout and "peak RSS ratio 2000/500 rows" in done.stdout
    assert "projected SF-IAL-Large (1,960,000 images)" in done.stdout
