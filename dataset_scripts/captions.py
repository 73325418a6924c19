"""Fill missing captions with a transformers image-to-text model (paper §6.1: BLIP-large, "A street view of").

    python -m dataset_scripts.captions --model Salesforce/blip-image-captioning-large \\
        --root DATA_ROOT --annotations DIR_OR_TABLE --output captions.jsonl [--batch-size 16]
    python -m dataset_scripts.captions --model ... --photos PHOTOS_DIR_OR_CSV --output captions.jsonl

``--photos`` is the input of ``dataset_scripts.geotagged``: every image below a folder, or the rows of
its ``image,latitude,longitude[,caption]`` table whose caption is empty (keys relative to the table).

Writes one ``{"key", "caption"}`` line per image whose annotation has an empty caption;
lines are appended batch by batch, so a rerun skips what is already there (resumable).
The builders read the file with ``--captions captions.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from dataset_scripts.ial_io import ImageKeys, Reject, iter_annotations
from dataset_scripts.ial_report import SeenSet
from modeling_addressclip.image_utils import load_image

__all__ = [
    "DEFAULT_PROMPT", "caption_images", "done_keys", "drop_partial_line", "keys_without_caption", "load_captioner",
    "photo_keys_without_caption",
]  # fmt: skip

DEFAULT_PROMPT = "A street view of"


def done_keys(output: str | os.PathLike) -> set[str]:
    """Keys already captioned in ``output`` (a truncated last line from an interrupted run is ignored)."""
    done: set[str] = set()
    if Path(output).exists():
        with open(output, encoding="utf-8") as handle:
            for line in handle:
                try:
                    done.add(json.loads(line)["key"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    return done


def drop_partial_line(output: str | os.PathLike) -> None:
    """Cut a last line that an interrupted run left without its newline, so appends stay line-aligned."""
    path = Path(output)
    if not path.exists() or path.stat().st_size == 0:
        return
    size = path.stat().st_size
    with open(path, "rb+") as handle:
        start = max(0, size - (1 << 16))
        handle.seek(start)
        tail = handle.read()
        if not tail.endswith(b"\n"):
            handle.truncate(start + tail.rfind(b"\n") + 1 if b"\n" in tail or start == 0 else start)


def keys_without_caption(
    annotations: str | os.PathLike, config: str | None = None, exclude: tuple[str, ...] = ()
) -> Iterator[str]:
    """Each distinct key whose annotation has an empty caption, in file order."""
    seen = SeenSet()
    for annotation in iter_annotations(annotations, config, exclude):
        if not annotation.problem and not annotation.caption and seen.add(annotation.key):
            yield annotation.key


def photo_keys_without_caption(photos: str | os.PathLike) -> tuple[Path, list[str]]:
    """(root, keys) of a geotagged build's photos (``--photos``: a folder, or a CSV table) that have no caption."""
    import csv

    from dataset_scripts.geotagged_read import photo_files

    photos = Path(photos)
    if photos.is_dir():
        return photos, photo_files(photos)[0]
    with open(photos, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "image" not in rows[0]:
        raise ValueError(f"{photos}: no 'image' column")
    return photos.parent, [row["image"] for row in rows if not (row.get("caption") or "").strip()]


def _batches(keys: Iterable[str], root: Path, size: int) -> Iterator[tuple[list[str], list[Image.Image], int]]:
    """(keys, RGB images, unreadable count) per batch; unreadable images are skipped (the builder reports them).

    Keys resolve as the builders resolve them (``ImageKeys``: with or without leading folder names) and
    images are read by the package's one image policy, so the captioner sees what the model will see.
    """
    batch_keys, images, skipped = [], [], 0
    resolver = ImageKeys.under(root)
    for key in keys:
        try:
            images.append(load_image(resolver.resolve(key)[0]))
            batch_keys.append(key)
        except (Reject, OSError, ValueError):
            skipped += 1
        if len(images) == size:
            yield batch_keys, images, skipped
            batch_keys, images, skipped = [], [], 0
    if images or skipped:
        yield batch_keys, images, skipped


def _generate(model, processor, images: list[Image.Image], prompt: str, max_new_tokens: int) -> list[str]:
    import torch

    text = [prompt] * len(images) if prompt else None
    inputs = processor(images=images, text=text, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens)
    return [" ".join(t.split()) for t in processor.batch_decode(ids, skip_special_tokens=True)]


def caption_images(
    model,
    processor,
    keys: Iterable[str],
    root: str | os.PathLike,
    output: str | os.PathLike,
    batch_size: int = 16,
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 30,
    progress: bool | None = None,
) -> dict[str, int]:
    """Caption the images ``root/key`` not yet in ``output``, appending ``{"key", "caption"}`` lines per batch."""
    from tqdm.auto import tqdm

    drop_partial_line(output)
    done = done_keys(output)
    todo = (key for key in keys if key not in done)
    counts = {"already_done": len(done), "captioned": 0, "unreadable": 0}
    bar = tqdm(unit=" img", desc="captioning", disable={True: False, False: True, None: None}[progress])
    with open(output, "a", encoding="utf-8") as handle:
        for batch_keys, images, skipped in _batches(todo, Path(root), batch_size):
            counts["unreadable"] += skipped
            captions = _generate(model, processor, images, prompt, max_new_tokens) if images else []
            for key, caption in zip(batch_keys, captions):
                handle.write(json.dumps({"key": key, "caption": caption}, ensure_ascii=False) + "\n")
            handle.flush()
            counts["captioned"] += len(captions)
            bar.update(len(captions))
    bar.close()
    return counts


def load_captioner(name_or_path: str, device: str | None = None):
    """(model, processor) of any image-to-text checkpoint (``AutoModelForImageTextToText``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(name_or_path)
    model = AutoModelForImageTextToText.from_pretrained(name_or_path).eval()
    return (model.to(device) if device else model), processor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Caption images whose annotation has no caption (resumable).")
    parser.add_argument("--model", required=True, help="image-to-text model name or directory (paper: BLIP-large)")
    parser.add_argument("--root", help="data root the annotation keys are relative to")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotations", help="release folder or CSV/JSONL table (with --root)")
    source.add_argument("--photos", help="a geotagged build's photo folder or photos.csv")
    parser.add_argument("--config", help="for a folder with several releases: the one to use (e.g. base)")
    parser.add_argument("--exclude-config", nargs="*", default=[], help="release names never to use (e.g. large)")
    parser.add_argument("--output", required=True, help="JSONL to append to (and resume from)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--device", help="e.g. cuda")
    args = parser.parse_args(argv)
    if args.annotations and not args.root:
        parser.error("--annotations needs --root (the folder its keys are relative to)")
    if args.photos:
        root, keys = photo_keys_without_caption(args.photos)
    else:
        root, keys = args.root, keys_without_caption(args.annotations, args.config, tuple(args.exclude_config))
    model, processor = load_captioner(args.model, args.device)
    counts = caption_images(model, processor, keys, root, args.output, args.batch_size, args.prompt,
                            args.max_new_tokens)  # fmt: skip
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
