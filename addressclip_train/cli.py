"""``addressclip`` command line: localize images, map address similarity, build the demo, train.

addressclip predict --model DIR [--top-k 5] [--json] [--errors raise|skip] IMAGE|FOLDER|GLOB...
addressclip predict --model DIR --output preds.jsonl|preds.csv [--num-workers N] FOLDER|GLOB...   (resumable;
    also under accelerate launch, sharded across processes into one file)
addressclip map --model DIR [--dataset DIR] [--split query] --query "Mannerheimintie" --out map.png
addressclip map --model DIR --image PHOTO [--top-k 5] --out map.png     (its top-k addresses on the streets)
addressclip demo --model DIR [--dataset DIR] [--port 7860] [--host 127.0.0.1]   (web app; needs addressclip[app])
addressclip build-demo --output demo_city          (= python -m dataset_scripts.demo_city)
addressclip train [RECIPE | --config RECIPE] [--flags]   (= python train.py; recipes: demo, tiny, pitts_ial, ...)

Heavy libraries (torch, transformers) are imported only by the command that needs them, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

FORWARDED = {
    "build-demo": "python -m dataset_scripts.demo_city",
    "train": "addressclip_train.train (HfArgumentParser + Trainer; recipes: demo, tiny, pitts_ial, sf_ial_base, ...)",
}


class CommandError(Exception):
    """A user error the CLI reports in one line (``addressclip <command>: <message>``), exit status 2."""


def check_model(model: str) -> None:
    """A local model directory must exist and hold ``config.json``; anything else must be a Hub id reachable now."""
    path = Path(model)
    if path.exists():
        if not (path / "config.json").is_file():
            raise CommandError(f"{model!r} is not a model directory (it has no config.json)")
        return
    offline = any(
        os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    if offline or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise CommandError(
            f"model directory {model!r} does not exist" + (" (and the Hub is offline)" if offline else "")
        )


def check_device(device: str | None) -> None:
    """``--device`` must name a device this torch build has (before any model is loaded)."""
    if device is None or device == "cpu":
        return
    import torch

    kind = device.split(":", 1)[0]
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if kind not in available:
        raise CommandError(f"unknown --device {device!r} (use cpu, cuda, cuda:N or mps)")
    if not available[kind]:
        raise CommandError(f"--device {device}: this machine's torch {torch.__version__} has no {kind.upper()} device")


def load_localizer(model_dir: str | Path, device: str | int | None = None):
    """The ``image-address-localization`` pipeline for a saved model directory, with this package's code."""
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from modeling_addressclip.pipeline_addressclip import TASK, ImageAddressLocalizationPipeline

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command
    try:
        return pipeline(TASK, model=str(model_dir), pipeline_class=ImageAddressLocalizationPipeline, device=device)
    except (OSError, ValueError) as err:
        raise CommandError(f"cannot load the model {str(model_dir)!r}: {str(err).splitlines()[0]}") from None


# ----------------------------------------------------------------------------- predict
def format_table(image: str, result: list[dict[str, Any]] | dict[str, str]) -> str:
    """A readable block for one image: its ranked addresses, or its error."""
    lines = [str(image)]
    if isinstance(result, dict):
        return "\n".join([*lines, f"  error: {result['error']}"])
    if not result:
        return "\n".join([*lines, "  no confident address (best score below --min-score; --min-score 0 answers)"])
    lines.append(f"  {'#':>2}  {'score':>6}  {'cosine':>7}  {'latitude':>11}  {'longitude':>11}  address")
    for rank, row in enumerate(result, start=1):
        where = "  ".join(_coordinate(row.get(key)) for key in ("latitude", "longitude"))
        lines.append(f"  {rank:>2}  {row['score']:6.3f}  {row['similarity']:7.3f}  {where}  {row['address']}")
    return "\n".join(lines)


def _coordinate(value: float | None) -> str:
    """A latitude/longitude column cell: blank when the address's place is unknown."""
    return f"{value:11.6f}" if value is not None else " " * 11


def predict(args: argparse.Namespace) -> int:
    """Localize ``args.images`` (files, folders, globs); print a table (or JSON), or stream records to --output.
    Exit status 1 if an image fails with --errors raise (or, with --output, if no image could be read)."""
    from addressclip_train.predict_folder import collect_images
    from modeling_addressclip.image_utils import ImageLoadError

    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.output is not None:
        return predict_folder(args)
    try:
        args.images = collect_images(args.images)
    except ValueError as err:
        raise CommandError(str(err)) from None
    localizer = load_localizer(args.model, args.device)
    try:
        results = localizer(
            list(args.images),
            top_k=args.top_k,
            errors=args.errors,
            batch_size=args.batch_size or 8,
            min_score=args.min_score,
        )
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


def predict_folder(args: argparse.Namespace) -> int:
    """``--output FILE``: every image of the folders/globs as one record per line, resumable; under ``accelerate
    launch`` each process takes its shard and the main process writes the one file."""
    from accelerate import Accelerator

    from addressclip_train import predict_folder as engine

    output = args.output.expanduser()
    try:
        engine.output_format(output)
    except ValueError as err:
        raise CommandError(str(err)) from None
    if not output.parent.is_dir():
        raise CommandError(f"--output {str(args.output)!r}: folder {str(output.parent)!r} does not exist")
    if args.num_workers is not None and args.num_workers < 0:
        raise CommandError(f"--num-workers must be >= 0, got {args.num_workers}")
    import torch

    accelerator = Accelerator(cpu=args.device == "cpu" or not torch.cuda.is_available())
    localizer = load_localizer(args.model, engine.localizer_device(accelerator, args.device))
    workers = engine.default_workers() if args.num_workers is None else args.num_workers
    try:
        summary = engine.predict_to_file(
            localizer, accelerator, list(args.images), output, top_k=args.top_k, min_score=args.min_score,
            batch_size=args.batch_size or 32, num_workers=workers, progress=not args.no_progress,
        )  # fmt: skip
    except ValueError as err:  # a source that matches nothing, an output that is not this command's
        raise CommandError(str(err)) from None
    if accelerator.is_main_process:
        print(summary.line(output), file=sys.stderr)
        report = engine.error_report(summary, output)
        if report:
            print(report, file=sys.stderr)
    return 1 if summary.failed and not summary.answered and not summary.skipped else 0


def map_command(args: argparse.Namespace) -> int:
    """``--query``: every image's cosine similarity to a text at its position (paper Fig. 6); ``--image``: a photo's
    top-k addresses at their places. Both over the streets of the model's places (else of the dataset's images)."""
    if args.query is not None and args.image is not None:
        raise CommandError("--image and --query are two kinds of map: give one of them, not both")
    if args.query is None and args.image is None:
        raise CommandError("give --query TEXT (the similarity map) or --image PHOTO (its top addresses)")
    if args.image is not None and not args.image.expanduser().is_file():
        raise CommandError(f"--image {str(args.image)!r} is not a file")
    out = args.out.expanduser()
    if not out.parent.is_dir():
        raise CommandError(f"--out {str(args.out)!r}: folder {str(out.parent)!r} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise CommandError(f"--out {str(args.out)!r}: folder {str(out.parent)!r} is not writable")
    localizer = load_localizer(args.model, args.device)
    return (image_map if args.image is not None else query_map)(args, localizer, out)


def query_map(args: argparse.Namespace, localizer, out: Path) -> int:
    """The similarity map of ``args.query`` over one split, on the streets."""
    from addressclip_train.places import street_map
    from addressclip_train.similarity_map import load_split, plot_similarity_map, query_similarity

    rows = load_split(args.dataset, args.split)
    similarity = query_similarity(localizer, rows, args.query, batch_size=args.batch_size, progress=True)
    streets = street_map(localizer.model, [rows])
    print(plot_similarity_map(rows, similarity, args.query, out, size=(args.width, args.height), streets=streets))
    return 0


def image_map(args: argparse.Namespace, localizer, out: Path) -> int:
    """The photo's top-k addresses, coloured by rank at their places (the best a star), on the streets."""
    from addressclip_train.places import has_places, street_map
    from addressclip_train.similarity_map import load_splits
    from addressclip_train.web_map import CityMap
    from modeling_addressclip.image_utils import ImageLoadError

    splits = None
    if not has_places(localizer.model.address_places):
        if args.dataset is None:
            raise CommandError(
                "this model's address bank has no places (its data had no coordinates, or it predates them): "
                "pass --dataset DIR to draw the streets from the dataset's image positions"
            )
        splits = list(load_splits(args.dataset).values())
    streets = street_map(localizer.model, splits)
    try:
        predictions = localizer(str(args.image.expanduser()), top_k=args.top_k, min_score=args.min_score)
    except ImageLoadError as err:
        print(f"addressclip map: {err}", file=sys.stderr)
        return 1
    title = f"Where {args.image.name} was taken: its top {args.top_k} addresses"
    CityMap(streets, size=(args.width, args.height), title=title).render(predictions).save(out, format="PNG")
    print(_image_map_summary(args.image, predictions, len(streets.lines), out))
    return 0


def _image_map_summary(image: Path, predictions: list[dict[str, Any]], streets: int, out: Path) -> str:
    if not predictions:
        return f"{image}: no confident address (--min-score 0 answers); drew {streets} streets; wrote {out}"
    best = predictions[0]
    where = "no known place"
    if best.get("latitude") is not None:
        where = f"at {best['latitude']:.6f}, {best['longitude']:.6f}"
    return (
        f"{image}: 1. {best['address']} (score {best['score']:.3f}) {where}; "
        f"{len(predictions)} ranked address{'es' * (len(predictions) != 1)} on {streets} streets; wrote {out}"
    )


def demo_command(args: argparse.Namespace) -> int:
    """Serve the web demo (gradio) for ``args.model``: localhost by default, no tunnel unless ``--share``."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise CommandError('the web demo needs gradio: pip install "addressclip[app]"')
    if args.dataset is not None and not Path(args.dataset).exists():
        raise CommandError(f"--dataset {args.dataset!r} does not exist")
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise CommandError(f"--min-score must be in [0, 1], got {args.min_score}")
    from addressclip_train.web_demo import build_demo, launch

    try:
        demo = build_demo(
            args.model, args.dataset, args.split, top_k=args.top_k, min_score=args.min_score, device=args.device
        )
    except ValueError as err:  # a dataset without the IAL splits or columns
        raise CommandError(f"--dataset {args.dataset!r}: {str(err).splitlines()[0]}") from None
    try:
        launch(demo, host=args.host, port=args.port, share=args.share)
    except OSError as err:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {str(err).splitlines()[0]}") from None
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
    predict_parser.add_argument("--batch-size", type=int, default=None, help="images per encode (8; --output: 32)")
    predict_parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: first accelerator)")
    predict_parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="answer only addresses scoring at least this (default: the model's calibrated abstain threshold)",
    )
    predict_parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="stream one record per image to FILE.jsonl or FILE.csv (resumable: images already in it are skipped)",
    )
    predict_parser.add_argument(
        "--num-workers", type=int, default=None, help="--output: DataLoader worker processes (default min(4, CPUs))"
    )
    predict_parser.add_argument("--no-progress", action="store_true", help="--output: no progress bar")
    predict_parser.add_argument(
        "images", nargs="+", help="image files, folders (recursive) or globs such as 'photos/**/*.jpg'"
    )
    map_parser = commands.add_parser(
        "map", help="a photo's top addresses on the streets (--image), or every image's similarity to a text (--query)"
    )
    map_parser.add_argument("--model", required=True, help="saved model directory (with its processor)")
    map_parser.add_argument(
        "--dataset",
        default=None,
        help="IAL dataset directory (--query: default the demo city; --image: only for a model without places)",
    )
    map_parser.add_argument("--split", default="query", help="--query: the split whose images are mapped")
    map_parser.add_argument("--query", default=None, help="an address, a street or a neighborhood")
    map_parser.add_argument("--image", default=None, type=Path, help="a photo: draw its top-k addresses")
    map_parser.add_argument("--top-k", type=int, default=5, help="--image: how many ranked addresses to draw")
    map_parser.add_argument(
        "--min-score", type=float, default=None, help="--image: as for predict (default: the model's threshold)"
    )
    map_parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    map_parser.add_argument("--width", type=int, default=1000, help="image width in pixels")
    map_parser.add_argument("--height", type=int, default=900, help="image height in pixels")
    map_parser.add_argument("--batch-size", type=int, default=32)
    map_parser.add_argument("--device", default=None)
    demo_parser = commands.add_parser("demo", help="web app: drop a photo, see its addresses on the city map")
    demo_parser.add_argument("--model", required=True, help="saved model directory or Hub id")
    demo_parser.add_argument("--dataset", default=None, help="IAL dataset directory (default: the demo city, if built)")
    demo_parser.add_argument("--split", default="query", help="split for the examples and the similarity map")
    demo_parser.add_argument("--top-k", type=int, default=5)
    demo_parser.add_argument("--min-score", type=float, default=None, help="default: the model's abstain threshold")
    demo_parser.add_argument("--port", type=int, default=7860)
    demo_parser.add_argument("--host", default="127.0.0.1", help="address to bind (other than localhost: a warning)")
    demo_parser.add_argument("--share", action="store_true", help="also open a public gradio.live tunnel")
    demo_parser.add_argument("--device", default=None)
    for name, target in FORWARDED.items():
        commands.add_parser(name, help=f"forwards its arguments to {target}", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``addressclip`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        return forward(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "top_k", 1) < 1:
        parser.error("--top-k must be >= 1")
    try:
        check_model(args.model)
        check_device(args.device)
        return {"predict": predict, "map": map_command, "demo": demo_command}[args.command](args)
    except CommandError as err:
        print(f"addressclip {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
