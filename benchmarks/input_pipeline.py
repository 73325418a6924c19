"""Input pipeline vs training step: samples/s that DataLoader + AddressCLIPCollator deliver vs what a step consumes.

    python -m benchmarks.input_pipeline                        # demo rows and 480x640 JPEG rows, workers 0/1/2
    python -m benchmarks.input_pipeline --workers 0 1 --batches 40
    python -m benchmarks.input_pipeline --tiny --dataset DIR   # CI: tiny model, a small demo build, seconds

Sources: (a) the demo city's train rows, built by ``load_splits`` as ``train.py`` builds them, stored at
the config's ``demo_image_size`` (else its training ``image_size``); (b) synthetic 480x640 JPEG rows
in the IAL schema (``dataset_scripts.schema.IAL_FEATURES``), written with ``save_to_disk`` to a
temporary directory and memory-mapped back, like a real dataset.

Settings: ``datasets decode`` is the dataset as loaded (``datasets.Image`` decodes every row in
full, the collator gets PIL images); ``draft decode`` is what ``train.py`` does
(``undecoded_images``: the collator decodes JPEGs with ``Image.draft`` at the model's size), each
with N DataLoader worker processes (prefetch 2 each, as the Trainer's defaults). For each: samples/s delivered (batches
after the first ``2 x workers + 1``), the samples/s a training step consumes
(``benchmarks.train_throughput``'s AddressCLIP step on a fixed batch), their ratio, and the
end-to-end samples/s of loading + training together (the worker shares the CPU with the step).

Goal: delivered >= 2x consumed with the default settings (draft decode, the config's
``dataloader_num_workers``).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from addressclip_train.run import DataArguments, load_splits
from benchmarks.report import publish
from benchmarks.train_throughput import step_fn, time_interleaved, train_step
from dataset_scripts.schema import IAL_FEATURES
from fixtures.synthetic import CAPTIONS, synthetic_addresses
from fixtures.train_step import build_setup, config_json
from modeling_addressclip.data import undecoded_images

GOAL = 2.0
PHOTO = (480, 640)  # height, width
DECODES = ("datasets decode", "draft decode")


def photo_jpeg(rng: np.random.Generator, height: int, width: int, quality: int = 90) -> bytes:
    """A street-photo-like JPEG: smooth colour fields plus fine noise (texture that costs real entropy decoding)."""
    low = rng.integers(0, 255, (height // 40, width // 40, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = np.clip(smooth + rng.integers(-24, 24, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_dataset(directory: Path, rows: int, size: tuple[int, int] = PHOTO, unique: int = 32) -> datasets.Dataset:
    """``rows`` IAL-schema rows cycling ``unique`` synthetic JPEGs of ``size``, saved and memory-mapped back."""
    rng = np.random.default_rng(0)
    jpegs = [photo_jpeg(rng, *size) for _ in range(unique)]
    addresses = synthetic_addresses(64)
    records = []
    for i in range(rows):
        main, rest = addresses[i % len(addresses)].split(" between ", 1)
        cross, hood = rest.split(", ")
        records.append(
            {
                "image": {"bytes": jpegs[i % unique], "path": None}, "address": addresses[i % len(addresses)],
                "main_street": main, "cross_streets": cross.split(" and "), "neighborhood": hood,
                "caption": CAPTIONS[i % len(CAPTIONS)], "latitude": 60.17, "longitude": 24.94,
                "utm_east": 385_000.0 + 7.0 * i, "utm_north": 6_671_000.0 + 3.0 * (i % 97), "utm_zone": "35V",
                "location_id": f"loc{i // 4}", "heading": float(90 * (i % 4)),
            }
        )  # fmt: skip
    datasets.Dataset.from_list(records, features=IAL_FEATURES).save_to_disk(str(directory / "photos"))
    return datasets.load_from_disk(str(directory / "photos"))


def demo_dataset(args: argparse.Namespace) -> datasets.Dataset:
    """The demo city's train split as ``train.py`` loads it (or ``--dataset``'s train split)."""
    data = DataArguments(
        dataset_name=str(args.dataset) if args.dataset else None,
        demo_image_size=args.demo_image_size,
        demo_max_addresses=args.max_addresses,
    )
    return load_splits(data)[0]["train"]


def at_least(dataset: datasets.Dataset, rows: int) -> datasets.Dataset:
    """``dataset`` repeated (an index mapping, no copy) until it has ``rows`` rows."""
    return dataset if len(dataset) >= rows else dataset.select([i % len(dataset) for i in range(rows)])


def loader(dataset, collator, batch_size: int, workers: int) -> DataLoader:
    """The train DataLoader as the Trainer builds it by default (shuffled; workers prefetch 2 batches each)."""
    generator = torch.Generator().manual_seed(0)
    return DataLoader(dataset, batch_size, shuffle=True, collate_fn=collator, num_workers=workers, generator=generator)


def delivered_and_trained(data: DataLoader, setup, batches: int, workers: int) -> tuple[float, float]:
    """Samples/s the loader delivers alone, and samples/s of loading + training one step per batch."""
    skip = 2 * workers + 1  # worker start-up and the batches prefetched during it
    iterator = iter(data)
    for _ in range(skip):
        next(iterator)
    start = time.perf_counter()
    samples = sum(len(next(iterator)["utm"]) for _ in range(batches))
    delivered = samples / (time.perf_counter() - start)
    samples = 0
    for index in range(skip + batches):
        if index == skip:
            start = time.perf_counter()
        batch = {k: v.to(setup.device) for k, v in next(iterator).items()}
        train_step(setup, "AddressCLIP", batch)
        samples += len(batch["utm"]) if index >= skip else 0
    return delivered, samples / (time.perf_counter() - start)


def stored_size(dataset: datasets.Dataset) -> str:
    """Width x height of the first row's stored image (read without decoding its pixels)."""
    first = undecoded_images(dataset)[0]["image"]
    with Image.open(io.BytesIO(first["bytes"]) if first["bytes"] is not None else first["path"]) as image:
        return f"{image.width}x{image.height}"


def measure_source(name: str, dataset, setup, args: argparse.Namespace, consumed: float) -> list[dict]:
    """One row per (decode, workers) setting for one source."""
    rows, stored = [], stored_size(dataset)
    needed = (2 * (2 * max(args.workers) + 1) + 2 * args.batches + 2) * args.batch_size
    dataset = at_least(dataset, needed)
    for decode in DECODES:
        source = undecoded_images(dataset) if decode == "draft decode" else dataset
        for workers in args.workers if decode == "draft decode" else (0,):
            data = loader(source, setup.collator, args.batch_size, workers)
            delivered, trained = delivered_and_trained(data, setup, args.batches, workers)
            rows.append(
                {
                    "source": name, "stored": stored, "decode": decode, "workers": workers, "delivered": delivered,
                    "consumed": consumed, "ratio": delivered / consumed, "end_to_end": trained,
                }
            )  # fmt: skip
    return rows


def goals(rows: list[dict], default_workers: int) -> dict[str, dict]:
    """Per source: the default setting's delivered/consumed ratio against the goal."""
    out = {}
    for row in rows:
        if row["decode"] == "draft decode" and row["workers"] == default_workers:
            out[row["source"]] = {"ratio": row["ratio"], "goal": GOAL, "met": row["ratio"] >= GOAL}
    return out


def format_report(result: dict) -> str:
    lines = [
        f"Input pipeline vs training step: {result['config']} config, batch {result['batch_size']}, "
        f"{result['threads']} torch thread(s) in the main process, {result['batches']} batches timed, "
        f"model input {result['image_size']} px",
        "",
        "| source | stored | decode | workers | delivered samples/s | consumed samples/s | delivered/consumed "
        "| end-to-end train samples/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['source']} | {row['stored']} | {row['decode']} | {row['workers']} | {row['delivered']:.1f} | "
            f"{row['consumed']:.1f} | {row['ratio']:.2f}x | {row['end_to_end']:.1f} |"
        )
    for source, goal in result["goals"].items():
        lines.append(
            f"goal {source} (draft decode, {result['default_workers']} workers = train.py default): "
            f"{goal['ratio']:.2f}x (goal >= {GOAL:.0f}x) -> {'MET' if goal['met'] else 'NOT MET'}"
        )
    if result["tiny"]:
        lines.append("(tiny mode: a tiny model and few batches, the goals are indicative only)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("demo", "tiny"), default="demo", help="model and batch defaults")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's train batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per setting")
    parser.add_argument("--dataset", type=Path, default=None, help="an IAL dataset directory instead of the demo")
    parser.add_argument("--demo-image-size", type=int, default=None, help="default: the config's (demo_)image_size")
    parser.add_argument("--max-addresses", type=int, default=20, help="demo city: build only N addresses")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--tiny", action="store_true", help="CI: tiny config, batch 8, workers 0 1, 3 batches")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.config, args.batches, args.workers = "tiny", min(args.batches, 3), [0, 1]
    fields = config_json(args.config)
    args.batch_size = args.batch_size or (8 if args.tiny else fields["per_device_train_batch_size"])
    args.demo_image_size = args.demo_image_size or fields.get("demo_image_size", fields["image_size"])
    args.default_workers = fields.get("dataloader_num_workers", 0)
    args.workers = sorted(set(args.workers) | {args.default_workers})
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup = build_setup(args.config, args.batch_size, "cpu", plain=False)
    step = step_fn(setup, "AddressCLIP")
    consumed = args.batch_size / time_interleaved({"step": step}, setup.device, 2, 3, 2)["step"]
    with tempfile.TemporaryDirectory() as tmp:
        photos = photo_dataset(Path(tmp), rows=8 * args.batch_size)
        rows = measure_source("demo", demo_dataset(args), setup, args, consumed)
        rows += measure_source(f"photos {PHOTO[1]}x{PHOTO[0]}", photos, setup, args, consumed)
    result = {
        "config": args.config,
        "tiny": args.tiny,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "batches": args.batches,
        "demo_image_size": args.demo_image_size,
        "image_size": config_json(args.config)["image_size"],
        "default_workers": args.default_workers,
        "rows": rows,
        "goals": goals(rows, args.default_workers),
    }
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
