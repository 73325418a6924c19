"""The offline tokenizer is a real, deterministic CLIPTokenizer; the collator builds the model inputs."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPTokenizer

from fixtures import ROOT
from fixtures.tiny_models import ADDRESSES, tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, build_clip_tokenizer, caption_text


def test_tokenizer_round_trips_through_save_and_autoprocessor(tmp_path):
    processor = tiny_processor()
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded.tokenizer, CLIPTokenizer)
    text = ADDRESSES[3]
    assert loaded.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    ids = processor.tokenizer(text)["input_ids"]
    assert ids[0] == processor.tokenizer.bos_token_id == 0 and ids[-1] == processor.tokenizer.eos_token_id == 1
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == text.lower().replace(",", " ,")


def test_unseen_characters_never_become_end_of_text():
    tokenizer = build_clip_tokenizer(["plain ascii words only"], vocab_size=600)
    ids = tokenizer("Ωmega €uro 漢字")["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 1 and ids[-1] == tokenizer.eos_token_id


def test_tokenizer_is_identical_across_processes():
    """tokenizers' own BPE trainer breaks ties by hash order; ours must not (every rank builds the same one)."""
    code = (
        "import hashlib; from fixtures.tiny_models import tiny_processor; "
        "print(hashlib.sha256(tiny_processor().tokenizer.backend_tokenizer.to_str().encode()).hexdigest())"
    )
    run = [sys.executable, "-c", code]  # -c from the root: fixtures is importable
    digests = {subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(digests) == 1


def test_vocab_size_too_small_raises():
    with pytest.raises(ValueError, match="base symbols"):
        build_clip_tokenizer(["a"], vocab_size=100)


def test_config_takes_special_token_ids_from_tokenizer():
    processor = tiny_processor()
    config = tiny_config(processor)
    assert config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    assert config.text_config.vocab_size >= len(processor.tokenizer)


def test_collator_outputs_and_caption_text():
    processor = tiny_processor()
    rows = tiny_rows(3)
    rows[1]["image"] = Image.fromarray(np.zeros((20, 30), dtype=np.uint8))  # grayscale is converted to RGB
    batch = AddressCLIPCollator(processor, "Photo at {address}.")(rows)
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["utm"].dtype == torch.float64 and batch["utm"].shape == (3, 2)
    assert batch["utm"][0].tolist() == [rows[0]["utm_east"], rows[0]["utm_north"]]
    first = processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert first.startswith("photo at mannerheimintie")
    assert caption_text("A street view of trees", ADDRESSES[0]) == f"A street view of trees {ADDRESSES[0]}"
    assert caption_text("", ADDRESSES[0]) == ADDRESSES[0]
    assert batch["caption_input_ids"].shape[0] == 3


def test_collator_without_any_caption_has_no_caption_ids():
    rows = tiny_rows(2)
    for row in rows:
        row["caption"] = ""
    assert "caption_input_ids" not in AddressCLIPCollator(tiny_processor())(rows)


def test_collator_names_the_bad_row():
    rows = tiny_rows(2)
    del rows[1]["utm_north"]
    with pytest.raises(ValueError, match="batch row 1 lacks field"):
        AddressCLIPCollator(tiny_processor())(rows)
    with pytest.raises(ValueError, match="empty batch"):
        AddressCLIPCollator(tiny_processor())([])
