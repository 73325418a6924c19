"""``addressclip`` command line: localize images, map address similarity, build the demo, train.

addressclip predict --model DIR [--top-k 5] [--json] [--errors raise|skip] IMAGE...
addressclip map --model DIR [--dataset DIR] [--split query] --query "Mannerheimintie" --out map.png
addressclip build-demo --output demo_city          (= python -m dataset_scripts.demo_city)
addressclip train configs/demo.json [--flags]       (= python train.py)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .address import Address

FORWARDED = {"build-demo": "python -m dataset_scripts.demo_city", "train": "train.py (accelerate-ready trainer)"}


def load_localizer(model_dir: str | Path, device: str | int | None = None):
    """The ``image-address-localization`` pipeline for a saved model directory, with this package's code."""
    from transformers import pipeline

    from .pipeline_addressclip import TASK, ImageAddressLocalizationPipeline

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
    from .pipeline_addressclip import ImageLoadError

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


# ----------------------------------------------------------------------------- map
def load_split(dataset: str | None, split: str):
    """One split of an IAL dataset directory (``save_to_disk`` or Hub-style), or of the demo city by default."""
    import datasets

    if dataset is None:
        from dataset_scripts.demo_city import load_demo_city

        return load_demo_city()[split]
    path = Path(dataset)
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))[split]
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset(str(path), split=split)


def query_similarity(localizer, rows, query: str, batch_size: int = 32) -> np.ndarray:
    """Cosine similarity of every image in ``rows`` to ``query`` (encoded once, with the address template)."""
    text = localizer.encode_addresses([query])[0]
    images = rows.select_columns(["image"])
    scores = [
        (localizer.embed_images(images[start : start + batch_size]["image"]) @ text).cpu().numpy()
        for start in range(0, len(rows), batch_size)
    ]
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def query_matches(rows, query: str) -> tuple[np.ndarray, str]:
    """Rows whose address, main street or neighborhood is ``query`` (case-insensitive), and which one matched."""
    keys = {query.strip().casefold()}
    with contextlib.suppress(ValueError):
        keys.add(Address.parse(query.strip()).format().casefold())
    for field, kind in (("address", "address"), ("main_street", "street"), ("neighborhood", "neighborhood")):
        mask = np.array([str(value).strip().casefold() in keys for value in rows[field]], dtype=bool)
        if mask.any():
            return mask, kind
    return np.zeros(len(rows), dtype=bool), "text"


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of (N, 2) points, counter-clockwise (Andrew's monotone chain)."""
    ordered = sorted({(float(x), float(y)) for x, y in points})
    if len(ordered) < 3:
        return np.array(ordered)

    def chain(sequence):
        out: list[tuple[float, float]] = []
        for p in sequence:
            while len(out) >= 2 and (
                (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0
            ):
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(chain(ordered) + chain(reversed(ordered)))


def extent_outlines(east: np.ndarray, north: np.ndarray, groups: list[str], radius: float) -> list[np.ndarray]:
    """One closed outline per sub-street (group): the hull of its image positions widened by ``radius`` metres."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    circle = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    outlines = []
    for group in sorted(set(groups)):
        members = np.array([g == group for g in groups])
        points = np.stack([east[members], north[members]], axis=1)
        hull = convex_hull((points[:, None, :] + circle[None]).reshape(-1, 2))
        outlines.append(np.vstack([hull, hull[:1]]))
    return outlines


def _draw_extent(ax, rows, east: np.ndarray, north: np.ndarray, mask: np.ndarray, kind: str) -> None:
    """Outline, in red, where the query really is: one widened hull per sub-street, or one for a neighborhood."""
    span = max(np.ptp(east), np.ptp(north), 1.0)
    groups = [str(a) for a in np.asarray(rows["address"], dtype=object)[mask]]
    if kind == "neighborhood":
        groups = [kind] * len(groups)
    for i, outline in enumerate(extent_outlines(east[mask], north[mask], groups, max(8.0, 0.012 * span))):
        label = "true extent of the query" if i == 0 else None
        ax.plot(outline[:, 0], outline[:, 1], color="red", lw=1.6, label=label)


def plot_similarity_map(
    rows, similarity: np.ndarray, query: str, out: Path, size: tuple[int, int] = (1000, 900)
) -> str:
    """Scatter the images at their UTM position, brighter = more similar; outline the query's true extent in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(rows) == 0:
        raise ValueError("the split has no images to map")
    east, north = np.asarray(rows["utm_east"], dtype=float), np.asarray(rows["utm_north"], dtype=float)
    mask, kind = query_matches(rows, query)
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax.set_facecolor("#2b2b2b")
    order = np.argsort(similarity)
    marker = max(4.0, min(40.0, 8000 / len(rows)))
    low, high = np.percentile(similarity, [2, 98]) if len(rows) > 1 else (similarity.min(), similarity.max() + 1e-6)
    dots = ax.scatter(east[order], north[order], c=similarity[order], cmap="inferno", vmin=low, vmax=high, s=marker)
    fig.colorbar(dots, ax=ax, fraction=0.04, label=f"cosine similarity to {query!r}")
    if mask.any():
        _draw_extent(ax, rows, east, north, mask, kind)
    best = int(np.argmax(similarity))
    ax.scatter(east[best], north[best], marker="*", s=260, c="cyan", edgecolors="black", label="most similar image")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_title(f"{query!r} ({kind} query): {int(mask.sum())} of {len(rows)} images are on it")
    ax.set_xlabel(f"UTM {rows[0]['utm_zone']} east (m)")
    ax.set_ylabel("north (m)")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return _summary(similarity, mask, kind, out)


def _summary(similarity: np.ndarray, mask: np.ndarray, kind: str, out: Path) -> str:
    if not mask.any():
        return f"no image matches the query as an address, street or neighborhood: no extent drawn; wrote {out}"
    inside = float(similarity[mask].mean())
    outside = float(similarity[~mask].mean()) if not mask.all() else float("nan")
    return f"{kind}: {int(mask.sum())} images, mean cosine {inside:.3f} on it vs {outside:.3f} elsewhere; wrote {out}"


def map_command(args: argparse.Namespace) -> int:
    """Plot every image's cosine similarity to ``args.query`` at its UTM position (paper Fig. 6)."""
    localizer = load_localizer(args.model, args.device)
    rows = load_split(args.dataset, args.split)
    similarity = query_similarity(localizer, rows, args.query, batch_size=args.batch_size)
    print(plot_similarity_map(rows, similarity, args.query, args.out, size=(args.width, args.height)))
    return 0


# ----------------------------------------------------------------------------- forwarding
def _load_train_module():
    """``train.py``: importable from the working directory, else beside this package (editable install)."""
    try:
        import train

        return train
    except ImportError:
        path = Path(__file__).resolve().parent.parent / "train.py"
        if not path.is_file():
            raise SystemExit("addressclip train: train.py not found (run from the repository root)") from None
        spec = importlib.util.spec_from_file_location("train", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def forward(command: str, argv: list[str]) -> int:
    """Run ``build-demo`` or ``train`` with the remaining arguments."""
    if command == "build-demo":
        from dataset_scripts.demo_city import main as build_main

        build_main(argv)
    else:
        _load_train_module().main(argv)
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
