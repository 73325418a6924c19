"""Inference cost of AddressCLIP's address bank vs zero-shot re-encoding of the candidate addresses.

    python -m benchmarks.inference                       # random model, demo-size architecture (configs/demo.json)
    python -m benchmarks.inference --model outputs/demo  # a trained model directory
    python -m benchmarks.inference --tiny                # CI: tiny model, N = 16/64/256, < 60 s

For N candidate addresses (128 as in the demo city, 3,616 as SF-IAL-Large's train addresses,
30,000 synthesized ones) it times, per image at batch 1:

* the bank path, ``model.localize``: one image encode + one (1, D) x (D, N) product + top-k;
* the zero-shot path that ``pipeline("zero-shot-image-classification")`` takes: one image encode
  (``model.embed_images``) plus tokenizing and encoding all N prompts again for every image
  (``model.embed_addresses``). For large N only the first ``--text-batches`` text batches are timed
  and the rest is extrapolated linearly (said in the output).

Goals: a >= 500x speed-up of the bank path at N = 3,616, and bank search (product + top-k only)
<= 5% of one image encode at N = 30,000 (judged at batch 1, and also per image when 32 images share
one pass over the bank). Also printed: bank memory per address (fp32, fp16) and the
bank path's throughput (images/s) at batch 1/8/32. Every ratio is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor

from addressclip_train.run import ModelArguments, build_model
from addressclip_train.train import resolve_recipe
from benchmarks.report import publish
from fixtures.synthetic import candidates, synthetic_addresses
from modeling_addressclip import AddressCLIPModel
from modeling_addressclip.image_utils import image_pixels

SIZES = (128, 3_616, 30_000)
TINY_SIZES = (16, 64, 256)
SPEEDUP_GOAL, SEARCH_GOAL = 500.0, 0.05
TOP_K = 5
BATCH = 32


def random_model(config_path: Path):
    """An untrained model with the architecture of ``config_path``'s model fields (tokenizer built offline)."""
    fields = json.loads(config_path.read_text())
    known = ModelArguments.__dataclass_fields__
    args = ModelArguments(**{k: v for k, v in fields.items() if k in known and k != "model_name_or_path"})
    rows = [{"address": a, "caption": "A street view of a street with trees"} for a in synthetic_addresses(400)]
    return build_model(args, rows)


def load(args: argparse.Namespace):
    if args.model is not None:
        return AddressCLIPModel.from_pretrained(args.model).eval(), AutoProcessor.from_pretrained(args.model)
    config = resolve_recipe("tiny" if args.tiny else "demo")
    model, processor = random_model(config)
    return model.eval(), processor


def images(processor, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` random RGB images as the model's ``pixel_values`` (the package's image policy)."""
    rng = np.random.default_rng(seed)
    pics = [Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)) for _ in range(count)]
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


@torch.no_grad()
def encode_image(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The image encode of both paths (the one ``localize`` runs): normalized embeddings."""
    return model.embed_images(pixel_values)


def encode_texts(model, processor, texts: list[str]) -> torch.Tensor:
    """What the zero-shot path does per image and text batch: tokenize the prompts, run the text encoder."""
    return model.embed_addresses(texts, processor, batch_size=len(texts))


def zero_shot_ms(model, processor, pixel: torch.Tensor, texts: list[str], args) -> tuple[float, bool]:
    """ms per image of encode + re-encoding all ``texts``; True when text batches were extrapolated."""
    chunks = [texts[i : i + args.text_batch_size] for i in range(0, len(texts), args.text_batch_size)]
    timed = chunks[: args.text_batches]
    encode = measure_ms(lambda: encode_image(model, pixel), args.repeats)
    repeats = args.repeats if len(chunks) <= args.text_batches else 1
    text = sum(measure_ms(lambda c=c: encode_texts(model, processor, c), repeats) for c in timed)
    return encode + text * len(chunks) / len(timed), len(timed) < len(chunks)


def pipeline_ms(model, processor, texts: list[str], args) -> float:
    """ms per image of transformers' own ``zero-shot-image-classification`` pipeline (a cross-check)."""
    from transformers import pipeline

    classify = pipeline(
        "zero-shot-image-classification", model=model, tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )  # fmt: skip
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    template = model.config.address_template.replace("{address}", "{}")
    return measure_ms(lambda: classify(picture, candidate_labels=texts, hypothesis_template=template), args.repeats)


def bank_stage_ms(model, pixel: torch.Tensor, args) -> dict:
    """ms of the bank path per image: full ``localize``, the image encode alone, and the search alone."""
    bank = model.check_address_bank()
    embeds = encode_image(model, pixel)
    k = min(TOP_K, bank.shape[0])
    return {
        "localize": measure_ms(lambda: model.localize(pixel, top_k=TOP_K), args.repeats),
        "encode": measure_ms(lambda: encode_image(model, pixel), args.repeats),
        "search": measure_ms(lambda: (embeds @ bank.t()).topk(k, dim=-1), max(args.repeats, 20)),
    }


def batched_search_fraction(model, pixels: torch.Tensor, args) -> float:
    """Search / encode per image when ``len(pixels)`` images share one pass over the bank."""
    bank = model.check_address_bank()
    embeds = encode_image(model, pixels)
    encode = measure_ms(lambda: encode_image(model, pixels), args.repeats)
    search = measure_ms(lambda: (embeds @ bank.t()).topk(min(TOP_K, bank.shape[0]), dim=-1), args.repeats)
    return search / encode


def measure_size(model, processor, pixel: torch.Tensor, texts: list[str], args) -> dict:
    """Bank build, bank path and zero-shot path at N = ``len(texts)`` candidate addresses."""
    count = len(texts)
    start = time.perf_counter()
    model.set_address_bank(texts, processor)
    build_s = time.perf_counter() - start
    bank = bank_stage_ms(model, pixel, args)
    zero_shot, extrapolated = zero_shot_ms(model, processor, pixel, texts, args)
    dim = model.address_bank_embeds.shape[1]
    return {
        "n": count,
        "bank_build_s": build_s,
        "bank_ms": bank["localize"],
        "encode_ms": bank["encode"],
        "search_ms": bank["search"],
        "zero_shot_ms": zero_shot,
        "zero_shot_extrapolated": extrapolated,
        "speedup": zero_shot / bank["localize"],
        "search_fraction": bank["search"] / bank["encode"],
        f"search_fraction_b{BATCH}": batched_search_fraction(model, images(processor, BATCH, seed=BATCH), args),
        "bank_bytes_fp32": count * dim * 4,
        "bank_bytes_fp16": count * dim * 2,
    }


def throughput(model, processor, batch_sizes: tuple[int, ...], args) -> dict[int, float]:
    """Images/s of ``model.localize`` with the current bank at each batch size."""
    out = {}
    for size in batch_sizes:
        pixels = images(processor, size, seed=size)
        out[size] = 1000 * size / measure_ms(lambda p=pixels: model.localize(p, top_k=TOP_K), args.repeats)
    return out


def goals(rows: list[dict], tiny: bool) -> dict:
    """The two goals, judged at N = 3,616 and 30,000 (tiny: at its middle and largest N, indicative only)."""
    by_n = {row["n"]: row for row in rows}
    speed_n = TINY_SIZES[1] if tiny else SIZES[1]
    search_n = TINY_SIZES[2] if tiny else SIZES[2]
    out = {}
    if speed_n in by_n:
        ratio = by_n[speed_n]["speedup"]
        out["speedup"] = {"n": speed_n, "ratio": ratio, "goal": SPEEDUP_GOAL, "met": ratio >= SPEEDUP_GOAL}
    if search_n in by_n:
        fraction = by_n[search_n]["search_fraction"]
        out["search_fraction"] = {"n": search_n, "ratio": fraction, "goal": SEARCH_GOAL, "met": fraction <= SEARCH_GOAL}
        batched = by_n[search_n][f"search_fraction_b{BATCH}"]
        out[f"search_fraction_b{BATCH}"] = {
            "n": search_n,
            "ratio": batched,
            "goal": SEARCH_GOAL,
            "met": batched <= SEARCH_GOAL,
        }
    return out


def _size_row(row: dict) -> str:
    star = "*" if row["zero_shot_extrapolated"] else ""
    fractions = f"{100 * row['search_fraction']:.2f}% ({100 * row[f'search_fraction_b{BATCH}']:.2f}%)"
    return (
        f"| {row['n']} | {row['bank_build_s']:.2f} | {row['bank_ms']:.3f} | {row['encode_ms']:.3f} | "
        f"{row['search_ms']:.4f} | {fractions} | {row['zero_shot_ms']:.1f}{star} | {row['speedup']:.0f}x | "
        f"{row['bank_bytes_fp32'] / 1024:.1f} KiB | {row['bank_bytes_fp16'] / 1024:.1f} KiB |"
    )


def _goal_line(name: str, goal: dict) -> str:
    if name == "speedup":
        shown, target = f"{goal['ratio']:.1f}x", f">= {goal['goal']:.0f}x"
    else:
        shown, target = f"{100 * goal['ratio']:.2f}%", f"<= {100 * goal['goal']:.0f}%"
    where = f"N={goal['n']}" + (f", {BATCH} images per bank pass" if name.endswith(f"_b{BATCH}") else ", batch 1")
    return f"goal {name} at {where}: {shown} (goal {target}) -> {'MET' if goal['met'] else 'NOT MET'}"


def format_report(result: dict) -> str:
    lines = [
        f"AddressCLIP inference: {result['model']}, D={result['embedding_dim']}, "
        f"{result['threads']} thread(s); ms per image at batch 1 (best of {result['repeats']})",
        "",
        f"| N addresses | bank build s | localize ms | encode ms | search ms | search/encode (b{BATCH}) "
        "| zero-shot ms | speed-up | bank fp32 | bank fp16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(_size_row(row) for row in result["sizes"]),
    ]
    if any(row["zero_shot_extrapolated"] for row in result["sizes"]):
        batches = result["text_batches"]
        lines.append(f"* zero-shot: the first {batches} text batch(es) timed, the rest extrapolated linearly")
    first = result["sizes"][0]
    lines.append(
        f"cross-check at N={first['n']}: transformers' zero-shot-image-classification pipeline "
        f"{first['pipeline_ms']:.1f} ms/image (with image preprocessing) vs {first['zero_shot_ms']:.1f} ms timed above"
    )
    per = result["bytes_per_address"]
    lines.append(f"\nbank memory per address: {per['fp32']} B fp32, {per['fp16']} B fp16")
    tput = ", ".join(f"batch {b}: {v:.1f}" for b, v in result["throughput"].items())
    lines.append(f"bank-path throughput (images/s, N={result['throughput_n']}): {tput}")
    lines += [_goal_line(name, goal) for name, goal in result["goals"].items()]
    last = result["sizes"][-1]
    per_prompt = (last["zero_shot_ms"] - last["encode_ms"]) / last["n"]
    lines.append(
        f"why: zero-shot/bank ~ 1 + N x (text encode per prompt {per_prompt:.3f} ms) / (image encode "
        f"{last['encode_ms']:.2f} ms), i.e. the ratio scales with N and the text/image encoder cost"
    )
    if result["tiny"]:
        lines.append("(tiny mode: small N and a tiny model, the goals are indicative only)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a saved AddressCLIP dir (default: random, demo size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="N values (default 128 3616 30000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best is kept)")
    parser.add_argument("--text-batch-size", type=int, default=256, help="zero-shot path: prompts per text batch")
    parser.add_argument("--text-batches", type=int, default=4, help="zero-shot path: text batches timed per N")
    parser.add_argument("--tiny", action="store_true", help="CI: tiny model, N = 16/64/256, 2 repetitions")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes = args.sizes or list(TINY_SIZES)
        args.repeats = min(args.repeats, 2)
    args.sizes = args.sizes or list(SIZES)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model, processor = load(args)
    pixel, own = images(processor, 1), model.address_bank
    rows = [measure_size(model, processor, pixel, candidates(own, n), args) for n in args.sizes]
    dim = int(model.address_bank_embeds.shape[1])
    result = {
        "model": str(args.model or ("random tiny model" if args.tiny else "random model, configs/demo.json size")),
        "tiny": args.tiny,
        "embedding_dim": dim,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "text_batches": args.text_batches,
        "sizes": rows,
        "bytes_per_address": {"fp32": dim * 4, "fp16": dim * 2},
        "throughput_n": rows[-1]["n"],
        "throughput": throughput(model, processor, (1, 8, 32), args),
        "goals": goals(rows, args.tiny),
    }
    smallest = rows[0]
    smallest["pipeline_ms"] = pipeline_ms(model, processor, candidates(own, smallest["n"]), args)
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
