"""Every awkward input gives a correct prediction (after RGB conversion / EXIF transpose) or an error naming it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from fixtures.bad_inputs import (
    IMAGE_CASES,
    PHOTO,
    ROTATED,
    TRANSPARENT_COLUMNS,
    WIDE,
    assert_same_prediction,
    check_image_case,
    gray_png,
    palette_png,
    rgba_png,
    rotated_jpeg,
    sixteen_bit_png,
    tiny_localizer,
    zero_bytes,
)
from modeling_addressclip import ImageLoadError, load_image


@pytest.fixture(scope="module")
def localizer():
    return tiny_localizer()


# ----------------------------------------------------------------------------- every case (shared with benchmarks)
@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.name)
def test_case_is_refused_naming_it_or_localized_like_its_rgb_equivalent(localizer, tmp_path, case):
    """Unreadable inputs raise ImageLoadError naming them; convertible ones predict like their RGB version."""
    check_image_case(localizer, case, tmp_path)


def test_cases_cover_refusals_and_conversions():
    assert {"truncated.jpg", "empty.png", "notes.jpg", "nowhere/street.jpg", "bomb.png"} <= {
        c.name for c in IMAGE_CASES
    }
    assert sum(c.error is None for c in IMAGE_CASES) >= 7 and sum(c.same_as is not None for c in IMAGE_CASES) >= 5


# ----------------------------------------------------------------------------- conversions, pixel by pixel
def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    path = tmp_path / "depth16.png"
    sixteen_bit_png(path)
    rgb = load_image(str(path))
    assert rgb.mode == "RGB" and np.asarray(rgb)[0, 0].tolist() == [0, 0, 0]
    assert np.asarray(rgb)[0, -1].tolist() == [255, 255, 255]
    assert WIDE.max() == 65535


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "palette.png"
    palette_png(path)
    assert np.asarray(load_image(str(path)))[0, 0].tolist() == [255, 255, 255]


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    rgba_png(path)
    rgb = np.asarray(load_image(str(path)))
    cut = TRANSPARENT_COLUMNS
    assert (rgb[:, :cut] == 255).all() and (rgb[:, cut:] == PHOTO[:, cut:]).all()


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    path = tmp_path / "gray.png"
    gray_png(path)
    rgb = np.asarray(load_image(str(path)))
    assert rgb.shape == PHOTO.shape[:2] + (3,) and (rgb == PHOTO[..., :1]).all()


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    rotated_jpeg(path)
    upright = load_image(str(path))
    assert upright.size == (20, 40)  # portrait once displayed: red on top, blue below
    pixels = np.asarray(upright).astype(int)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60
    assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60
    assert np.asarray(Image.open(path).convert("RGB")).shape == ROTATED.shape  # stored landscape, not rotated


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
