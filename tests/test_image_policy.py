"""One image policy: a file built into a dataset and collated gives exactly the pixels the pipeline gives it.

Each awkward kind of file (EXIF rotation, alpha, palette transparency, CMYK, 16-bit, low-range 16-bit,
float, grayscale, a 640x480 JPEG that is draft-decoded) goes through ``dataset_scripts.ial_builder``
(no ``--image-size``: the file's own bytes are stored), is read back with ``load_dataset`` and collated
by ``AddressCLIPCollator`` as the Trainer does; its ``pixel_values`` must be bit-identical to the
pipeline's preprocessing of the original file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from dataset_scripts import ial_builder
from dataset_scripts.ial_io import Reject, read_image
from fixtures.bad_inputs import IMAGE_CASES
from fixtures.tiny_models import ADDRESSES, tiny_config, tiny_processor
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel
from modeling_addressclip.data import undecoded_images
from modeling_addressclip.image_utils import load_image
from modeling_addressclip.pipeline_addressclip import TASK

RNG = np.random.default_rng(11)
PHOTO = np.asarray(
    Image.fromarray(RNG.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
)


def _float_tiff(path: Path) -> None:
    Image.fromarray(RNG.random((40, 50)).astype(np.float32), "F").save(path)


def _low_range_16_bit_png(path: Path) -> None:
    """A 16-bit image whose values span only 291..694 (a dark 10-bit sensor image stored in 16 bits)."""
    Image.fromarray(RNG.integers(291, 695, (40, 50)).astype(np.uint16)).save(path)


def _gray_alpha_png(path: Path) -> None:
    values = np.stack([RNG.integers(0, 255, (30, 30)), np.tile(np.linspace(0, 255, 30), (30, 1))], axis=-1)
    Image.fromarray(values.astype(np.uint8), "LA").save(path)


def _street_jpeg(path: Path) -> None:
    Image.fromarray(PHOTO).save(path, "JPEG", quality=90)


EXTRA_CASES = {"float.tif": _float_tiff, "low16.png": _low_range_16_bit_png, "la.png": _gray_alpha_png}
EXTRA_CASES["street_640x480.jpg"] = _street_jpeg


def _write_images(folder: Path) -> list[str]:
    writers = {case.name: case.write for case in IMAGE_CASES if case.error is None and case.source is None}
    writers.update(EXTRA_CASES)
    for name, write in writers.items():
        write(folder / name)
    return sorted(writers)


@pytest.fixture(scope="module", params=[32, 224], ids=["32px", "224px"])
def processor(request):
    return tiny_processor(request.param)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[str], datasets.DatasetDict]:
    """The odd images, built into an IAL dataset from a CSV table, and read back with ``load_dataset``."""
    root = tmp_path_factory.mktemp("photos")
    names = _write_images(root)
    table = root / "rows.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "address", "latitude", "longitude", "location_id", "split"])
        for split in ("database", "query"):
            Image.fromarray(PHOTO[:64, :64]).save(root / f"{split}.png")
        rows = [(name, "train") for name in names] + [("database.png", "database"), ("query.png", "query")]
        for i, (name, split) in enumerate(rows):
            writer.writerow([name, ADDRESSES[i % len(ADDRESSES)], 60.17 + i * 1e-4, 24.94, f"loc{i}", split])
    output = tmp_path_factory.mktemp("built") / "odd_images"
    argv = ["--table", str(table), "--image-root", str(root), "--utm-zone", "35V", "--output", str(output)]
    assert ial_builder.main([*argv, "--no-progress"]) == 0
    return root, names, datasets.load_dataset(str(output))


def test_every_odd_file_is_built_with_its_own_bytes(built):
    root, names, dataset = built
    train = undecoded_images(dataset["train"])
    stored = {row["image"]["path"]: row["image"]["bytes"] for row in train}
    assert set(names) <= set(stored)
    for name in names:
        assert stored[name] == (root / name).read_bytes(), name


def test_collated_dataset_pixels_equal_the_pipelines_bit_for_bit(built, processor):
    root, names, dataset = built
    model = AddressCLIPModel(tiny_config()).eval()  # preprocessing only: the encoder's size does not matter
    localizer = pipeline(TASK, model=model, processor=processor, device="cpu")
    rows = list(undecoded_images(dataset["train"]))  # as AddressCLIPTrainer hands train rows to the collator
    batch = AddressCLIPCollator(processor)(rows)["pixel_values"]
    for row, pixels in zip(rows, batch):
        expected = localizer.preprocess(str(root / row["image"]["path"]))["pixel_values"][0]
        assert torch.equal(pixels, expected), row["image"]["path"]


def test_the_policy_reads_odd_images_as_a_person_sees_them(built):
    root, _, _ = built
    low = np.asarray(load_image(root / "low16.png"))
    assert low.max() > 128  # 694 of 1023 (10-bit) is bright, not 694 / 65535 = black
    float_image = np.asarray(load_image(root / "float.tif"))
    assert float_image.shape == (40, 50, 3) and 200 < float_image.max() <= 255
    drafted = load_image(root / "street_640x480.jpg", draft=224)
    assert drafted.size == (320, 240) and load_image(root / "street_640x480.jpg").size == (640, 480)


def test_a_decompression_bomb_is_refused_by_the_builder_and_the_pipeline(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Reject, match="decompression bomb"):
        read_image(str(path), "bomb.png")
    with pytest.raises(ValueError, match="decompression bomb"):
        load_image(path)
