"""The ``addressclip`` console script at its edges: one-line errors before any work, quiet output, quick help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.tiny_models import save_tiny_model

SCRIPT = str(Path(sys.executable).with_name("addressclip"))


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=7)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "street.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and lines[0].startswith("addressclip "), proc.stderr
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr


def test_a_missing_model_directory_is_one_line(photo):
    proc = run("predict", "--model", "/nonexistent", str(photo))
    _one_line_error(proc, "model directory '/nonexistent' does not exist")


def test_a_directory_that_is_not_a_model_is_one_line(photo, tmp_path):
    _one_line_error(run("predict", "--model", str(tmp_path), str(photo)), "has no config.json")


def test_a_device_this_build_lacks_is_one_line(model_dir, photo):
    import torch

    device = "mps" if torch.cuda.is_available() else "cuda"  # one this machine does not have
    _one_line_error(run("predict", "--model", str(model_dir), "--device", device, str(photo)), f"--device {device}")


def test_map_checks_its_output_folder_before_any_work(model_dir, tmp_path):
    out = tmp_path / "missing_dir" / "x.png"
    proc = run("map", "--model", str(model_dir), "--query", "Kluuvi", "--out", str(out))
    _one_line_error(proc, "does not exist")


def test_map_takes_either_a_query_or_an_image_in_one_line(model_dir, photo, tmp_path):
    out = str(tmp_path / "x.png")
    both = run("map", "--model", str(model_dir), "--query", "Kluuvi", "--image", str(photo), "--out", out)
    _one_line_error(both, "--image and --query are two kinds of map")
    _one_line_error(run("map", "--model", str(model_dir), "--out", out), "give --query TEXT")
    missing = str(tmp_path / "nowhere.jpg")
    _one_line_error(run("map", "--model", str(model_dir), "--image", missing, "--out", out), "is not a file")
    assert not (tmp_path / "x.png").exists()


def test_help_is_quick_because_it_imports_no_torch():
    probe = "import sys; from addressclip_train import cli\ntry: cli.main(['--help'])\nexcept SystemExit: pass\n"
    probe += "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    assert "predict" in run("--help").stdout


def test_predict_prints_no_loading_bar_and_says_when_it_abstains(model_dir, photo):
    proc = run("predict", "--model", str(model_dir), "--top-k", "2", str(photo))
    assert proc.returncode == 0 and "Loading weights" not in proc.stderr, proc.stderr
    abstained = run("predict", "--model", str(model_dir), "--min-score", "1", str(photo))
    assert abstained.returncode == 0 and "no confident address" in abstained.stdout
    as_json = json.loads(run("predict", "--model", str(model_dir), "--min-score", "1", "--json", str(photo)).stdout)
    assert as_json == [{"image": str(photo), "predictions": []}]


def test_heic_photos_work_with_the_extra_and_name_it_without(model_dir, tmp_path):
    import pillow_heif

    pillow_heif.register_heif_opener()
    photo = tmp_path / "iphone.heic"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo, format="HEIF")
    proc = run("predict", "--model", str(model_dir), "--json", "--top-k", "1", str(photo))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)[0]["predictions"]) == 1
    blocked = "import sys; sys.modules['pillow_heif'] = None\nfrom addressclip_train.cli import main\nsys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "predict", "--model", str(model_dir), "--json", "--errors", "skip", str(photo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "addressclip[heic]"' in json.loads(proc.stdout)[0]["error"]
