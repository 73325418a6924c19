"""Localization cost vs one bare image encode, at ViT-B/16 and the demo size, for 3,616 and 100,000 addresses.

    python -m benchmarks.inference                             # ViT-B/16 (random weights, 224 px) and the demo size
    python -m benchmarks.inference --arch vit-b16 --json inference.json
    python -m benchmarks.inference --demo-model outputs/demo   # + the half bank's SSA/SA cost on the demo query split
    python -m benchmarks.inference --tiny                      # CI: tiny model, N = 64 and 1,000, seconds

Architectures: ``vit-b16`` is ``openai/clip-vit-base-patch16``'s architecture with random weights, OpenAI's
tokenizer and the Hub's 224-px preprocessing (``fixtures.clip_checkpoint``), loaded with
``AddressCLIPModel.from_clip_pretrained`` as a user loads the real one; ``demo`` is ``configs/demo.json``'s model
(random weights). For each, in one process:

* **localization / encode**: ``model.localize(pixels, top_k=5)`` (image encode, the (B, D) x (D, N) product in the
  bank's dtype, top-k) against ``model.embed_images(pixels)`` alone, at batch 1 and 32, for N = 3,616 (SF-IAL-Large's
  addresses, paper Tab. 1; the real bank of 3,616 synthetic addresses encoded by the model) and N = 100,000 (a
  country-scale bank; random unit vectors, since the search cost depends only on the bank's shape and dtype), each
  with the bank in fp32 (the default: ``set_address_bank`` stores float32) and fp16. Timings are interleaved
  round-robin and the best round of each is kept, so a busy machine slows all of them alike.
  Goals (ViT-B/16): <= 1.05 at N = 3,616 and <= 1.25 at N = 100,000.
* **zero-shot re-encoding at N = 3,616, measured in full**: what ``pipeline("zero-shot-image-classification")``
  does per image, one image encode plus tokenizing and encoding all 3,616 prompts (``model.embed_addresses``),
  timed once over every text, against the bank path at batch 1.
* **the half bank's cost** (``--demo-model DIR``, default ``outputs/demo`` when it exists): query-split SSA/SA of
  the trained demo model with its bank in fp32, fp16 and bf16 (one image encode, the three banks compared).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoProcessor

from addressclip_train.run import ModelArguments, build_model
from addressclip_train.train import resolve_recipe
from benchmarks.report import publish
from fixtures.synthetic import candidates, synthetic_addresses
from modeling_addressclip import AddressCLIPModel
from modeling_addressclip.image_utils import image_pixels
from modeling_addressclip.metrics import address_accuracy

SIZES, TINY_SIZES = (3_616, 100_000), (64, 1_000)
BATCHES, TINY_BATCHES = (1, 32), (1, 4)
GOALS = {3_616: 1.05, 100_000: 1.25}
HALF = torch.float16
TOP_K = 5
DEFAULT_DEMO_MODEL = Path("outputs/demo")


def random_model(config_path: Path):
    """An untrained model with the architecture of ``config_path``'s model fields (tokenizer built offline)."""
    fields = json.loads(config_path.read_text())
    known = ModelArguments.__dataclass_fields__
    args = ModelArguments(**{k: v for k, v in fields.items() if k in known and k != "model_name_or_path"})
    rows = [{"address": a, "caption": "A street view of a street with trees"} for a in synthetic_addresses(400)]
    return build_model(args, rows)


def load_arch(arch: str, scratch: Path):
    """(model, processor, description) of ``arch``: vit-b16, demo or tiny, with random weights."""
    if arch == "vit-b16":
        from fixtures.clip_checkpoint import make_clip_checkpoint

        directory = make_clip_checkpoint(scratch / "clip-vit-base-patch16")
        model = AddressCLIPModel.from_clip_pretrained(directory)
        return model.eval(), AutoProcessor.from_pretrained(directory), "ViT-B/16, random weights, 224 px"
    model, processor = random_model(resolve_recipe("tiny" if arch == "tiny" else "demo"))
    return model.eval(), processor, f"configs/{arch}.json size, random weights"


def images(processor, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` random 640x480 RGB photos as the model's ``pixel_values`` (the package's image policy)."""
    rng = np.random.default_rng(seed)
    pics = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(count)]
    return image_pixels(processor, pics)


def measure_ms(fn, repeats: int) -> float:
    """Best-of-``repeats`` milliseconds of one call of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def time_interleaved(calls: dict, rounds: int) -> dict[str, float]:
    """Best ms of each call over ``rounds`` round-robin rounds (each called once per round, after a warm-up)."""
    for fn in calls.values():
        fn()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], 1000 * (time.perf_counter() - start))
    return best


def banks(model, processor, sizes: tuple[int, ...]) -> tuple[dict, float]:
    """{(N, dtype name): bank matrix or None (the saved bank)} and the seconds the real bank build took."""
    real_n, *others = sizes
    start = time.perf_counter()
    model.set_address_bank(candidates([], real_n), processor)
    build_s = time.perf_counter() - start
    saved = model.check_address_bank()
    out = {(real_n, "float32"): None, (real_n, "float16"): saved.to(HALF)}
    generator = torch.Generator().manual_seed(0)
    for n in others:
        matrix = F.normalize(torch.randn(n, saved.shape[1], generator=generator), dim=-1)
        out[(n, "float32")], out[(n, "float16")] = matrix, matrix.to(HALF)
    return out, build_s


def timed_calls(model, pixels: torch.Tensor, bank_matrices: dict) -> dict:
    """The bare encode, and per bank the full ``localize`` and the search alone (product + top-k)."""
    embeds = model.embed_images(pixels)
    calls = {"encode": lambda: model.embed_images(pixels)}
    for key, bank in bank_matrices.items():
        calls[("localize", key)] = lambda b=bank: model.localize(pixels, top_k=TOP_K, bank=b)
        matrix = model.check_address_bank() if bank is None else bank
        calls[("search", key)] = lambda m=matrix: (embeds.to(m.dtype) @ m.t()).topk(TOP_K, dim=-1)
    return calls


@torch.no_grad()
def localization_rows(model, processor, bank_matrices: dict, batches: tuple[int, ...], rounds: int) -> list[dict]:
    """localize / encode at every batch size, N and bank dtype (interleaved timings; search-only cost alongside)."""
    rows = []
    for batch in batches:
        calls = timed_calls(model, images(processor, batch, seed=batch), bank_matrices)
        best = time_interleaved(calls, rounds if batch > 1 else 3 * rounds)
        for (n, dtype), _ in bank_matrices.items():
            ratio = best[("localize", (n, dtype))] / best["encode"]
            goal = GOALS.get(n)
            rows.append({
                "batch": batch, "n": n, "bank_dtype": dtype, "encode_ms": best["encode"],
                "localize_ms": best[("localize", (n, dtype))], "search_ms": best[("search", (n, dtype))],
                "ratio": ratio, "goal": goal, "met": None if goal is None else ratio <= goal,
            })  # fmt: skip
    return rows


@torch.no_grad()
def zero_shot(model, processor, n: int, localize_ms: float, encode_ms: float) -> dict:
    """Zero-shot re-encoding of all ``n`` prompts for one image, timed once in full, against the bank path."""
    texts = candidates([], n)
    start = time.perf_counter()
    model.embed_addresses(texts, processor)
    text_ms = 1000 * (time.perf_counter() - start)
    per_image = encode_ms + text_ms
    return {"n": n, "text_encode_ms": text_ms, "per_image_ms": per_image, "bank_ms": localize_ms,
            "speedup": per_image / localize_ms}  # fmt: skip


def measure_arch(arch: str, args: argparse.Namespace, scratch: Path) -> dict:
    model, processor, description = load_arch(arch, scratch)
    sizes, batches = (TINY_SIZES, TINY_BATCHES) if args.tiny else (SIZES, BATCHES)
    matrices, build_s = banks(model, processor, sizes)
    rows = localization_rows(model, processor, matrices, batches, args.rounds)
    b1 = next(r for r in rows if r["batch"] == 1 and r["n"] == sizes[0] and r["bank_dtype"] == "float32")
    return {
        "arch": arch,
        "description": description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "embedding_dim": int(model.config.projection_dim),
        "bank_build_s": build_s,
        "bank_build_n": sizes[0],
        "rows": rows,
        "zero_shot": zero_shot(model, processor, sizes[0], b1["localize_ms"], b1["encode_ms"]),
    }


@torch.no_grad()
def half_bank_cost(directory: Path, rows: list[dict] | None = None, batch_size: int = 128) -> dict:
    """SSA/SA of a trained model with its bank in fp32, fp16 and bf16 (same image embeddings) on ``rows``
    (``image``, ``address``; default: the demo city's query split)."""
    model = AddressCLIPModel.from_pretrained(directory).eval()
    processor = AutoProcessor.from_pretrained(directory)
    if rows is None:
        from dataset_scripts.demo_city import load_demo_city
        from modeling_addressclip.data import undecoded_images

        rows = list(undecoded_images(load_demo_city()["query"]))
    embeds = torch.cat([
        model.embed_images(image_pixels(processor, [r["image"] for r in rows[i : i + batch_size]], "query row"))
        for i in range(0, len(rows), batch_size)
    ])  # fmt: skip
    references = [r["address"] for r in rows]
    bank, names = model.check_address_bank(), model.address_bank
    out = {"model": str(directory), "query_images": len(rows), "bank_size": len(names)}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        indices = (embeds.to(dtype) @ bank.to(dtype).t()).float().topk(TOP_K, dim=-1).indices
        predictions = [[names[i] for i in row] for row in indices.tolist()]
        scores = address_accuracy(predictions, references, k=(1, 5))
        out[str(dtype).removeprefix("torch.")] = {key: 100 * value for key, value in scores.items()}
    return out


def _row_line(row: dict) -> str:
    goal = "" if row["goal"] is None else f"<= {row['goal']:.2f} {'met' if row['met'] else 'NOT met'}"
    return (
        f"| {row['batch']} | {row['n']:,} | {row['bank_dtype']} | {row['encode_ms']:.2f} | {row['localize_ms']:.2f} | "
        f"{row['search_ms']:.3f} | {row['ratio']:.3f} | {goal} |"
    )


def format_report(result: dict) -> str:
    lines = [f"AddressCLIP localization vs one image encode, {result['threads']} thread(s), best of interleaved rounds"]
    for arch in result["archs"]:
        zs = arch["zero_shot"]
        lines += [
            "",
            f"## {arch['arch']}: {arch['description']}, {arch['parameters'] / 1e6:.1f} M parameters, "
            f"D = {arch['embedding_dim']}",
            f"bank build (encode {arch['bank_build_n']:,} addresses once): {arch['bank_build_s']:.1f} s",
            "",
            "| batch | N addresses | bank | encode ms | localize ms | search ms | localize / encode | goal |",
            "|---|---|---|---|---|---|---|---|",
            *(_row_line(row) for row in arch["rows"]),
            "",
            f"zero-shot re-encoding at N = {zs['n']:,}, measured in full: {zs['text_encode_ms']:,.1f} ms of text "
            f"encoding per image, {zs['per_image_ms']:,.1f} ms per image vs {zs['bank_ms']:.2f} ms with the bank "
            f"({zs['speedup']:,.0f}x)",
        ]
    half = result.get("half_bank")
    if half:
        lines += [
            "",
            f"## half bank on the demo: {half['model']}, {half['query_images']} query images, "
            f"{half['bank_size']} addresses",
            "",
            "| bank | SSA@1 | SSA@5 | SA@1 | SA@5 |",
            "|---|---|---|---|---|",
        ]
        for dtype in ("float32", "float16", "bfloat16"):
            s = half[dtype]
            lines.append(f"| {dtype} | {s['ssa@1']:.2f} | {s['ssa@5']:.2f} | {s['sa@1']:.2f} | {s['sa@5']:.2f} |")
    lines.append(f"\ndefault bank dtype: {result['default_bank_dtype']} (set_address_bank); half = {HALF}")
    if result["tiny"]:
        lines.append("(tiny mode: small N and a tiny model, the goals are indicative only)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", choices=("vit-b16", "demo"), default=["vit-b16", "demo"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds at batch > 1 (x3 at batch 1)")
    parser.add_argument("--demo-model", type=Path, default=None, help="trained demo model for the half-bank cost")
    parser.add_argument("--tiny", action="store_true", help="CI: tiny model, N = 64 and 1,000, batch 1 and 4")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.arch, args.rounds = ["tiny"], min(args.rounds, 2)
    if args.demo_model is None and not args.tiny and (DEFAULT_DEMO_MODEL / "config.json").exists():
        args.demo_model = DEFAULT_DEMO_MODEL
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        archs = [measure_arch(arch, args, Path(scratch)) for arch in args.arch]
    result = {"tiny": args.tiny, "threads": torch.get_num_threads(), "archs": archs, "default_bank_dtype": "float32"}
    if args.demo_model is not None:
        result["half_bank"] = half_bank_cost(args.demo_model)
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
