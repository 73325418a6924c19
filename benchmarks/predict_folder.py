"""``addressclip predict FOLDER --output FILE``: folder images/s vs the bare image encoder, and peak RSS at 1k vs 10k.

    python -m benchmarks.predict_folder                        # random demo-size model, 1,000 and 10,000 JPEGs
    python -m benchmarks.predict_folder --model outputs/demo   # a trained model directory
    python -m benchmarks.predict_folder --vit-b16 --images 256 512   # the paper's image tower at 224 px
    python -m benchmarks.predict_folder --tiny                 # CI: tiny model, 64 and 256 images, seconds

Photos: ``--size`` (default 480x640) street-photo-like JPEGs (``benchmarks.input_pipeline.photo_jpeg``; 64
distinct ones, written as N files). Two measurements:

* **throughput**, in this process: images/s of the folder engine (``predict_folder.predict_to_file``: DataLoader
  with ``--num-workers`` workers decoding through the image policy, encode + rank + one JSONL record per image)
  over the small folder after a one-batch warm-up, vs the bare image encoder (``model.embed_images`` on pixel
  batches decoded beforehand, after a warm-up call; the better of a timing before and one after the folder run)
  at the same batch size. Goal: folder >= 0.9 x encoder.
* **memory**: peak RSS of ``addressclip predict`` subprocesses (``python -m addressclip_train.cli``, its
  DataLoader workers included: ``getrusage(RUSAGE_CHILDREN)`` of a wrapper process per run) on the small and
  the large folder, and their wall-clock images/s (model load and start-up included). Goal: large / small
  <= 1.10 (flat in the number of images: results are streamed, never held).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from addressclip_train import predict_folder as engine
from addressclip_train.cli import load_localizer
from addressclip_train.train import resolve_recipe
from benchmarks.inference import random_model
from benchmarks.input_pipeline import photo_jpeg
from benchmarks.report import publish
from fixtures import ROOT
from fixtures.synthetic import synthetic_addresses
from fixtures.tiny_models import ADDRESSES, save_tiny_model, tiny_config, tiny_processor
from modeling_addressclip.image_utils import image_pixels

THROUGHPUT_GOAL, RSS_GOAL = 0.9, 1.10
BANK_SIZE = 154  # addresses of the demo city's bank
VIT_B16 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224,
               patch_size=16)  # fmt: skip
RSS_WRAPPER = (
    "import resource, subprocess, sys; proc = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(proc.returncode)"
)


def model_directory(args: argparse.Namespace, scratch: Path) -> Path:
    """``--model``, else a random demo-size (``--tiny``: tiny) model saved with its processor under ``scratch``."""
    if args.model is not None:
        return args.model
    directory = scratch / "model"
    if args.tiny:
        return save_tiny_model(directory, seed=0)
    if args.vit_b16:
        return vit_b16_model(directory)
    model, processor = random_model(resolve_recipe("demo"))
    model.set_address_bank(synthetic_addresses(BANK_SIZE), processor)  # the demo city's size of bank
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def vit_b16_model(directory: Path) -> Path:
    """A random AddressCLIP with the paper's ViT-B/16 image tower at 224 px (a tiny text tower and bank: only the
    image path is timed here) saved with its processor."""
    from modeling_addressclip import AddressCLIPModel

    processor = tiny_processor(image_size=224)
    config = tiny_config(processor)
    config.vision_config.update(VIT_B16)
    model = AddressCLIPModel(config).eval()
    model.set_address_bank(list(ADDRESSES), processor)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def write_folder(folder: Path, count: int, jpegs: list[bytes]) -> Path:
    """``count`` JPEG files cycling ``jpegs``, 1,000 to a subfolder."""
    for i in range(count):
        path = folder / f"part{i // 1000:03d}" / f"photo{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpegs[i % len(jpegs)])
    return folder


def encoder_images_per_s(localizer, folder: Path, batch_size: int, batches: int) -> float:
    """Images/s of ``model.embed_images`` alone on ``batches`` pixel batches decoded beforehand (one warm-up)."""
    paths = engine.collect_images([str(folder)])[: batch_size * batches]
    pixels = [
        image_pixels(localizer.image_processor, paths[i : i + batch_size]).to(localizer.model.dtype)
        for i in range(0, len(paths), batch_size)
    ]
    with torch.inference_mode():
        localizer.model.embed_images(pixels[0])
        start = time.perf_counter()
        for batch in pixels:
            localizer.model.embed_images(batch)
        return len(paths) / (time.perf_counter() - start)


def folder_images_per_s(localizer, folder: Path, output: Path, args: argparse.Namespace) -> float:
    """Images/s of the folder engine over ``folder`` into a fresh ``output`` (all images answered)."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    warm_up = engine.collect_images([str(folder)])[: args.batch_size]  # model and worker start-up, untimed
    engine.predict_to_file(localizer, accelerator, warm_up, output.with_suffix(".warm.jsonl"), progress=False)
    start = time.perf_counter()
    summary = engine.predict_to_file(
        localizer, accelerator, [str(folder)], output, batch_size=args.batch_size, num_workers=args.num_workers,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if summary.answered != summary.found:
        raise RuntimeError(f"the folder run answered {summary.answered} of {summary.found} images")
    return summary.answered / seconds


def cli_run(model: Path, folder: Path, output: Path, args: argparse.Namespace) -> dict:
    """One ``addressclip predict`` subprocess: its peak RSS (MiB, workers included), wall time, images/s."""
    command = [sys.executable, "-m", "addressclip_train.cli", "predict", "--model", str(model), "--device", "cpu"]
    command += ["--output", str(output), "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers)]
    command += ["--no-progress", str(folder)]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"addressclip predict exited {proc.returncode}: {proc.stderr[-2000:]}")
    images = sum(1 for _ in output.open(encoding="utf-8"))
    return {"images": images, "peak_rss_mib": int(proc.stdout.split()[-1]) / 1024, "wall_s": seconds,
            "images_per_s": images / seconds}  # fmt: skip


def random_name(args: argparse.Namespace) -> str:
    return "random model, ViT-B/16 224 px image tower" if args.vit_b16 else "random model, configs/demo.json size"


def format_report(result: dict) -> str:
    small, large = result["cli"]["small"], result["cli"]["large"]
    tput, rss = result["goals"]["throughput"], result["goals"]["rss"]
    return "\n".join(
        [
            f"addressclip predict FOLDER --output: {result['model']}; {result['photo']} JPEGs; batch "
            f"{result['batch_size']}, {result['num_workers']} DataLoader worker(s), "
            f"{result['threads']} torch thread(s)",
            "",
            "| path | images | images/s |",
            "|---|---|---|",
            f"| bare image encoder (pre-decoded pixels) | {result['encoder_images']} | {result['encoder_ips']:.1f} |",
            f"| folder engine (decode + encode + rank + write) | {small['images']} | {result['folder_ips']:.1f} |",
            "",
            "| addressclip predict (subprocess) | images | wall s | images/s | peak RSS MiB |",
            "|---|---|---|---|---|",
            *(
                f"| {name} folder | {run['images']} | {run['wall_s']:.1f} | {run['images_per_s']:.1f} | "
                f"{run['peak_rss_mib']:.0f} |"
                for name, run in result["cli"].items()
            ),
            "",
            f"goal throughput: folder / encoder = {tput['ratio']:.3f} (goal >= {THROUGHPUT_GOAL}) -> "
            f"{'MET' if tput['met'] else 'NOT MET'}",
            f"goal rss: {large['images']} / {small['images']} images peak RSS = {rss['ratio']:.3f} (goal <= "
            f"{RSS_GOAL}) -> {'MET' if rss['met'] else 'NOT MET'}",
            *(["(tiny mode: a tiny model and small folders, the goals are indicative only)"] if result["tiny"] else []),
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a saved AddressCLIP dir (default: random, demo size)")
    parser.add_argument("--images", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"),
                        help="folder sizes (default 1000 10000; --tiny 64 256)")  # fmt: skip
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=engine.default_workers())
    parser.add_argument("--encoder-batches", type=int, default=10, help="pixel batches timed for the bare encoder")
    parser.add_argument("--vit-b16", action="store_true", help="a random model with the paper's ViT-B/16 224-px tower")
    parser.add_argument("--tiny", action="store_true", help="CI: tiny model, 64 and 256 images of 120x160")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images = args.images or [64, 256]
        args.size, args.batch_size, args.encoder_batches = (120, 160), min(args.batch_size, 16), 2
    args.images = args.images or [1000, 10000]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="predict_folder_") as tmp:
        scratch = Path(tmp)
        model = model_directory(args, scratch)
        rng = np.random.default_rng(0)
        jpegs = [photo_jpeg(rng, *args.size) for _ in range(64)]
        small, large = (write_folder(scratch / f"photos{n}", n, jpegs) for n in args.images)
        localizer = load_localizer(model, "cpu")
        before = encoder_images_per_s(localizer, small, args.batch_size, args.encoder_batches)
        folder_ips = folder_images_per_s(localizer, small, scratch / "engine.jsonl", args)
        after = encoder_images_per_s(localizer, small, args.batch_size, args.encoder_batches)
        encoder_ips = max(before, after)  # the encoder's best, timed on either side of the folder run
        cli = {
            "small": cli_run(model, small, scratch / "small.jsonl", args),
            "large": cli_run(model, large, scratch / "large.jsonl", args),
        }
    ratio = cli["large"]["peak_rss_mib"] / cli["small"]["peak_rss_mib"]
    result = {
        "model": str(args.model or ("random tiny model" if args.tiny else random_name(args))),
        "tiny": args.tiny,
        "photo": f"{args.size[0]}x{args.size[1]}",
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "threads": torch.get_num_threads(),
        "encoder_images": min(args.images[0], args.batch_size * args.encoder_batches),
        "encoder_ips": encoder_ips,
        "folder_ips": folder_ips,
        "cli": cli,
        "goals": {
            "throughput": {
                "ratio": folder_ips / encoder_ips,
                "goal": THROUGHPUT_GOAL,
                "met": folder_ips >= THROUGHPUT_GOAL * encoder_ips,
            },
            "rss": {"ratio": ratio, "goal": RSS_GOAL, "met": ratio <= RSS_GOAL},
        },
    }
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
