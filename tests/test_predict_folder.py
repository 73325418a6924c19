"""``addressclip predict FOLDER --output FILE``: records, resume, bad files, the pipeline's answers, 2 processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from addressclip_train import cli
from addressclip_train import predict_folder as engine
from fixtures import ROOT
from fixtures.tiny_models import ADDRESSES, accelerate_launch, save_tiny_model

COUNT = 13  # not a multiple of any batch size below: the last batch (and the 2-process shards) are uneven


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=5)


def write_photos(folder, count: int = COUNT, start: int = 0) -> list[str]:
    """``count`` small random JPEGs, every third one in a subfolder; returns their paths."""
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + count):
        path = folder / ("sub" if i % 3 == 0 else "") / f"street{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24 + i % 5, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return sorted(paths)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    paths = write_photos(folder)
    (folder / "notes.txt").write_text("not an image: not collected")
    broken = paths[COUNT // 2]  # a corrupt file mid-folder
    with open(broken, "wb") as handle:
        handle.write(b"\xff\xd8 not really a jpeg")
    return folder, paths, broken


def predict(model_dir, output, *sources, extra=()) -> int:
    argv = ["predict", "--model", str(model_dir), "--output", str(output), "--top-k", "3", "--min-score", "0"]
    return cli.main([*argv, "--batch-size", "4", "--no-progress", *extra, *map(str, sources)])


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_collect_images_expands_folders_and_globs(photos):
    folder, paths, _ = photos
    assert engine.collect_images([str(folder)]) == paths  # recursive, sorted, image suffixes only
    top = engine.collect_images([str(folder / "*.jpg")])
    assert top == [p for p in paths if os.sep + "sub" + os.sep not in p] and len(top) < len(paths)
    assert engine.collect_images([str(folder / "**" / "*.jpg"), paths[0]]) == paths  # no repeats
    with pytest.raises(ValueError, match="matches no files"):
        engine.collect_images([str(folder / "*.png")])
    (folder.parent / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        engine.collect_images([str(folder.parent / "empty")])


def test_jsonl_records_are_the_pipelines_answers_and_a_bad_file_is_one_error(model_dir, photos, tmp_path, capsys):
    folder, paths, broken = photos
    output = tmp_path / "preds.jsonl"
    assert predict(model_dir, output, folder, extra=["--num-workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "1 image could not be read, see the error field in" in err and str(output) in err
    records = jsonl(output)
    assert [r["image"] for r in records] == paths  # every image once, in order; the rest answered
    bad = [r for r in records if "error" in r]
    assert len(bad) == 1 and bad[0]["image"] == broken and broken in bad[0]["error"] and "predictions" not in bad[0]
    good = [p for p in paths if p != broken]
    expected = cli.load_localizer(model_dir)(good, top_k=3, min_score=0, batch_size=5)
    for record, answer in zip((r for r in records if "error" not in r), expected):
        assert [p["address"] for p in record["predictions"]] == [p["address"] for p in answer]  # same top-k
        assert set(record["predictions"][0]) == set(answer[0])  # the pipeline's fields
        for mine, theirs in zip(record["predictions"], answer):
            assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
            assert mine["similarity"] == pytest.approx(theirs["similarity"], abs=1e-5)
            assert mine["address"] in ADDRESSES and mine["latitude"] is None  # this bank has no places


def test_csv_has_top1_columns_and_the_ranking_as_json(model_dir, photos, tmp_path):
    folder, paths, broken = photos
    output = tmp_path / "preds.csv"
    assert predict(model_dir, output, str(folder / "**" / "*.jpg"), extra=["--num-workers", "0"]) == 0
    with output.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == engine.CSV_COLUMNS
    assert [row["image"] for row in rows] == paths
    for row in rows:
        if row["image"] == broken:
            assert broken in row["error"] and row["address"] == row["predictions"] == ""
            continue
        ranking = json.loads(row["predictions"])
        assert len(ranking) == 3 and row["error"] == ""
        assert row["address"] == ranking[0]["address"] and float(row["score"]) == ranking[0]["score"]
        assert row["latitude"] == row["longitude"] == ""  # no place in this bank: empty cells
    assert [r["image"] for r in engine.read_records(output)] == paths  # the CSV reads back as records


def test_resume_skips_done_images_and_redoes_a_truncated_last_line(model_dir, photos, tmp_path, monkeypatch):
    folder, paths, _ = photos
    output = tmp_path / "preds.jsonl"
    assert predict(model_dir, output, folder, extra=["--num-workers", "0"]) == 0
    first = jsonl(output)
    text = output.read_text(encoding="utf-8")
    output.write_text(text[: len(text) - 40], encoding="utf-8")  # killed while writing the last record
    added = write_photos(folder, count=3, start=100)  # new photos arrived since
    decoded = []
    real = engine.image_pixels
    monkeypatch.setattr(engine, "image_pixels", lambda proc, images: decoded.extend(images) or real(proc, images))
    assert predict(model_dir, output, folder, extra=["--num-workers", "0"]) == 0
    assert sorted(decoded) == sorted([paths[-1], *added])  # only the cut-off record and the new photos
    records = jsonl(output)
    images = [r["image"] for r in records]
    assert len(images) == len(set(images)) == COUNT + 3 and set(images) == set(paths) | set(added)
    assert records[: COUNT - 1] == first[: COUNT - 1]  # answered records kept as they were
    redone = next(r for r in records if r["image"] == paths[-1])["predictions"]  # the same answer (other batch)
    assert [p["address"] for p in redone] == [p["address"] for p in first[-1]["predictions"]]
    assert [p["score"] for p in redone] == pytest.approx([p["score"] for p in first[-1]["predictions"]], abs=1e-5)
    decoded.clear()
    assert predict(model_dir, output, folder) == 0 and decoded == []  # all done: nothing is read again
    monkeypatch.chdir(folder.parent)
    assert predict(model_dir, output, "photos/.") == 0 and decoded == []  # the same files, spelled another way
    assert len(jsonl(output)) == COUNT + 3


def test_an_output_that_is_not_ours_is_one_line(model_dir, photos, tmp_path, capsys):
    folder, _, _ = photos
    other = tmp_path / "other.jsonl"
    other.write_text('{"image": "a.jpg"}\nnot json\n')
    assert predict(model_dir, other, folder) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert predict(model_dir, tmp_path / "preds.txt", folder) == 2
    assert "must end in .jsonl or .csv" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_merge_into_one_file_with_every_image_once(model_dir, photos, tmp_path):
    folder, paths, broken = photos
    single, merged = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert predict(model_dir, single, folder, extra=["--num-workers", "0"]) == 0
    argv = ["predict", "--model", str(model_dir), "--output", str(merged), "--top-k", "3", "--min-score", "0"]
    argv += ["--batch-size", "2", "--num-workers", "1", "--no-progress", str(folder)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = accelerate_launch("addressclip_train.cli", *argv, port=29531, module=True)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("answered") == 1  # the summary comes from the main process only
    assert f"{COUNT - 1} answered by 2 processes, 1 could not be read" in proc.stderr, proc.stderr[-2000:]
    records = jsonl(merged)
    assert [r["image"] for r in records] == paths  # 13 images in 2 shards of batches of 2: no padding repeats
    mine, theirs = {r["image"]: r for r in records}, {r["image"]: r for r in jsonl(single)}
    assert "error" in mine[broken]
    for path in paths:
        if path != broken:
            assert [p["address"] for p in mine[path]["predictions"]] == [
                p["address"] for p in theirs[path]["predictions"]
            ]


@pytest.mark.slow
def test_the_benchmark_tiny_mode_measures_both_goals(tmp_path):
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "benchmarks.predict_folder", "--tiny", "--images", "24", "48", "--json", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["cli"]["small"]["images"] == 24 and result["cli"]["large"]["images"] == 48  # every image answered
    assert result["encoder_ips"] > 0 and result["folder_ips"] > 0
    assert result["goals"]["rss"]["ratio"] == pytest.approx(
        result["cli"]["large"]["peak_rss_mib"] / result["cli"]["small"]["peak_rss_mib"]
    )
    assert result["cli"]["small"]["peak_rss_mib"] > 50  # a real process measured (torch alone is more)
    assert "goal throughput: folder / encoder" in proc.stdout and "goal rss:" in proc.stdout
