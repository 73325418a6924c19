"""What a Hub user gets from a trained model: zero-shot template top-1, and abstention on and off the city.

    python -m benchmarks.hub_surface --model outputs/demo [--every 4] [--json out.json]

1. ``zero-shot-image-classification`` on query images with the bank's addresses as labels: transformers'
   own pipeline class with its default template ("This is a photo of {}.") against the saved directory's
   pipeline (``trust_remote_code=True``: the address template by default), top-1 against the reference.
2. Abstention at the model's ``config.abstain_threshold``: the share of query photos answered and their
   SSA@1, and whether images that are not street views (flat grey, noise, a drawn face) are answered.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from transformers import ZeroShotImageClassificationPipeline, pipeline

from addressclip_train.similarity_map import load_split
from modeling_addressclip.data import undecoded_images
from modeling_addressclip.image_utils import draft_size, load_image


def not_street_views(size: int = 224) -> dict[str, Image.Image]:
    """Images no street-view model should place: flat grey, uniform noise, a drawn face."""
    face = Image.new("RGB", (size, size), (235, 205, 180))
    draw = ImageDraw.Draw(face)
    draw.ellipse((size * 0.2, size * 0.1, size * 0.8, size * 0.9), fill=(225, 180, 150), outline=(90, 60, 40))
    for x in (0.38, 0.62):
        draw.ellipse((size * (x - 0.05), size * 0.38, size * (x + 0.05), size * 0.46), fill=(40, 30, 30))
    draw.arc((size * 0.38, size * 0.55, size * 0.62, size * 0.72), 20, 160, fill=(120, 40, 40), width=4)
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return {"flat grey": Image.new("RGB", (size, size), (128, 128, 128)), "noise": Image.fromarray(noise), "face": face}


def zero_shot_top1(model: str, images: list, references: list[str], labels: list[str]) -> dict[str, float]:
    """Top-1 accuracy of transformers' default-template pipeline and of the directory's own one."""
    task = "zero-shot-image-classification"
    default = pipeline(task, model=model, pipeline_class=ZeroShotImageClassificationPipeline)
    own = pipeline(task, model=model, trust_remote_code=True)
    images = [load_image(image, draft=draft_size(own.image_processor)) for image in images]  # same pixels for both
    result = {}
    for name, classifier in (("transformers default template", default), ("saved directory's pipeline", own)):
        start = time.perf_counter()
        hits = [classifier(img, candidate_labels=labels)[0]["label"] == ref for img, ref in zip(images, references)]
        result[name] = float(np.mean(hits))
        result[f"{name} seconds"] = round(time.perf_counter() - start, 1)
    return result


def abstention(model: str, images: list, references: list[str]) -> dict[str, object]:
    """Coverage and answered SSA@1 at the model's threshold, and what happens to non-street images."""
    localizer = pipeline("image-address-localization", model=model, trust_remote_code=True)
    threshold = localizer.model.config.abstain_threshold or 0.0
    top = [answer[0] for answer in localizer(images, top_k=1, min_score=0)]
    answered = np.array([t["score"] >= threshold for t in top])
    correct = np.array([t["address"] == ref for t, ref in zip(top, references)])
    others = {}
    for name, image in not_street_views().items():
        best = localizer(image, top_k=1, min_score=0)[0]
        others[name] = {"top-1 score": round(best["score"], 4), "answered": best["score"] >= threshold}
    return {
        "threshold": threshold,
        "coverage": float(answered.mean()),
        "ssa@1 of answered": float(correct[answered].mean()) if answered.any() else float("nan"),
        "ssa@1 always answering": float(correct.mean()),
        "not street views": others,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained AddressCLIP directory")
    parser.add_argument("--dataset", default=None, help="IAL dataset directory (default: the demo city)")
    parser.add_argument("--every", type=int, default=4, help="use every N-th query image")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    query = load_split(args.dataset, "query")
    rows = undecoded_images(query).select(range(0, len(query), args.every))
    images, references = [row["image"] for row in rows], list(rows["address"])
    labels = sorted(set(references))
    result = {
        "query images": len(images),
        "labels": len(labels),
        "zero-shot top-1": zero_shot_top1(args.model, images, references, labels),
        "abstention": abstention(args.model, images, references),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
