"""Your own city end to end, as README's "Your own city" runs it: a demo city of another extract (Kotka),
a short training on it, then ``addressclip predict`` answers with coordinates in that city and the run
prints the distance metrics; ``addressclip map --image`` draws the answer on its streets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from dataset_scripts.osm import KOTKA_SHA256

SCRIPT = str(Path(sys.executable).with_name("addressclip"))
KOTKA_BOUNDS = (60.51, 60.55, 26.92, 26.98)  # lat min/max, lon min/max of the shipped extract, with a margin


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, f"addressclip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def inside_kotka(latitude: float, longitude: float) -> bool:
    south, north, west, east = KOTKA_BOUNDS
    return south <= latitude <= north and west <= longitude <= east


@pytest.mark.slow
def test_build_train_predict_and_map_a_second_city(tmp_path):
    run("build-demo", "--pbf", "kotka", "--output", "kotka_city", "--max-addresses", "6",
        "--image-size", "32", cwd=tmp_path)  # fmt: skip
    card = (tmp_path / "kotka_city" / "README.md").read_text()
    assert "Kotka" in card and "OpenStreetMap" in card and KOTKA_SHA256 in card  # the name found the shipped file
    query = load_dataset(str(tmp_path / "kotka_city"), split="query")
    assert set(query["utm_zone"]) == {"35V"}

    trained = run("train", "--config", "tiny", "--dataset_name", "kotka_city", "--output_dir", "kotka_model",
                  "--max_steps", "6", "--eval_strategy", "no", cwd=tmp_path)  # fmt: skip
    assert "median error" in trained.stdout, trained.stdout[-2000:]
    results = json.loads((tmp_path / "kotka_model" / "eval_results.json").read_text())
    assert {"eval_median_error_m", "eval_within_25m", "eval_within_100m", "eval_within_1km"} <= set(results)
    assert results["eval_distance_samples"] == results["eval_samples"] == len(query)
    assert "median error" in (tmp_path / "kotka_model" / "README.md").read_text()

    photo = tmp_path / "photo.jpg"
    query[0]["image"].save(photo)
    answer = json.loads(run("predict", "--model", "kotka_model", "--json", "--min-score", "0", "--top-k", "3",
                            str(photo), cwd=tmp_path).stdout)  # fmt: skip
    ranked = answer[0]["predictions"]
    assert len(ranked) == 3
    for row in ranked:
        assert inside_kotka(row["latitude"], row["longitude"]), row
    bank = set(load_dataset(str(tmp_path / "kotka_city"), split="train")["address"])
    assert {row["address"] for row in ranked} <= bank

    drawn = run("map", "--model", "kotka_model", "--image", str(photo), "--out", "where.png", cwd=tmp_path)
    assert (tmp_path / "where.png").stat().st_size > 10_000 and len(drawn.stdout.strip().splitlines()) == 1
