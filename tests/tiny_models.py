"""Tiny random AddressCLIP/CLIP models, an offline processor and synthetic IAL rows for the tests."""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
from PIL import Image
from transformers import CLIPConfig

from modeling_addressclip import AddressCLIPConfig, build_clip_processor, sync_text_config_with_tokenizer

ADDRESSES = [
    "Mannerheimintie between Kaivokatu and Simonkatu, Kluuvi",
    "Mannerheimintie between Kaivokatu and Pohjoisesplanadi, Kluuvi",
    "Aleksanterinkatu near Unioninkatu, Kluuvi",
    "Töölönkatu near Runeberginkatu, Töölö",
    "Bulevardi between Annankatu and Yrjönkatu, Punavuori",
    "Fredrikinkatu near Bulevardi, Punavuori",
]
CAPTIONS = [
    "A street view of a wide avenue with tram tracks and tall yellow buildings",
    "A street view of a narrow street with trees on both sides",
    "",
]
TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64
)
VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)


@lru_cache(maxsize=4)
def tiny_processor(image_size: int = 32):
    """A CLIPProcessor whose BPE was trained here on the test addresses and captions."""
    corpus = [f"A street view photo at {a}." for a in ADDRESSES] + [c for c in CAPTIONS if c] + ADDRESSES
    return build_clip_processor(corpus * 4, image_size=image_size, vocab_size=640, model_max_length=64)


def tiny_config(processor=None, **overrides) -> AddressCLIPConfig:
    """A 2-layer, 32-wide AddressCLIP config matched to ``processor``'s tokenizer."""
    processor = processor or tiny_processor()
    config = AddressCLIPConfig(text_config=dict(TEXT), vision_config=dict(VISION), projection_dim=16, **overrides)
    sync_text_config_with_tokenizer(config, processor.tokenizer)
    return config


def tiny_clip_config(processor=None) -> CLIPConfig:
    """The plain-CLIP twin of ``tiny_config`` (model_type "clip")."""
    processor = processor or tiny_processor()
    tok = processor.tokenizer
    text = dict(
        TEXT,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return CLIPConfig(text_config=text, vision_config=dict(VISION), projection_dim=16)


def tiny_rows(n: int, seed: int = 0, size: int = 40) -> list[dict]:
    """``n`` IAL-schema rows with random images, cycling addresses/captions, UTM in Helsinki."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append(
            dict(
                image=Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
                address=ADDRESSES[i % len(ADDRESSES)],
                caption=CAPTIONS[i % len(CAPTIONS)],
                utm_east=float(385_000 + rng.uniform(0, 1500)),
                utm_north=float(6_671_000 + rng.uniform(0, 1500)),
            )
        )
    return rows


def accelerate_launch(script, *args: str, port: int, processes: int = 2) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes N script args`` (on CPU: gloo, one process per slot)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(script), *args,
    ]  # fmt: skip


def save_tiny_model(directory, seed: int = 0, addresses=tuple(ADDRESSES)):
    """Save a tiny random AddressCLIP with an address bank and its processor: a model directory for tests."""
    import torch

    from modeling_addressclip import AddressCLIPModel

    processor = tiny_processor()
    torch.manual_seed(seed)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    model.set_address_bank(list(addresses), processor)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
