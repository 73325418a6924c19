"""dataset_scripts.captions: batched, resumable caption filling with a tiny random BLIP (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

from dataset_scripts import captions
from dataset_scripts.ial_builder import BuildOptions
from dataset_scripts.sf_ial import build_sf_ial
from fixtures.raw_layouts import jpeg, make_vg_tree, release_value

WORDS = ["a", "street", "view", "of", "with", "trees", "car", "house", "road", "sky", "red", "tall"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A 1-layer random BLIP captioner whose BertTokenizer reads a vocab written here."""
    directory = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"), model_max_length=32, bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 16, "width": 16}), tokenizer)
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    text = dict(small, vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=5, sep_token_id=3,
                pad_token_id=0, eos_token_id=3)  # fmt: skip
    config = BlipConfig(text_config=text, vision_config=dict(small, image_size=16, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(directory / "model")
    processor.save_pretrained(directory / "model")
    return model, processor, directory / "model"


def _tree(tmp_path: Path):
    """A small @-named tree where every second good train image has an empty caption."""
    tree = make_vg_tree(tmp_path, places=4, views=4)
    train = tree.entries["train"]
    for i in range(0, 8, 2):
        train[i] = (train[i][0], release_value(i // 4, caption=""))
    tree.write_release("SF_base")
    return tree


def test_caption_images_is_batched_and_resumable(tiny_blip, tmp_path):
    model, processor, _ = tiny_blip
    tree = _tree(tmp_path)
    keys = list(captions.keys_without_caption(tree.annotations))
    emptied = [key for key, _ in tree.entries["train"][0:8:2]]
    assert keys[:4] == emptied and len(keys) == 5  # + the planted bad-address row, which has no caption either
    output = tmp_path / "captions.jsonl"
    root = tree.root / "processed"
    first = captions.caption_images(model, processor, keys[:3], root, output, batch_size=2, max_new_tokens=4)
    assert first["captioned"] == 3
    with open(output, "a") as handle:
        handle.write('{"key": "interrupted mid-li')  # an interrupted run leaves a broken last line
    second = captions.caption_images(model, processor, keys, root, output, batch_size=2, max_new_tokens=4)
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.endswith("}")]
    good = [line for line in lines if line["key"] in keys]
    assert second["already_done"] == 3 and len({line["key"] for line in good}) == len(good) == 3 + second["captioned"]
    assert all(line["caption"].startswith("a street view of") for line in good)
    assert second["captioned"] + second["unreadable"] == len(keys) - 3


def test_cli_fills_builder_captions(tiny_blip, tmp_path):
    _, _, model_dir = tiny_blip
    tree = _tree(tmp_path)
    output = tmp_path / "captions.jsonl"
    args = ["--model", str(model_dir), "--root", str(tree.root / "processed"), "--annotations", str(tree.annotations),
            "--output", str(output), "--batch-size", "4", "--max-new-tokens", "3"]  # fmt: skip
    assert captions.main(args) == 0
    filled = {r["key"]: r["caption"] for r in map(json.loads, output.read_text().splitlines())}
    report = build_sf_ial(tree.root, tree.annotations, tmp_path / "out", options=BuildOptions(captions=filled))
    assert report.rows_written == sum(tree.expected.values())
    from datasets import load_dataset

    train = load_dataset(str(tmp_path / "out"), split="train", streaming=True).remove_columns("image")
    assert all(row["caption"] for row in train)


def test_unreadable_images_are_skipped(tiny_blip, tmp_path):
    model, processor, _ = tiny_blip
    (tmp_path / "ok.jpg").write_bytes(jpeg(1))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    counts = captions.caption_images(model, processor, ["ok.jpg", "bad.jpg", "../x.jpg"], tmp_path,
                                      tmp_path / "c.jsonl", batch_size=8, max_new_tokens=2)  # fmt: skip
    assert counts == {"already_done": 0, "captioned": 1, "unreadable": 2}


def test_cli_captions_a_geotagged_photo_folder_for_the_builder(tiny_blip, tmp_path):
    """``--photos DIR``: the keys are the builder's (paths below the folder), so ``--captions`` fills every row."""
    from dataset_scripts.geotagged import build_geotagged
    from dataset_scripts.osm import HELSINKI_PBF, partition_streets
    from fixtures.geotagged_photos import make_geotagged_photos

    _, _, model_dir = tiny_blip
    scene = make_geotagged_photos(tmp_path / "photos", partition_streets(HELSINKI_PBF))
    root, keys = captions.photo_keys_without_caption(scene.folder)
    assert root == scene.folder and set(scene.addresses) <= set(keys) and "notes.txt" not in keys
    output = tmp_path / "captions.jsonl"
    args = ["--model", str(model_dir), "--photos", str(scene.folder), "--output", str(output),
            "--batch-size", "8", "--max-new-tokens", "3"]  # fmt: skip
    assert captions.main(args) == 0
    filled = {r["key"]: r["caption"] for r in map(json.loads, output.read_text().splitlines())}
    assert set(scene.addresses) <= set(filled)  # unreadable files are skipped, good photos all captioned
    build_geotagged(tmp_path / "out", HELSINKI_PBF, photos=scene.folder, options=BuildOptions(captions=filled))
    from datasets import load_dataset

    rows = load_dataset(str(tmp_path / "out"), split="train", streaming=True).remove_columns("image")
    assert all(row["caption"] for row in rows)


def test_photo_table_keys_are_its_rows_without_a_caption(tmp_path):
    table = tmp_path / "photos.csv"
    table.write_text("image,latitude,longitude,caption\na.jpg,60.1,24.9,\nb.jpg,60.1,24.9,a red house\n")
    assert captions.photo_keys_without_caption(table) == (tmp_path, ["a.jpg"])
    (tmp_path / "bad.csv").write_text("photo,latitude\nx.jpg,1\n")
    with pytest.raises(ValueError, match="bad.csv: no 'image' column"):
        captions.photo_keys_without_caption(tmp_path / "bad.csv")
