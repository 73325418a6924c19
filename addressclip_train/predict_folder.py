"""``addressclip predict DIR_OR_GLOB --output preds.jsonl|preds.csv``: thousands of photos, streamed and resumable.

The engine behind the CLI's folder mode:

* :func:`collect_images` expands folders (recursively, by image suffix), globs and files into a sorted path list;
* :class:`ImageFiles` is the ``torch`` Dataset its DataLoader workers run: each file goes through the one image
  policy and the pipeline's pinned image processor (``image_utils.image_pixels``), and a file that cannot be read
  becomes an error item instead of an exception in the worker;
* :func:`predict_to_file` encodes each batch in the main process with the pipeline's own ``forward`` and ranks
  with its ``postprocess`` (so the answers are the pipeline's), and appends one record per image to the output,
  flushed per batch. Under ``accelerate launch`` the DataLoader is sharded by ``accelerator.prepare`` and every
  batch is merged with ``gather_for_metrics`` (padding of uneven shards dropped), so the main process writes one
  file with every image exactly once.

Records (one per image; see :data:`CSV_COLUMNS` for the CSV form)::

    {"image": "photos/a.jpg", "predictions": [{"address", "score", "similarity", "main_street",
     "cross_streets", "neighborhood", "latitude", "longitude"}, ...]}     # rank order; [] = no confident address
    {"image": "photos/b.jpg", "error": "image 'photos/b.jpg' is not a readable image (...)"}

Resume: images already in the output (answered or errored; paths compared after ``os.path.realpath``) are
skipped; a truncated last line is cut off and that image is done again.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dataset_scripts.captions import drop_partial_line
from modeling_addressclip.image_utils import ImageLoadError, image_pixels

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"})
FORMATS = (".jsonl", ".csv")
TOP1_FIELDS = ("address", "score", "similarity", "latitude", "longitude")
CSV_COLUMNS = ("image", *TOP1_FIELDS, "predictions", "error")
_GLOB_CHARS = frozenset("*?[")


def default_workers() -> int:
    """DataLoader worker processes by default: min(4, the CPUs this process may use)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cpus)


# ----------------------------------------------------------------------------- inputs
def collect_images(sources: Iterable[str]) -> list[str]:
    """Image paths of ``sources``, in order and without repeats: folders (recursive, image suffixes only, sorted),
    globs (``photos/*.jpg``, ``photos/**/*.png``; sorted) and files as given. A source that matches nothing raises
    ``ValueError`` naming it."""
    paths: dict[str, None] = {}
    for source in sources:
        if os.path.isdir(source):
            found = sorted(
                str(p) for p in Path(source).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise ValueError(f"folder {source!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif _GLOB_CHARS & set(source):
            found = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
            if not found:
                raise ValueError(f"pattern {source!r} matches no files")
        else:
            found = [source]  # a file; a missing one is answered with its error like any unreadable image
        paths.update(dict.fromkeys(found))
    return list(paths)


class ImageFiles(torch.utils.data.Dataset):
    """Image files as ``{"image", "pixel_values" (3, H, W) or None, "error"}`` through the one image policy."""

    def __init__(self, paths: list[str], image_processor) -> None:
        self.paths, self.image_processor = paths, image_processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            pixels = image_pixels(self.image_processor, [path])[0]
        except ImageLoadError as err:
            return {"image": path, "pixel_values": None, "error": one_line(str(err))}
        except (OSError, ValueError, RuntimeError) as err:  # e.g. the image processor refusing a degenerate image
            return {"image": path, "pixel_values": None, "error": one_line(f"image {path!r}: {err}")}
        return {"image": path, "pixel_values": pixels, "error": ""}


def collate_files(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch: the paths, their errors ("" if read) and the stacked pixels of the readable ones (or None)."""
    pixels = [item["pixel_values"] for item in items if item["pixel_values"] is not None]
    return {
        "images": [item["image"] for item in items],
        "errors": [item["error"] for item in items],
        "pixel_values": torch.stack(pixels) if pixels else None,
    }


def one_line(text: str) -> str:
    """``text`` on one line, so every record is one line of the output (what resume relies on)."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------- output
def output_format(path: Path) -> str:
    """``.jsonl`` or ``.csv`` from the output's suffix, else ``ValueError``."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--output {str(path)!r}: the name must end in .jsonl or .csv")
    return suffix


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a CSV row: the top-1 answer's fields, the whole ranking as JSON, the error."""
    predictions = record.get("predictions", [])
    best = predictions[0] if predictions else {}
    row = {"image": record["image"], "error": record.get("error", "")}
    row.update({field: "" if best.get(field) is None else best[field] for field in TOP1_FIELDS})
    row["predictions"] = json.dumps(predictions, ensure_ascii=False) if "error" not in record else ""
    return row


def record_of(row: dict[str, str], suffix: str) -> dict[str, Any]:
    """The record that ``row`` (a parsed output line) stands for."""
    if suffix == ".jsonl":
        return row
    if row.get("error"):
        return {"image": row["image"], "error": row["error"]}
    return {"image": row["image"], "predictions": json.loads(row["predictions"])}


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an output file (``.jsonl`` or ``.csv``); a malformed line raises ``ValueError`` naming it."""
    suffix = output_format(path)
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
                raise ValueError(f"{path}: header {reader.fieldnames} is not this command's ({', '.join(CSV_COLUMNS)})")
            lines: Iterable[Any] = reader
        else:
            lines = (json.loads(line) for line in handle if line.strip())
        for number, row in enumerate(lines, start=2 if suffix == ".csv" else 1):
            try:
                record = record_of(row, suffix)
                if not isinstance(record.get("image"), str):
                    raise ValueError("no image field")
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                raise ValueError(f"{path} line {number} is not a prediction record: {err}") from None
            yield record


def done_images(path: Path) -> set[str]:
    """Images already in the output at ``path`` (none if it does not exist). A last line without its newline (the
    run was killed while writing it) is cut off first, so that image is answered again."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    drop_partial_line(path)
    try:
        return {record["image"] for record in read_records(path)}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: a line is not JSON ({err}); is it this command's output?") from None


class RecordWriter:
    """Appends records to a ``.jsonl``/``.csv`` output (a CSV header for a new file), flushed per batch."""

    def __init__(self, path: Path) -> None:
        self.suffix = output_format(path)
        new = not path.exists() or path.stat().st_size == 0
        self.handle = path.open("a", encoding="utf-8", newline="")
        self.csv = csv.DictWriter(self.handle, CSV_COLUMNS, lineterminator="\n") if self.suffix == ".csv" else None
        if self.csv is not None and new:
            self.csv.writeheader()

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            if self.csv is not None:
                self.csv.writerow(csv_row(record))
            else:
                self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------- engine
@dataclass
class FolderSummary:
    """What one run did: images found, skipped as already done, answered, failed (error records), processes."""

    found: int
    skipped: int
    answered: int
    failed: int
    processes: int = 1

    def line(self, output: Path) -> str:
        shared = f" by {self.processes} processes" if self.processes > 1 else ""
        return (
            f"{self.found} images: {self.skipped} already in {output}, {self.answered} answered{shared}, "
            f"{self.failed} could not be read"
        )


def rank_batch(localizer, batch: dict[str, Any], top_k: int, min_score: float | None) -> list[dict[str, Any]]:
    """One record per image of ``batch``: the pipeline's ``forward`` on the readable images, its ``postprocess``
    per image (the same ranking, places and ``min_score`` as ``localizer(images)``), or the image's error."""
    records, row = [], 0
    outputs = None
    if batch["pixel_values"] is not None:
        pixels = batch["pixel_values"].to(localizer.model.dtype)
        outputs = localizer.forward({"pixel_values": pixels, "error": ""})
    for image, error in zip(batch["images"], batch["errors"]):
        if error:
            records.append({"image": image, "error": error})
            continue
        one = {
            "similarity": outputs["similarity"][row : row + 1],
            "probabilities": outputs["probabilities"][row : row + 1],
        }
        predictions = localizer.postprocess({**one, "error": ""}, top_k=top_k, min_score=min_score)
        records.append({"image": image, "predictions": predictions})
        row += 1
    return records


def predict_to_file(
    localizer,
    accelerator,
    sources: list[str],
    output: Path,
    top_k: int = 5,
    min_score: float | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> FolderSummary:
    """Localize every image of ``sources`` into ``output`` (resumable); every process of ``accelerator`` calls it."""
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    images = collect_images(sources)
    shared: list[Any] = [None, None]  # the images to do, or why the output cannot be resumed
    if accelerator.is_main_process:
        try:
            done = {os.path.realpath(path) for path in done_images(output)}
            shared[0] = [path for path in images if os.path.realpath(path) not in done]
        except ValueError as err:
            shared[1] = str(err)
    broadcast_object_list(shared)  # the main process read the output: every process gets its verdict
    if shared[1] is not None:
        raise ValueError(shared[1])
    todo = shared[0]
    summary = FolderSummary(len(images), len(images) - len(todo), 0, 0, accelerator.num_processes)
    if not todo:
        return summary
    loader = torch.utils.data.DataLoader(
        ImageFiles(todo, localizer.image_processor),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_files,
        persistent_workers=False,
    )
    loader = accelerator.prepare_data_loader(loader, device_placement=False)  # sharded across processes
    writer = RecordWriter(output) if accelerator.is_main_process else None
    bar = tqdm(total=len(todo), unit="image", disable=not (progress and accelerator.is_main_process), file=sys.stderr)
    try:
        for batch in loader:
            records = rank_batch(localizer, batch, top_k, min_score)
            records = accelerator.gather_for_metrics(records, use_gather_object=True)  # all shards, padding dropped
            if writer is not None:
                writer.write(records)
            failed = sum("error" in record for record in records)
            summary.failed += failed
            summary.answered += len(records) - failed
            bar.update(len(records))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return summary


def localizer_device(accelerator, device: str | None) -> str | None:
    """The pipeline's device: ``device`` in one process; each process's own (``accelerator.device``) under launch."""
    return str(accelerator.device) if accelerator.num_processes > 1 else device


def error_report(summary: FolderSummary, output: Path) -> str | None:
    """The one stderr line about unreadable images, or None when every image was read."""
    if not summary.failed:
        return None
    many = summary.failed != 1
    return f"{summary.failed} image{'s' * many} could not be read, see the error field in {output}"


__all__ = [
    "CSV_COLUMNS",
    "IMAGE_SUFFIXES",
    "FolderSummary",
    "ImageFiles",
    "RecordWriter",
    "collate_files",
    "collect_images",
    "default_workers",
    "done_images",
    "predict_to_file",
    "rank_batch",
    "read_records",
]
