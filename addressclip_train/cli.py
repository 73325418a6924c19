"""``addressclip`` command line: localize images, map address similarity, build the demo, train.

addressclip predict --model DIR [--top-k 5] [--json] [--errors raise|skip] IMAGE...
addressclip map --model DIR [--dataset DIR] [--split query] --query "Mannerheimintie" --out map.png
addressclip build-demo --output demo_city          (= python -m dataset_scripts.demo_city)
addressclip train [RECIPE | --config RECIPE] [--flags]   (= python train.py; recipes: demo, tiny, pitts_ial, ...)

Heavy libraries (torch, transformers) are imported only by the command that needs them, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FORWARDED = {
    "build-demo": "python -m dataset_scripts.demo_city",
    "train": "addressclip_train.train (HfArgumentParser + Trainer; recipes: demo, tiny, pitts_ial, sf_ial_base, ...)",
}


def load_localizer(model_dir: str | Path, device: str | int | None = None):
    """The ``image-address-localization`` pipeline for a saved model directory, with this package's code."""
    from transformers import pipeline

    from modeling_addressclip.pipeline_addressclip import TASK, ImageAddressLocalizationPipeline

    return pipeline(TASK, model=str(model_dir), pipeline_class=ImageAddressLocalizationPipeline, device=device)


# ----------------------------------------------------------------------------- predict
def format_table(image: str, result: list[dict[str, Any]] | dict[str, str]) -> str:
    """A readable block for one image: its ranked addresses, or its error."""
    lines = [str(image)]
    if isinstance(result, dict):
        return "\n".join([*lines, f"  error: {result['error']}"])
    lines.append(f"  {'#':>2}  {'score':>6}  {'cosine':>7}  address")
    for rank, row in enumerate(result, start=1):
        lines.append(f"  {rank:>2}  {row['score']:6.3f}  {row['similarity']:7.3f}  {row['address']}")
    return "\n".join(lines)


def predict(args: argparse.Namespace) -> int:
    """Localize ``args.images``; print a table (or JSON). Exit status 1 if an image fails with --errors raise."""
    from modeling_addressclip.image_utils import ImageLoadError

    localizer = load_localizer(args.model, args.device)
    try:
        results = localizer(list(args.images), top_k=args.top_k, errors=args.errors, batch_size=args.batch_size)
    except ImageLoadError as err:
        print(f"addressclip predict: {err} (use --errors skip to answer the other images)", file=sys.stderr)
        return 1
    if args.json:
        records = [
            {"image": image, **(result if isinstance(result, dict) else {"predictions": result})}
            for image, result in zip(args.images, results)
        ]
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(format_table(image, result) for image, result in zip(args.images, results)))
    return 0


def map_command(args: argparse.Namespace) -> int:
    """Plot every image's cosine similarity to ``args.query`` at its UTM position (paper Fig. 6)."""
    from addressclip_train.similarity_map import load_split, plot_similarity_map, query_similarity

    localizer = load_localizer(args.model, args.device)
    rows = load_split(args.dataset, args.split)
    similarity = query_similarity(localizer, rows, args.query, batch_size=args.batch_size)
    print(plot_similarity_map(rows, similarity, args.query, args.out, size=(args.width, args.height)))
    return 0


# ----------------------------------------------------------------------------- forwarding
def forward(command: str, argv: list[str]) -> int:
    """Run ``build-demo`` or ``train`` with the remaining arguments."""
    if command == "build-demo":
        from dataset_scripts.demo_city import main as build_main

        build_main(argv)
    else:
        from addressclip_train.train import main as train_main

        train_main(argv)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="addressclip", description="AddressCLIP: image address localization.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict_parser = commands.add_parser("predict", help="top-k addresses for images")
    predict_parser.add_argument("--model", required=True, help="saved model directory (with its processor)")
    predict_parser.add_argument("--top-k", type=int, default=5)
    predict_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict_parser.add_argument("--errors", choices=("raise", "skip"), default="raise", help="on an unreadable image")
    predict_parser.add_argument("--batch-size", type=int, default=8)
    predict_parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: first accelerator)")
    predict_parser.add_argument("images", nargs="+", help="image files")
    map_parser = commands.add_parser("map", help="similarity of every image in a split to a text, on the map")
    map_parser.add_argument("--model", required=True, help="saved model directory (with its processor)")
    map_parser.add_argument("--dataset", default=None, help="IAL dataset directory (default: the demo city)")
    map_parser.add_argument("--split", default="query")
    map_parser.add_argument("--query", required=True, help="an address, a street or a neighborhood")
    map_parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    map_parser.add_argument("--width", type=int, default=1000, help="image width in pixels")
    map_parser.add_argument("--height", type=int, default=900, help="image height in pixels")
    map_parser.add_argument("--batch-size", type=int, default=32)
    map_parser.add_argument("--device", default=None)
    for name, target in FORWARDED.items():
        commands.add_parser(name, help=f"forwards its arguments to {target}", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``addressclip`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        return forward(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "top_k", 1) < 1:
        build_parser().error("--top-k must be >= 1")
    return predict(args) if args.command == "predict" else map_command(args)


if __name__ == "__main__":
    sys.exit(main())
