"""Dependencies run one way: addressclip_train -> dataset_scripts -> modeling_addressclip.

The Hub model library (everything a saved model directory, the pipeline and the metric need) imports
neither the builders nor the training code, and never pulls in osmium, shapely, matplotlib or gradio.
Checked twice: statically over every module's imports, and by running the library with the upper
layers blocked in a fresh process.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.tiny_models import ADDRESSES, save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {"addressclip_train", "train", "benchmarks", "fixtures", "tests"}
BUILDERS = {"dataset_scripts"}
HEAVY_OPTIONAL = {"osmium", "shapely", "matplotlib", "gradio", "scipy"}
FORBIDDEN = {
    "modeling_addressclip": TRAINING | BUILDERS | HEAVY_OPTIONAL,
    "dataset_scripts": TRAINING,
}


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports; relative ones stay inside)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_of_a_lower_layer_imports_an_upper_one(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_modules(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}


BLOCKER = """
import json, sys
BLOCKED = {blocked!r}
for name in BLOCKED:  # the standard way to make a package unimportable: import raises, find_spec says absent
    sys.modules[name] = None
"""
REPORT = """
print(json.dumps(sorted({m.split(".")[0] for m, v in sys.modules.items() if v is not None} & set(BLOCKED))))
"""

LIBRARY_BODY = """
import modeling_addressclip
from transformers import pipeline
from modeling_addressclip.metrics import load_address_accuracy
from PIL import Image
localizer = pipeline("image-address-localization", model=sys.argv[1], trust_remote_code=True)
top = localizer(Image.new("RGB", (40, 30), (90, 120, 150)), top_k=5)
assert len(top) == 5 and top[0]["address"] in json.loads(sys.argv[2]), top
ranked = [row["address"] for row in top]
scores = load_address_accuracy().compute(predictions=[ranked], references=[ranked[0]])
assert scores["ssa@1"] == 1.0, scores
"""

BUILDERS_BODY = """
import importlib, pkgutil
import dataset_scripts
for module in pkgutil.iter_modules(dataset_scripts.__path__):
    importlib.import_module(f"dataset_scripts.{module.name}")
"""


def _run_blocked(body: str, blocked: set[str], *args: str) -> subprocess.CompletedProcess:
    script = BLOCKER.format(blocked=sorted(blocked)) + body + REPORT
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_library_runs_a_pipeline_and_the_metric_with_builders_and_training_blocked(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model")
    blocked = TRAINING | BUILDERS | HEAVY_OPTIONAL - {"tests"}
    proc = _run_blocked(LIBRARY_BODY, blocked, str(model_dir), json.dumps(ADDRESSES))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_every_builder_imports_with_the_training_code_blocked():
    proc = _run_blocked(BUILDERS_BODY, TRAINING - {"tests"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
