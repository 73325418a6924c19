"""The prepared GPU check: is the paper's full Pitts-IAL recipe (23.4 M samples) under an hour on this device?

    python -m benchmarks.gpu_check --json gpu_check.json            # on a machine with a CUDA GPU (~5-8 min)
    python -m benchmarks.gpu_check --dry-run --json out.json        # CPU, tiny sizes: the same code, in CI

It measures, in one run and one process:
1. the ViT-B/16 AddressCLIP train step (batch 32; bf16 autocast and fp32; torch.compile off and on) beside
   plain ``CLIPModel(return_loss=True)``: samples/s, % of the card's bf16 dense peak (or of the measured
   matmul peak where the card is not known), peak GPU memory;
2. localization of a batch of 32 images against a 3,616-address bank (SF-IAL-Large's), compile off and on;
3. how many 640x480 JPEGs/s the host's cores decode and resize through ``AddressCLIPCollator`` (the one
   image policy), with one DataLoader worker per core;
4. a short training through ``train.py``'s own path (``addressclip_train.train.main``), to show the
   whole stack runs on the device;
and prints the projected wall time of 100 epochs of Pitts-IAL (234K images) from the slower of (1, best) and (3).
The goal the recipe's defaults aim at: under one hour on one H200-class GPU (~6.5k samples/s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.input_pipeline import photo_dataset
from benchmarks.report import publish
from benchmarks.train_throughput import compile_steps, matmul_peak_gflops, step_fn, time_interleaved
from fixtures.train_step import build_setup, step_flops
from modeling_addressclip.data import undecoded_images

PITTS_SAMPLES = 234_000 * 100  # Pitts-IAL train images x the recipe's 100 epochs
SF_IAL_LARGE_BANK = 3616
CARD_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def card_peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """The card's dense bf16 peak from its name, or None (then the measured matmul peak is used)."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in CARD_BF16_TFLOPS.items() if key in name), None), name


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def train_steps(
    config: str, batch: int, device: torch.device, bf16: bool, rounds: int, peak_tflops: float | None, compile: bool
):
    """samples/s, % of peak and peak memory of AddressCLIP and CLIP steps, compiled (``compile``) and not."""
    setup = build_setup(config, batch, str(device))
    setup.bf16 = bf16
    flops = {kind: step_flops(setup, kind) for kind in ("AddressCLIP", "CLIP")}
    steps = {kind: step_fn(setup, kind) for kind in flops}
    compile_s = {}
    if compile:
        compiled, compile_s = compile_steps(setup)
        steps.update(compiled)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_interleaved(steps, device, warmup=2, rounds=rounds, per_round=3)
    measured = matmul_peak_gflops(device, 8192 if device.type == "cuda" else 512, dtype=torch.bfloat16)
    peak_gflops = 1000 * peak_tflops if peak_tflops else measured
    rows = {}
    for key, step_s in seconds.items():
        gflop = flops[key.removesuffix(" compiled")] / 1e9
        rows[f"{key}, {'bf16' if bf16 else 'fp32'}"] = {
            "samples_per_s": batch / step_s,
            "peak_fraction": gflop / step_s / peak_gflops,
            "compile_s": compile_s.get(key.removesuffix(" compiled")) if key.endswith("compiled") else None,
        }
    return rows, peak_memory_gb(device), setup


@torch.no_grad()
def localization(setup, device: torch.device, bank_size: int, rounds: int) -> dict[str, float]:
    """Images/s of ``address_similarity`` (one image encode + one product) for one batch, compile off and on."""
    model = setup.models["AddressCLIP"].eval()
    pixels = setup.batches["AddressCLIP"]["pixel_values"]
    bank = torch.nn.functional.normalize(torch.randn(bank_size, model.config.projection_dim, device=device), dim=-1)
    plain = lambda: model.address_similarity(pixels, bank=bank)  # noqa: E731
    compiled_fn = torch.compile(model.address_similarity)
    steps = {"localization": plain, "localization compiled": lambda: compiled_fn(pixels, bank=bank)}
    seconds = time_interleaved(steps, device, warmup=2, rounds=rounds, per_round=3)
    return {key: pixels.shape[0] / s for key, s in seconds.items()}


def host_decode_rate(setup, rows: int, batches: int) -> tuple[float, int]:
    """640x480 JPEGs/s through the collator with one DataLoader worker per core (the recipe's input path)."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        dataset = undecoded_images(photo_dataset(Path(folder), rows))
        loader = DataLoader(dataset, batch_size=setup.batch_size, collate_fn=setup.collator, num_workers=workers,
                            shuffle=True, persistent_workers=workers > 0)  # fmt: skip
        iterator, count = iter(loader), 0
        next(iterator)  # workers started
        start = time.perf_counter()
        for _ in range(batches):
            try:
                count += next(iterator)["pixel_values"].shape[0]
            except StopIteration:
                iterator = iter(loader)
        return count / (time.perf_counter() - start), workers


def short_training(device: torch.device, steps: int, output: Path) -> dict[str, float]:
    """``addressclip_train.train.main`` with the tiny recipe on its demo subset: the stack runs on ``device``."""
    from addressclip_train import train

    argv = ["tiny", "--output_dir", str(output), "--max_steps", str(steps), "--use_cpu", str(device.type == "cpu")]
    start = time.perf_counter()
    metrics = train.main(argv)
    return {"seconds": time.perf_counter() - start, "eval_ssa@1": metrics.get("eval_ssa@1", float("nan"))}


def projection(train_rate: float, decode_rate: float) -> dict[str, float]:
    rate = min(train_rate, decode_rate)
    bound = "train" if rate == train_rate else "decode"
    return {"samples_per_s": rate, "hours": PITTS_SAMPLES / rate / 3600, "bound_by": bound}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    peak, card = card_peak_tflops(device)
    config, batch, rounds = ("tiny", 8, 2) if args.dry_run else ("vit-b16", args.batch_size, 5)
    result = {"device": card, "config": config, "batch_size": batch, "card_bf16_tflops": peak, "train": {}}
    for bf16 in (True, False):
        # The dry run compiles only the localization (CPU compiles take minutes); the GPU run compiles everything.
        rows, memory, setup = train_steps(config, batch, device, bf16, rounds, peak, compile=not args.dry_run)
        result["train"].update(rows)
        result[f"peak_memory_gb_{'bf16' if bf16 else 'fp32'}"] = memory
    result["localization_images_per_s"] = localization(setup, device, 64 if args.dry_run else SF_IAL_LARGE_BANK, rounds)
    rate, workers = host_decode_rate(setup, rows=64 if args.dry_run else 512, batches=4 if args.dry_run else 40)
    result["host_decode"] = {"jpegs_per_s": rate, "workers": workers}
    with tempfile.TemporaryDirectory() as output:
        result["short_training"] = short_training(device, 2 if args.dry_run else 20, Path(output))
    best_train = max(v["samples_per_s"] for k, v in result["train"].items() if k.startswith("AddressCLIP"))
    result["projection"] = projection(best_train, rate)
    return result


def format_table(result: dict) -> str:
    lines = [f"GPU check on {result['device']} ({result['config']}, batch {result['batch_size']})", "",
             "| measurement | value |", "|---|---|"]  # fmt: skip
    for key, row in result["train"].items():
        lines.append(
            f"| train step {key} | {row['samples_per_s']:.1f} samples/s, {100 * row['peak_fraction']:.1f}% of peak |"
        )
    for key in ("bf16", "fp32"):
        memory = result[f"peak_memory_gb_{key}"]
        lines.append(f"| peak GPU memory, {key} | {'n/a (CPU)' if memory is None else f'{memory:.1f} GiB'} |")
    for key, value in result["localization_images_per_s"].items():
        lines.append(f"| {key} (bank {SF_IAL_LARGE_BANK}) | {value:.1f} images/s |")
    decode = result["host_decode"]
    lines.append(
        f"| host 640x480 JPEG decode + resize | {decode['jpegs_per_s']:.1f} images/s ({decode['workers']} workers) |"
    )
    lines.append(f"| short training (train.main) | {result['short_training']['seconds']:.1f} s |")
    projected = result["projection"]
    hours, rate, bound = projected["hours"], projected["samples_per_s"], projected["bound_by"]
    lines.append(
        f"| Pitts-IAL 100 epochs (23.4 M samples) | {hours:.2f} h at {rate:.0f} samples/s ({bound}-bound; goal < 1 h) |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU: the same code in a minute, for CI")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
    elif not args.device.startswith("cuda"):
        parser.error("the full check needs a CUDA device; use --dry-run on CPU")
    result = run(args)
    return publish(result, format_table(result), args.json)


if __name__ == "__main__":
    main()
