"""A saved directory is a Hub repo: it loads with trust_remote_code in a process that cannot import the package."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from fixtures.tiny_models import ADDRESSES, tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys, torch
    sys.modules["modeling_addressclip"] = None  # the package is blocked: only the saved code may be used
    sys.modules["dataset_scripts"] = None
    from transformers import AutoModel, AutoModelForZeroShotImageClassification, pipeline
    from PIL import Image
    model_dir, batch_path, out_path = sys.argv[1:4]
    batch = torch.load(batch_path)
    result = {}
    for auto in (AutoModel, AutoModelForZeroShotImageClassification):
        model = auto.from_pretrained(model_dir, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        with torch.no_grad():
            out = model(**batch)
            scores, indices = model.localize(batch["pixel_values"], top_k=3)
        result[auto.__name__] = dict(logits=out.logits_per_image.tolist(), loss=out.loss.item(),
                                     scores=scores.tolist(), indices=indices.tolist(), bank=model.address_bank,
                                     places=model.address_places)
    classifier = pipeline("zero-shot-image-classification", model=model_dir, trust_remote_code=True)
    image = Image.open(sys.argv[4])
    result["pipeline"] = classifier(image, candidate_labels=sys.argv[5:], hypothesis_template="{}")
    json.dump(result, open(out_path, "w"))
    """
)


def test_saved_directory_loads_as_remote_code_in_a_fresh_process(tmp_path):
    processor = tiny_processor()
    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    places = [
        {"latitude": 60.17 + i / 1000, "longitude": 24.94, "line": [[60.17, 24.94 + i / 1000]]}
        for i in range(len(ADDRESSES) - 1)
    ]
    model.set_address_bank(ADDRESSES, processor, places=[*places, None])
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForZeroShotImageClassification"}
    for name in ("configuration_addressclip.py", "modeling_addressclip.py", "losses.py", "address.py"):
        assert (model_dir / name).exists(), name

    rows = tiny_rows(4, seed=5)
    batch = AddressCLIPCollator.from_config(processor, model.config)(rows)
    torch.save(batch, tmp_path / "batch.pt")
    rows[0]["image"].save(tmp_path / "query.png")
    with torch.no_grad():
        expected = model(**batch)
        scores, indices = model.localize(batch["pixel_values"], top_k=3)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    labels = ADDRESSES[:4]
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(model_dir),
            str(tmp_path / "batch.pt"),
            str(tmp_path / "out.json"),
            str(tmp_path / "query.png"),
            *labels,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())

    for auto in ("AutoModel", "AutoModelForZeroShotImageClassification"):
        got = result[auto]
        torch.testing.assert_close(torch.tensor(got["logits"]), expected.logits_per_image, rtol=1e-5, atol=1e-5)
        assert abs(got["loss"] - expected.loss.item()) < 1e-5
        torch.testing.assert_close(torch.tensor(got["scores"]), scores, rtol=1e-5, atol=1e-6)
        assert got["indices"] == indices.tolist() and got["bank"] == ADDRESSES
        assert got["places"] == model.address_places and got["places"][0]["line"] == [[60.17, 24.94]]

    ranked = result["pipeline"]
    assert sorted(r["label"] for r in ranked) == sorted(labels)
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    with torch.no_grad():
        tokens = processor.tokenizer(labels, padding=True, return_tensors="pt")
        logits = model(**tokens, pixel_values=batch["pixel_values"][:1]).logits_per_image[0]
    assert ranked[0]["label"] == labels[int(logits.argmax())]
