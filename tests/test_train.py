"""train.py end to end on a tiny demo subset: train, evaluate, save a Hub-ready directory, reload, resume."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from addressclip_train import train
from addressclip_train.run import freeze
from fixtures.tiny_models import accelerate_launch

ROOT = Path(__file__).resolve().parents[1]


def _args(dataset, output, *extra):
    return ["tiny", "--dataset_name", str(dataset), "--output_dir", str(output), *extra]


def test_parse_args_json_defaults_flags_and_forced_trainer_settings():
    model_args, data_args, training_args = train.parse_args(["--max_steps", "3", "--label_names", "labels"])
    assert model_args.image_size == 96 and model_args.vision_layers == 4  # from configs/demo.json
    assert training_args.max_steps == 3 and data_args.dataset_name is None
    assert training_args.label_names == ["utm"] and training_args.remove_unused_columns is False
    assert training_args.use_cpu == (not torch.cuda.is_available())


def test_freeze_flags_freeze_one_encoder():
    from fixtures.tiny_models import tiny_config
    from modeling_addressclip import AddressCLIPModel

    model = AddressCLIPModel(tiny_config())
    freeze(model, vision=True)
    assert not any(p.requires_grad for p in model.vision_model.parameters())
    assert all(p.requires_grad for p in model.text_model.parameters()) and model.logit_scale.requires_grad


FRESH = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_addressclip"] = None
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    pixels = processor(images=[Image.open(sys.argv[2]).convert("RGB")], return_tensors="pt")["pixel_values"]
    scores, indices = model.localize(pixels, top_k=3)
    print(json.dumps([(model.address_bank[i], model.address_places[i]) for i in indices[0].tolist()]))
    """
)


def test_train_evaluate_save_and_reload_in_a_fresh_process(tiny_demo_dir, tmp_path):
    import datasets

    output = tmp_path / "run"
    metrics = train.main(_args(tiny_demo_dir, output))
    assert {"eval_ssa@1", "eval_ssa@5", "eval_sa@1", "eval_sa@5"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in metrics if "@" in k)
    assert metrics["eval_ssa@1"] <= metrics["eval_sa@1"] and metrics["eval_ssa@1"] <= metrics["eval_ssa@5"]
    splits = datasets.load_dataset(str(tiny_demo_dir))
    assert metrics["eval_samples"] == len(splits["query"])
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "processor_config.json",
        "README.md",
        "training_curves.png",
        "eval_results.json",
        "modeling_addressclip.py",
        "losses.py",
    ):
        assert (output / name).exists(), name
    assert json.loads((output / "eval_results.json").read_text())["eval_ssa@1"] == metrics["eval_ssa@1"]
    card = (output / "README.md").read_text()
    # The card carries the training data's terms: this local directory is an OSM-derived demo city.
    assert "OpenStreetMap contributors" in card and "license: odbl" in card
    assert "datasets:" not in card  # a local directory is not a Hub dataset id
    bank = set(splits["train"]["address"]) | set(splits["database"]["address"])
    config = json.loads((output / "config.json").read_text())
    assert set(config["address_bank"]) == bank
    # The demo city has coordinates: every bank address has a place, and evaluation measured distances.
    assert len(config["address_places"]) == len(bank) and all(p and p["line"] for p in config["address_places"])
    assert metrics["eval_distance_samples"] == len(splits["query"])
    assert metrics["eval_median_error_m"] >= 0 and metrics["eval_within_25m"] <= metrics["eval_within_1km"] <= 1
    assert "| median error (top-1 place) |" in card and "| within 100 m |" in card

    image = tmp_path / "query.png"
    splits["query"][0]["image"].save(image)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    proc = subprocess.run(
        [sys.executable, str(script), str(output), str(image)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    top3 = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(top3) == 3 and {address for address, _ in top3} <= bank
    assert all(-90 <= place["latitude"] <= 90 and place["line"] for _, place in top3)  # places saved with the bank


@pytest.mark.slow
def test_resume_from_checkpoint_gives_the_uninterrupted_weights(tiny_demo_dir, tmp_path):
    steps = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    train.main(_args(tiny_demo_dir, tmp_path / "full", *steps))
    interrupted = tmp_path / "interrupted"
    train.main(_args(tiny_demo_dir, interrupted, *steps))
    # Leave only what a run killed between step 3 and step 6 leaves: checkpoint-3.
    for path in interrupted.iterdir():
        if path.name != "checkpoint-3":
            subprocess.run(["rm", "-rf", str(path)], check=True)
    train.main(_args(tiny_demo_dir, interrupted, *steps))  # picks up checkpoint-3 by itself
    state = json.loads((interrupted / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert full.keys() == resumed.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_two_process_launch_counts_every_query_once(tiny_demo_dir, tmp_path):
    import datasets

    output = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = accelerate_launch(
        ROOT / "train.py", *_args(tiny_demo_dir, output, "--eval_strategy", "epoch"), port=29531
    )
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((output / "eval_results.json").read_text())
    assert results["eval_samples"] == len(datasets.load_dataset(str(tiny_demo_dir))["query"])
    assert results["eval_distance_samples"] == results["eval_samples"]  # coordinates gathered once per row too
    assert "| world_size | 2 |" in (output / "README.md").read_text()
    assert "AddressCLIP run summary" in proc.stdout


def test_model_card_reports_distances_beside_ssa_and_sa(tmp_path):
    from addressclip_train.reporting import distance_summary, write_model_card

    metrics = {"eval_ssa@1": 0.5, "eval_sa@1": 0.75, "eval_median_error_m": 42.3, "eval_within_25m": 0.3,
               "eval_within_100m": 0.6, "eval_within_1km": 0.9, "eval_distance_samples": 20}  # fmt: skip
    card = write_model_card(tmp_path, metrics, "city", {"seed": 0}, bank_size=3)
    text = (tmp_path / "README.md").read_text()
    table = ["| SSA-1 | 50.00% |", "| SA-1 | 75.00% |", "| median error (top-1 place) | 42.3 m |",
             "| within 25 m | 30.00% |", "| within 100 m | 60.00% |", "| within 1 km | 90.00% |"]  # fmt: skip
    positions = [text.index(row) for row in table]
    assert positions == sorted(positions) and "each of 20 query photos" in text
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"ssa-1": 50.0, "sa-1": 75.0, "median_error_m": 42.3, "within_25m": 30.0,
                       "within_100m": 60.0, "within_1km": 90.0}  # fmt: skip
    line = distance_summary(metrics)
    assert "over 20 query photos" in line and "42.3 m" in line and "within 1 km 90.00%" in line

    write_model_card(tmp_path, {"eval_ssa@1": 0.5}, "city", {}, bank_size=3)
    plain = (tmp_path / "README.md").read_text()
    assert "| SSA-1 | 50.00% |" in plain and "median error" not in plain and distance_summary({"eval_ssa@1": 0.5}) == ""
