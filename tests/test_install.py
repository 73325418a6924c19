"""The user's path: a fresh venv, a non-editable ``pip install`` without extras, every command from elsewhere.

One venv is made for the module (the slow part, ~1-2 min); each test then runs the installed console
script or ``python -m`` in a subprocess from a temporary directory outside the repository, so nothing
can come from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _torch_pin() -> str:
    """The torch requirement line of requirements-test.txt (the CPU build on our machines)."""
    lines = (ROOT / "requirements-test.txt").read_text().splitlines()
    return next(line.strip() for line in lines if re.match(r"^torch\s*[=<>~]", line.strip()))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the package installed from a wheel built from the checkout, no extras."""
    base = tmp_path_factory.mktemp("user")
    wheels, env_dir, source = base / "wheels", base / "venv", base / "source"
    # A clean copy: setuptools reuses an in-tree build/, which can hold modules deleted since.
    leftovers = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".ci-cache", "__pycache__", "outputs")
    shutil.copytree(ROOT, source, ignore=leftovers)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("addressclip-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", _torch_pin(), str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("elsewhere")


def run(venv: Path, cwd: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``command`` with the venv's executables first on PATH, in ``cwd``, with no path into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", ADDRESSCLIP_CACHE=str(cwd / "cache"))
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_install_has_no_checkout_and_no_extras(venv, elsewhere):
    script = (
        "import json, importlib.util, modeling_addressclip, dataset_scripts, addressclip_train;"
        "print(json.dumps([modeling_addressclip.__file__, importlib.util.find_spec('scipy') is None]))"
    )
    proc = run(venv, elsewhere, "python", "-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    location, no_scipy = json.loads(proc.stdout)
    assert str(venv) in location and str(ROOT) not in location and no_scipy


@pytest.mark.parametrize(
    "command",
    [
        ["addressclip", "--help"],
        ["addressclip", "train", "--help"],
        ["addressclip", "build-demo", "--help"],
        ["python", "-m", "dataset_scripts.demo_city", "--help"],
        ["python", "-m", "dataset_scripts.pitts_ial", "--help"],
        ["python", "-m", "dataset_scripts.sf_ial", "--help"],
        ["python", "-m", "dataset_scripts.ial_builder", "--help"],
        ["python", "-m", "dataset_scripts.captions", "--help"],
        ["python", "-m", "dataset_scripts.geotagged", "--help"],
    ],
    ids=lambda command: " ".join(command[:3]),
)
def test_every_command_answers_help_from_any_directory(venv, elsewhere, command):
    proc = run(venv, elsewhere, *command)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()


def test_an_optional_package_is_named_before_any_work(venv, elsewhere):
    root = elsewhere / "pitts"
    (root / "datasets").mkdir(parents=True)
    (root / "datasets" / "pitts250k_train.mat").write_bytes(b"MATLAB 5.0")
    proc = run(venv, elsewhere, "python", "-m", "dataset_scripts.pitts_ial", "--pitts-root", str(root),
               "--annotations", str(root), "--output", str(elsewhere / "never"))  # fmt: skip
    assert proc.returncode != 0 and 'pip install "addressclip[pitts]"' in proc.stderr
    assert "Traceback" not in proc.stderr and not (elsewhere / "never").exists()


@pytest.fixture(scope="module")
def trained(venv, elsewhere, tiny_demo_dir) -> Path:
    """``addressclip train`` with a shipped recipe on a tiny dataset directory, 2 steps."""
    output = elsewhere / "model"
    proc = run(venv, elsewhere, "addressclip", "train", "--config", "tiny", "--dataset_name", str(tiny_demo_dir),
               "--output_dir", str(output), "--max_steps", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "AddressCLIP run summary" in proc.stdout
    return output


def test_train_leaves_a_complete_model_directory(trained):
    for name in ("model.safetensors", "config.json", "README.md", "eval_results.json", "training_curves.png"):
        assert (trained / name).is_file(), name
    assert "eval_ssa@1" in json.loads((trained / "eval_results.json").read_text())
    assert "OpenStreetMap" in (trained / "README.md").read_text()


def test_predict_and_map_on_the_trained_directory(venv, elsewhere, trained, tiny_demo_dir):
    photo = elsewhere / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    proc = run(
        venv,
        elsewhere,
        "addressclip",
        "predict",
        "--model",
        str(trained),
        "--json",
        "--top-k",
        "2",
        "--min-score",
        "0",
        "photo.jpg",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = json.loads(proc.stdout)
    assert record["image"] == "photo.jpg" and len(record["predictions"]) == 2
    out = elsewhere / "map.png"
    proc = run(venv, elsewhere, "addressclip", "map", "--model", str(trained), "--dataset", str(tiny_demo_dir),
               "--query", record["predictions"][0]["main_street"], "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file() and "wrote" in proc.stdout


def test_the_web_demo_names_its_extra_before_any_work(venv, elsewhere, trained):
    proc = run(venv, elsewhere, "addressclip", "demo", "--model", str(trained))
    assert proc.returncode == 2 and 'pip install "addressclip[app]"' in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_the_metric_loads_from_the_installed_package(venv, elsewhere):
    script = (
        "import json; from modeling_addressclip.metrics import load_address_accuracy;"
        "a = 'Forbes Avenue between Craig Street and Morewood Avenue, Oakland';"
        "b = 'Forbes Avenue near Bouquet Street, Oakland';"
        "print(json.dumps(load_address_accuracy().compute(predictions=[[b, a]], references=[a], k=[1, 2])))"
    )
    proc = run(venv, elsewhere, "python", "-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ssa@1": 0.0, "ssa@2": 1.0, "sa@1": 1.0, "sa@2": 1.0}


def test_the_second_city_and_geotagged_photos_work_from_the_installed_package(venv, elsewhere):
    """The shipped extracts travel in the wheel: ``--pbf kotka`` builds from any directory, and the installed
    geotagged builder reads EXIF GPS against the installed Helsinki extract."""
    proc = run(venv, elsewhere, "addressclip", "build-demo", "--pbf", "kotka", "--max-addresses", "5",
               "--image-size", "16", "--output", "kotka_city")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Kotka" in (elsewhere / "kotka_city" / "README.md").read_text()
    proc = run(venv, elsewhere, "python", "-m", "dataset_scripts.geotagged", "--pbf", "helsinki", "--photos",
               "no_such_folder", "--output", "out")  # fmt: skip
    assert proc.returncode != 0 and "no_such_folder" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
