"""The collator decodes undecoded dataset images itself: JPEGs with PIL's draft mode at the model's size."""

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from addressclip_train.trainer import AddressCLIPTrainer, keep_freed_memory
from fixtures.tiny_models import ADDRESSES, tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel
from modeling_addressclip.data import undecoded_images
from modeling_addressclip.image_utils import draft_size, load_image


def _photo(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A smooth image with a little noise (like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (height // 40, width // 40, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    return np.clip(smooth + rng.integers(-8, 8, smooth.shape), 0, 255).astype(np.uint8)


def _encoded(pixels: np.ndarray, format: str, mode: str = "RGB") -> dict:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=format, **({"quality": 92} if format == "JPEG" else {}))
    return {"bytes": buffer.getvalue(), "path": None}


def _rows_with(images: list) -> list[dict]:
    rows = tiny_rows(len(images))
    for row, image in zip(rows, images):
        row["image"] = image
    return rows


def test_draft_size_is_the_processors_shortest_edge():
    assert draft_size(tiny_processor(96).image_processor) == 96
    assert draft_size(tiny_processor().image_processor) == 32


def test_jpeg_rows_decode_small_and_close_to_full_decoding():
    processor = tiny_processor(96)
    jpeg = _encoded(_photo(), "JPEG")
    drafted = load_image(jpeg, draft=96)
    assert drafted.mode == "RGB" and min(drafted.size) >= 96 and drafted.size == (160, 120)  # 1/4 of 640x480
    assert load_image(jpeg).size == (640, 480)
    rows = _rows_with([_encoded(_photo(seed=s), "JPEG") for s in range(3)])
    fast = AddressCLIPCollator(processor)(rows)["pixel_values"]
    full = AddressCLIPCollator(processor, draft_decoding=False)(rows)["pixel_values"]
    assert fast.shape == full.shape == (3, 3, 96, 96)
    assert (fast - full).abs().mean() < 0.03  # normalized units (std ~0.9 here): under 1% apart


def test_png_rows_and_pil_images_give_exactly_the_pixels_of_full_decoding():
    processor = tiny_processor(32)
    pixels = [_photo(120, 160, seed=s) for s in range(2)]
    png = AddressCLIPCollator(processor)(_rows_with([_encoded(p, "PNG") for p in pixels]))["pixel_values"]
    pil = AddressCLIPCollator(processor)(_rows_with([Image.fromarray(p) for p in pixels]))["pixel_values"]
    array = AddressCLIPCollator(processor)(_rows_with(pixels))["pixel_values"]
    assert torch.equal(png, pil) and torch.equal(pil, array)


def test_grayscale_jpeg_and_path_rows_decode_to_rgb(tmp_path):
    gray = _encoded(_photo()[..., 0], "JPEG", mode="L")
    assert load_image(gray, draft=64).mode == "RGB"
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encoded(_photo(), "JPEG")["bytes"])
    image = load_image({"bytes": None, "path": str(path)}, draft=64)
    assert image.mode == "RGB" and image.size == (160, 120)


def test_undecodable_rows_name_the_row():
    processor = tiny_processor()
    good = _encoded(_photo(64, 64), "JPEG")
    bad = {"bytes": b"not an image at all", "path": None}
    with pytest.raises(ValueError, match=r"batch row 1: image <dict of an encoded image> is not a readable image"):
        AddressCLIPCollator(processor)(_rows_with([good, bad]))
    truncated = {"bytes": good["bytes"][: len(good["bytes"]) // 3], "path": None}
    with pytest.raises(ValueError, match="cannot read batch row 0: image <dict of an encoded image>: Truncated"):
        AddressCLIPCollator(processor)(_rows_with([truncated]))
    with pytest.raises(ValueError, match="batch row 0: image '/nonexistent/photo.jpg' not found"):
        AddressCLIPCollator(processor)(_rows_with([{"bytes": None, "path": "/nonexistent/photo.jpg"}]))
    with pytest.raises(ValueError, match="batch row 0: .*: the image dict has neither 'bytes' nor a 'path'"):
        AddressCLIPCollator(processor)(_rows_with([{"bytes": None, "path": None}]))
    with pytest.raises(ValueError, match="batch row 0: .*expected a file path, URL, bytes, .*a tensor"):
        AddressCLIPCollator(processor)(_rows_with([42]))


def test_undecoded_images_changes_only_the_feature():
    rows = _rows_with([_encoded(_photo(64, 64, seed=s), "JPEG") for s in range(4)])
    dataset = datasets.Dataset.from_list(rows, features=datasets.Features({
        "image": datasets.Image(), "address": datasets.Value("string"), "caption": datasets.Value("string"),
        "utm_east": datasets.Value("float64"), "utm_north": datasets.Value("float64"),
    }))  # fmt: skip
    assert isinstance(dataset[0]["image"], Image.Image)
    raw = undecoded_images(dataset)
    assert raw[0]["image"] == rows[0]["image"] and raw.features["image"].decode is False
    assert undecoded_images(raw) is raw and undecoded_images(rows) is rows
    processor = tiny_processor()
    exact = AddressCLIPCollator(processor, draft_decoding=False)
    assert torch.equal(exact(list(raw))["pixel_values"], exact(list(dataset))["pixel_values"])


def test_trainer_hands_the_collator_undecoded_train_images(tmp_path):
    processor = tiny_processor()
    dataset = datasets.Dataset.from_list(tiny_rows(8))
    model = AddressCLIPModel(tiny_config(processor))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, logging_steps=1, report_to=[],
        use_cpu=True, label_names=["utm"], remove_unused_columns=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = AddressCLIPTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=AddressCLIPCollator(processor),
        processing_class=processor, bank_addresses=ADDRESSES,
    )  # fmt: skip
    assert trainer.train_dataset.features["image"].decode is False
    assert dataset.features["image"].decode is True  # the caller's dataset is left as it was
    trainer.train()
    logged = next(log for log in trainer.state.log_history if "loss" in log)
    assert all(isinstance(logged[key], float) for key in ("loss_address", "loss_caption", "loss_geography"))


def test_keep_freed_memory_is_a_no_op_outside_glibc():
    assert isinstance(keep_freed_memory(), bool)
