"""The image-address-localization pipeline ranks the cached address bank, in-process and as Hub remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from transformers import pipeline

from fixtures.tiny_models import ADDRESSES, save_tiny_model, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPModel, ImageAddressLocalizationPipeline
from modeling_addressclip.pipeline_addressclip import TASK

KEYS = {"address", "score", "similarity", "main_street", "cross_streets", "neighborhood", "latitude", "longitude"}
NEW_ADDRESS = "Fredrikinkatu between Bulevardi and Uudenmaankatu, Punavuori"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, row in enumerate(tiny_rows(3, seed=7)):
        row["image"].save(folder / f"view{i}.png")
        paths.append(str(folder / f"view{i}.png"))
    return paths


@pytest.fixture(scope="module")
def localizer(model_dir):
    return pipeline(TASK, model=str(model_dir), pipeline_class=ImageAddressLocalizationPipeline, device="cpu")


def expected_ranking(localizer, path, top_k):
    """What model.localize says for one image file (the pipeline must agree)."""
    pixel_values = localizer.image_processor(images=[Image.open(path).convert("RGB")], return_tensors="pt")
    scores, indices = localizer.model.localize(pixel_values["pixel_values"], top_k=top_k)
    return [ADDRESSES[i] for i in indices[0].tolist()], scores[0].tolist()


def test_saved_config_names_the_pipeline_task(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_addressclip.ImageAddressLocalizationPipeline"
    assert (model_dir / "pipeline_addressclip.py").is_file()


def test_single_image_matches_model_localize(localizer, images):
    result = localizer(images[0], top_k=3)
    addresses, similarity = expected_ranking(localizer, images[0], 3)
    assert [r["address"] for r in result] == addresses
    assert [r["similarity"] for r in result] == pytest.approx(similarity, abs=1e-5)
    assert all(set(r) == KEYS for r in result)
    assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)
    first = result[0]
    assert first["address"].startswith(first["main_street"]) and first["address"].endswith(first["neighborhood"])


def test_batch_gives_the_same_answers_as_single_images(localizer, images):
    singles = [localizer(path, top_k=2) for path in images]
    for batch_size in (1, 2):
        batched = localizer(images, top_k=2, batch_size=batch_size)
        assert [[r["address"] for r in b] for b in batched] == [[r["address"] for r in s] for s in singles]
        for b, s in zip(batched, singles):
            assert [r["score"] for r in b] == pytest.approx([r["score"] for r in s], abs=1e-5)


def test_top_k_is_capped_by_the_bank_and_scores_are_probabilities(localizer, images):
    result = localizer(images[1], top_k=50)
    assert len(result) == len(ADDRESSES)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="top_k"):
        localizer(images[1], top_k=0)


def test_candidate_subset_uses_bank_rows_without_encoding_text(localizer, images, monkeypatch):
    full = {r["address"]: r["similarity"] for r in localizer(images[0], top_k=len(ADDRESSES))}
    monkeypatch.setattr(localizer, "encode_addresses", lambda texts: pytest.fail(f"encoded {texts}"))
    subset = ADDRESSES[3:5]
    result = localizer(images[0], candidate_addresses=subset)
    assert sorted(r["address"] for r in result) == sorted(subset)
    for r in result:
        assert r["similarity"] == pytest.approx(full[r["address"]], abs=1e-6)


def test_new_candidates_are_encoded_once_per_list(localizer, images, monkeypatch):
    calls = []
    encode = localizer.encode_addresses
    monkeypatch.setattr(localizer, "encode_addresses", lambda texts: calls.append(list(texts)) or encode(texts))
    candidates = [NEW_ADDRESS, ADDRESSES[0]]
    first = localizer(images, candidate_addresses=candidates)
    again = localizer(images[0], candidate_addresses=candidates)
    assert calls == [[NEW_ADDRESS]]
    assert {r["address"] for r in first[0]} == set(candidates)
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in first[0]], abs=1e-6)
    prompt = localizer.model.config.format_address_prompt(NEW_ADDRESS)
    tokens = localizer.tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        text = torch.nn.functional.normalize(localizer.model.get_text_features(**tokens).pooler_output, dim=-1)
    image = localizer.embed_images([images[0]])
    new = next(r for r in again if r["address"] == NEW_ADDRESS)
    assert new["similarity"] == pytest.approx(float(image[0] @ text[0]), abs=1e-5)


def test_bad_candidate_addresses_are_refused(localizer, images):
    with pytest.raises(ValueError, match="'between' without 'and'"):  # claims the address form, must parse
        localizer(images[0], candidate_addresses=["Mannerheimintie between Kaivokatu, Kluuvi"])
    with pytest.raises(ValueError, match="empty"):
        localizer(images[0], candidate_addresses=[])


def test_registered_task_builds_from_a_model_object(model_dir, images):
    model = AddressCLIPModel.from_pretrained(model_dir)
    localizer = pipeline(TASK, model=model, processor=tiny_processor(), device="cpu")
    assert isinstance(localizer, ImageAddressLocalizationPipeline)
    assert len(localizer(images[0], top_k=1)) == 1


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_addressclip"] = None  # only the code saved in the directory may be used
    sys.modules["dataset_scripts"] = None
    from transformers import pipeline
    model_dir, out_path, candidates, *images = sys.argv[1:]
    by_task = pipeline("image-address-localization", model=model_dir, trust_remote_code=True, device="cpu")
    inferred = by_task
    assert "transformers_modules" in type(inferred).__module__, type(inferred).__module__
    try:  # the directory serves two tasks (its own and zero-shot), so a task-less call must name them
        pipeline(model=model_dir, trust_remote_code=True, device="cpu")
        raise AssertionError("a task-less pipeline call should ask for the task")
    except RuntimeError as err:
        assert "image-address-localization" in str(err) and "zero-shot-image-classification" in str(err)
    result = dict(
        task=inferred.task,
        single=by_task(images[0], top_k=2),
        default=inferred(images[0]),
        batch=inferred(images, top_k=3, batch_size=2),
        candidates=by_task(images[1], candidate_addresses=json.loads(candidates)),
    )
    json.dump(result, open(out_path, "w"))
    """
)


def _same(got: list[dict], expected: list[dict]) -> None:
    assert [r["address"] for r in got] == [r["address"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_saved_directory_runs_the_pipeline_in_a_fresh_process(model_dir, images, localizer, tmp_path):
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    candidates = [NEW_ADDRESS, ADDRESSES[2], ADDRESSES[4]]
    command = [sys.executable, str(script), str(model_dir), str(tmp_path / "out.json"), json.dumps(candidates), *images]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["task"] == TASK
    _same(result["single"], localizer(images[0], top_k=2))
    _same(result["default"], localizer(images[0]))
    assert len(result["default"]) == 5 and set(result["default"][0]) == KEYS
    for got, expected in zip(result["batch"], localizer(images, top_k=3), strict=True):
        _same(got, expected)
    _same(result["candidates"], localizer(images[1], candidate_addresses=candidates))
