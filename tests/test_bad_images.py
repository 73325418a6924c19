"""Every awkward input gives a correct prediction (after RGB conversion / EXIF transpose) or an error naming it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import ADDRESSES, tiny_config, tiny_processor
from transformers import pipeline

from modeling_addressclip import AddressCLIPModel, ImageLoadError, load_image
from modeling_addressclip.pipeline_addressclip import TASK

RNG = np.random.default_rng(3)
PHOTO = RNG.integers(0, 256, (24, 36, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def localizer():
    processor = tiny_processor()
    torch.manual_seed(1)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    model.set_address_bank(ADDRESSES, processor)
    return pipeline(TASK, model=model, processor=processor, device="cpu")


def assert_same_prediction(got: list[dict], expected: list[dict]) -> None:
    assert [r["address"] for r in got] == [r["address"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)


# ----------------------------------------------------------------------------- unreadable files
def truncated_jpeg(path):
    Image.fromarray(PHOTO).save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(path):
    path.write_bytes(b"")


def not_an_image(path):
    path.write_text("street,address\nMannerheimintie,Kluuvi\n")


BROKEN = {"truncated.jpg": truncated_jpeg, "empty.png": zero_bytes, "notes.jpg": not_an_image}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_unreadable_file_raises_an_error_naming_it(localizer, tmp_path, name):
    path = tmp_path / name
    BROKEN[name](path)
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        localizer(str(path))


def test_missing_path_raises_an_error_naming_it(localizer, tmp_path):
    path = tmp_path / "nowhere" / "street.jpg"
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + ".*not found"):
        localizer(str(path))


def test_decompression_bomb_is_refused_at_pils_limit(localizer, tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x limit: PIL refuses to decode it
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + ".*decompression bomb"):
        localizer(str(path))


def test_unsupported_input_type_is_named(localizer):
    with pytest.raises(ImageLoadError, match="int"):
        localizer(42)


# ----------------------------------------------------------------------------- convertible images
def test_cmyk_jpeg_is_converted_to_rgb(localizer, tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(PHOTO).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert_same_prediction(localizer(str(path)), localizer(Image.open(path).convert("RGB")))


def test_sixteen_bit_png_is_scaled_to_eight_bits(localizer, tmp_path):
    path = tmp_path / "depth16.png"
    wide = (np.linspace(0, 65535, 40)[None, :] * np.ones((30, 1))).astype(np.uint16)
    Image.fromarray(wide).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = load_image(str(path))
    assert rgb.mode == "RGB" and np.asarray(rgb)[0, 0].tolist() == [0, 0, 0]
    assert np.asarray(rgb)[0, -1].tolist() == [255, 255, 255]
    eight_bit = Image.fromarray(np.rint(wide / 257).astype(np.uint8)).convert("RGB")
    assert_same_prediction(localizer(str(path)), localizer(eight_bit))


def test_palette_with_transparency_is_composited_on_white(localizer, tmp_path):
    path = tmp_path / "palette.png"
    image = Image.fromarray(PHOTO).quantize(colors=16)
    index = int(np.asarray(image)[0, 0])
    image.info["transparency"] = index
    image.save(path, transparency=index)
    rgb = np.asarray(load_image(str(path)))
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert len(localizer(str(path), top_k=2)) == 2


def test_rgba_is_composited_on_white(localizer, tmp_path):
    path = tmp_path / "rgba.png"
    alpha = np.full(PHOTO.shape[:2] + (1,), 255, dtype=np.uint8)
    alpha[:, :10] = 0
    Image.fromarray(np.concatenate([PHOTO, alpha], axis=2), "RGBA").save(path)
    rgb = np.asarray(load_image(str(path)))
    assert (rgb[:, :10] == 255).all() and (rgb[:, 10:] == PHOTO[:, 10:]).all()
    opaque = PHOTO.copy()
    opaque[:, :10] = 255
    assert_same_prediction(localizer(str(path)), localizer(Image.fromarray(opaque)))


def test_grayscale_is_replicated_to_three_channels(localizer, tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(PHOTO[..., 0]).save(path)
    rgb = np.asarray(load_image(str(path)))
    assert rgb.shape == PHOTO.shape[:2] + (3,) and (rgb == PHOTO[..., :1]).all()
    assert_same_prediction(localizer(str(path)), localizer(Image.fromarray(PHOTO[..., 0]).convert("RGB")))


def test_one_pixel_image_is_localized(localizer, tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(path)
    result = localizer(str(path), top_k=3)
    assert len(result) == 3 and result[0]["address"] in ADDRESSES


def test_exif_rotation_is_applied(localizer, tmp_path):
    path = tmp_path / "rotated.jpg"
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red, right half blue as stored in the file
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif)
    upright = load_image(str(path))
    assert upright.size == (20, 40)  # portrait once displayed: red on top, blue below
    pixels = np.asarray(upright).astype(int)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60
    assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60
    decoded = np.asarray(Image.open(path).convert("RGB"))  # as stored, JPEG-decoded, not rotated
    assert decoded.shape == (20, 40, 3)
    clockwise = Image.fromarray(np.ascontiguousarray(np.rot90(decoded, k=-1)))
    assert_same_prediction(localizer(str(path)), localizer(clockwise))


# ----------------------------------------------------------------------------- batches
def test_batch_with_a_bad_image_skips_it_when_asked(localizer, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(PHOTO).save(good)
    bad = tmp_path / "bad.jpg"
    zero_bytes(bad)
    inputs = [str(good), str(bad), Image.fromarray(PHOTO[::-1])]
    with pytest.raises(ImageLoadError, match=re.escape(str(bad))):
        localizer(inputs)
    for batch_size in (1, 2):
        results = localizer(inputs, top_k=2, errors="skip", batch_size=batch_size)
        assert len(results) == 3
        assert set(results[1]) == {"error"} and str(bad) in results[1]["error"]
        assert_same_prediction(results[0], localizer(str(good), top_k=2))
        assert_same_prediction(results[2], localizer(inputs[2], top_k=2))
    assert localizer(str(bad), errors="skip") == {"error": results[1]["error"]}
    with pytest.raises(ValueError, match="errors"):
        localizer(inputs, errors="ignore")
