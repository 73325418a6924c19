"""The embedded demo IAL dataset: central Helsinki's streets (OSM) + rendered street views.

Camera positions every ~10 m along every sub-street of at least 50 m, four views each
(ahead, right, behind, left of the street direction, stored as compass headings); each
position is one ``location_id``; the paper's 7:2:1 split by location (§5.1)::

    python -m dataset_scripts.demo_city --output demo_city --plot-map map.png --plot-samples views.png

``load_demo_city()`` builds once into a cache and reuses it. Data © OpenStreetMap
contributors, ODbL 1.0.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.schema import SPLITS, encode_image, split_by_location, write_hub_dataset
from dataset_scripts.street_view import AppearanceField, Camera, caption_for, render_view, stable_seed, street_style
from modeling_addressclip.geo import utm_to_latlon

VERSION = "4"  # bump when the rendering changes: cached builds are keyed by it
DEFAULT_IMAGE_SIZE = 96  # stored at the demo model's input size: no resize per training step
SPACING_M, MIN_LENGTH_M = 10.0, 50.0
VIEWS = ((0.0, "ahead"), (90.0, "right"), (180.0, "behind"), (270.0, "left"))
NN_PIXELS = 16


@dataclass(frozen=True)
class ViewPlan:
    """One image to render: where, which way, and its labels."""

    camera: Camera
    address: object  # modeling_addressclip.address.Address
    location_id: str
    east: float
    north: float
    heading: float


@dataclass
class BuildReport:
    """What a build produced (also written into the dataset card)."""

    output: Path
    images: dict[str, int]
    locations: dict[str, int]
    addresses: dict[str, int]
    moved_to_train: int
    nn_ssa1: float
    nn_sa1: float
    seconds: float
    render_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def default_cache_dir(seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE, max_addresses: int | None = None) -> Path:
    """``$ADDRESSCLIP_CACHE`` or ``~/.cache/addressclip``, + ``demo_city-<version>-<seed>-<size>[-<n>addr]``."""
    root = Path(os.environ.get("ADDRESSCLIP_CACHE", Path.home() / ".cache" / "addressclip")).expanduser()
    return root / _cache_name(seed, image_size, max_addresses)


def _cache_name(seed: int, image_size: int, max_addresses: int | None) -> str:
    subset = f"-{max_addresses}addr" if max_addresses else ""
    return f"demo_city-{VERSION}-{seed}-{image_size}{subset}"


def _bearing(line, s: float, zone: str) -> float:
    """Compass bearing (degrees from true north) of ``line`` at ``s`` metres along it."""
    a, b = line.interpolate(max(s - 2.0, 0.0)), line.interpolate(min(s + 2.0, line.length))
    lat, lon = utm_to_latlon([a.x, b.x], [a.y, b.y], zone)
    d_east = (lon[1] - lon[0]) * math.cos(math.radians(lat[0]))
    return math.degrees(math.atan2(d_east, lat[1] - lat[0])) % 360.0


def select_sub_streets(partition, max_addresses: int | None = None) -> list[tuple[int, object]]:
    """(index, sub-street) of sub-streets >= 50 m; ``max_addresses`` keeps the first addresses by text."""
    chosen = [(i, sub) for i, sub in enumerate(partition.sub_streets) if sub.length_m >= MIN_LENGTH_M]
    if max_addresses is not None:
        keep = sorted({sub.address.format() for _, sub in chosen})[:max_addresses]
        chosen = [(i, sub) for i, sub in chosen if sub.address.format() in keep]
    return chosen


def plan_views(partition, seed: int = 0, max_addresses: int | None = None) -> list[ViewPlan]:
    """Camera positions every ~10 m along each chosen sub-street, four views each."""
    plans = []
    for index, sub in select_sub_streets(partition, max_addresses):
        style = street_style(sub.address.main_street, sub.highway, sub.tags)
        count = max(1, round(sub.length_m / SPACING_M))
        for k in range(count):
            s = (k + 0.5) * sub.length_m / count
            point, bearing = sub.line.interpolate(s), _bearing(sub.line, s, partition.utm_zone)
            location = f"hel-{index:04d}-{k:03d}"
            for relative, view in VIEWS:
                camera = Camera(sub.address.main_street, sub.address.format(), style, sub.line, float(s), view,
                                stable_seed("view", seed, location, view))  # fmt: skip
                heading = (bearing + relative) % 360.0
                plans.append(ViewPlan(camera, sub.address, location, point.x, point.y, heading))
    return plans


_FIELD: AppearanceField | None = None


def _init_worker(seed: int) -> None:
    global _FIELD
    _FIELD = AppearanceField(seed)


def _render_one(task: tuple[Camera, int]) -> tuple[bytes, str, np.ndarray]:
    """Worker: JPEG bytes, caption, and a tiny grey thumbnail for the NN-pixel baseline."""
    camera, size = task
    image, scene = render_view(camera, _FIELD, size)
    quality = 60 + camera.seed % 31
    thumb = np.asarray(image.resize((NN_PIXELS, NN_PIXELS), Image.BILINEAR), np.float32).ravel()
    return encode_image(image, "JPEG", quality)["bytes"], caption_for(scene), thumb


def render_all(plans: Sequence[ViewPlan], seed: int, image_size: int, workers: int | None = None):
    """Render every plan (process pool, order preserved): lists of JPEG bytes, captions, thumbnails."""
    tasks = [(plan.camera, image_size) for plan in plans]
    workers = workers or min(os.cpu_count() or 1, 8)
    bar = dict(total=len(tasks), desc="rendering street views", unit="img")
    if workers <= 1 or len(tasks) < 64:
        _init_worker(seed)
        results = [_render_one(task) for task in tqdm(tasks, **bar)]
    else:
        context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with context.Pool(workers, _init_worker, (seed,)) as pool:
            results = list(tqdm(pool.imap(_render_one, tasks, chunksize=32), **bar))
    images, captions, thumbs = zip(*results) if results else ((), (), ())
    return list(images), list(captions), np.stack(thumbs) if thumbs else np.zeros((0, 3 * NN_PIXELS**2))


def nn_pixel_baseline(thumbs: np.ndarray, addresses: Sequence, splits: Sequence[str]) -> tuple[float, float]:
    """SSA@1 and SA@1 of 1-NN on normalised raw downsampled pixels, query vs train."""
    x = thumbs - thumbs.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
    split = np.asarray(splits)
    train, query = np.flatnonzero(split == "train"), np.flatnonzero(split == "query")
    if len(train) == 0 or len(query) == 0:
        return float("nan"), float("nan")
    nearest = train[np.argmax(x[query] @ x[train].T, axis=1)]
    ssa = np.mean([addresses[q] == addresses[n] for q, n in zip(query, nearest)])
    sa = np.mean([addresses[q].street_key == addresses[n].street_key for q, n in zip(query, nearest)])
    return float(ssa), float(sa)


def _row(plan: ViewPlan, zone: str, lat: float, lon: float, image: bytes, caption: str) -> dict:
    address = plan.address
    return {
        "image": {"bytes": image, "path": None}, "address": address.format(), "main_street": address.main_street,
        "cross_streets": list(address.cross_streets), "neighborhood": address.neighborhood, "caption": caption,
        "latitude": float(lat), "longitude": float(lon), "utm_east": float(plan.east), "utm_north": float(plan.north),
        "utm_zone": zone, "location_id": plan.location_id, "heading": float(np.float32(plan.heading)) % 360.0,
    }  # fmt: skip


def _counts(rows_by_split: dict[str, list[dict]], key: str) -> dict[str, int]:
    return {split: len({row[key] for row in rows}) for split, rows in rows_by_split.items()}


def card_body(report: BuildReport, seed: int, image_size: int, attribution: str) -> str:
    """The dataset card text (below the YAML): what, how, statistics, baseline, license."""
    table = "\n".join(f"| {s} | {report.images[s]} | {report.locations[s]} | {report.addresses[s]} |" for s in SPLITS)
    return f"""# AddressCLIP demo city: central Helsinki (image address localization)

A small image-address-localization (IAL) dataset in the schema of Pitts-IAL / SF-IAL
(AddressCLIP, ECCV 2024), built offline in minutes from a shipped OpenStreetMap extract
of central Helsinki. The street network and addresses are real; the **images are
procedurally rendered** stylised street views (no photographs), with BLIP-style scene
captions describing what was drawn (never a street name).

## How it was built
- Semantic address partition of the OSM streets (`dataset_scripts/osm.py`): each street is
  cut at its junctions into sub-streets addressed "Main between Cross A and Cross B, Neighborhood".
- Camera positions every ~{SPACING_M:g} m along every sub-street of at least {MIN_LENGTH_M:g} m; four views
  per position (ahead, right, behind, left of the street; `heading` is the compass angle).
- What a view shows depends on the street (OSM `highway`, `lanes`, `width`, `tram`; its paving), the
  block (each sub-street's palette shift, storeys, window rhythm and awning colour), a smooth random
  appearance field over UTM coordinates (facade colours, storeys, window rhythm at 150-400 m scale),
  each building's own variation, the heading, and per-image nuisance (weather, light, camera jitter,
  cars, pedestrians, JPEG noise).
- Split 7:2:1 by location into train / database / query (paper §5.1); {report.moved_to_train} locations were moved
  to train so that every database/query address also occurs in train.
- Seed {seed}, images {image_size}x{image_size} JPEG, builder version {VERSION}; build time {report.seconds:.1f} s.

## Statistics
| split | images | locations | addresses |
|---|---|---|---|
{table}

## Baseline
Nearest neighbour on raw {NN_PIXELS}x{NN_PIXELS} RGB pixels (query vs train):
SSA@1 = {100 * report.nn_ssa1:.1f}%, SA@1 = {100 * report.nn_sa1:.1f}%.

## Usage
```python
from datasets import load_dataset
ds = load_dataset("path/to/this/directory")  # splits: train, database, query
```

## License
The addresses and coordinates are derived from OpenStreetMap data and are licensed under the
Open Database License (ODbL) 1.0: {attribution}.
"""


def build_demo_city(
    output: str | os.PathLike,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    max_addresses: int | None = None,
    pbf: str | os.PathLike | None = None,
    sha256: str | None = "default",
    partition=None,
    workers: int | None = None,
) -> BuildReport:
    """Build the Hub-ready demo dataset directory at ``output``; returns the build report.

    ``pbf`` defaults to the shipped Helsinki extract, checked against ``sha256`` (the shipped
    checksum by default; None skips it) before anything is written. ``partition`` skips OSM.
    """
    start = time.perf_counter()
    from dataset_scripts import osm

    if partition is None:
        pbf = Path(pbf or osm.HELSINKI_PBF)
        osm.verify_extract(pbf, osm.HELSINKI_SHA256 if sha256 == "default" else sha256)
        partition = osm.partition_streets(pbf)
    plans = plan_views(partition, seed, max_addresses)
    if not plans:
        raise ValueError("the partition has no sub-street of at least 50 m: nothing to render")
    assigned = split_by_location([p.location_id for p in plans], [p.address.format() for p in plans], seed=seed)
    render_start = time.perf_counter()
    images, captions, thumbs = render_all(plans, seed, image_size, workers)
    render_seconds = time.perf_counter() - render_start
    lat, lon = utm_to_latlon([p.east for p in plans], [p.north for p in plans], partition.utm_zone)
    splits = [assigned.assignment[p.location_id] for p in plans]
    rows = {s: [] for s in SPLITS}
    for i, plan in enumerate(plans):
        rows[splits[i]].append(_row(plan, partition.utm_zone, lat[i], lon[i], images[i], captions[i]))
    ssa, sa = nn_pixel_baseline(thumbs, [p.address for p in plans], splits)
    report = BuildReport(Path(output), {s: len(r) for s, r in rows.items()}, _counts(rows, "location_id"),
                         _counts(rows, "address"), assigned.moved_to_train, ssa, sa, 0.0, render_seconds)  # fmt: skip
    report.seconds = time.perf_counter() - start
    body = card_body(report, seed, image_size, osm.OSM_ATTRIBUTION)
    report.output = write_hub_dataset(
        output, {s: (lambda r=r: iter(r)) for s, r in rows.items()}, body, license="odbl",
        pretty_name="AddressCLIP demo city (central Helsinki)", task_categories=["zero-shot-image-classification"],
        tags=["image-address-localization", "openstreetmap", "synthetic"], language=["en"],
    )  # fmt: skip
    report.seconds = time.perf_counter() - start
    report.extra["plans"] = plans
    report.extra["partition"] = partition
    return report


def load_demo_city(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    max_addresses: int | None = None,
):
    """The demo ``DatasetDict`` (train/database/query); built once into the cache, then reused.

    ``max_addresses`` builds (and caches separately) a subset with only that many addresses.
    """
    import datasets

    name = _cache_name(seed, image_size, max_addresses)
    directory = Path(cache_dir) / name if cache_dir else default_cache_dir(seed, image_size, max_addresses)
    # A private datasets cache per build, beside it (not inside: the directory is what a user uploads), and
    # emptied on every rebuild, since datasets' default cache key does not see a rebuild at one path.
    arrow_cache = directory.parent / ".hf_datasets_cache" / directory.name
    if not (directory / "README.md").is_file():
        shutil.rmtree(arrow_cache, ignore_errors=True)
        build_demo_city(directory, seed=seed, image_size=image_size, max_addresses=max_addresses)
    return datasets.load_dataset(str(directory), cache_dir=str(arrow_cache))


def plot_map(report: BuildReport, path: str | os.PathLike) -> None:
    """Sub-streets in distinct colours, camera positions, neighborhood labels (like paper Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    partition, plans = report.extra["partition"], report.extra["plans"]
    fig, ax = plt.subplots(figsize=(9, 11))
    colours = plt.get_cmap("tab20")
    for sub in partition.sub_streets:
        x, y = sub.line.xy
        ax.plot(x, y, color=colours(stable_seed(sub.address.format()) % 20), lw=2.5 if sub.length_m >= 50 else 0.8)
    points = np.array([(p.east, p.north) for p in plans[::4]])
    ax.scatter(points[:, 0], points[:, 1], s=2, c="black", zorder=3, label="camera positions (4 views each)")
    for name, (east, north) in partition.neighborhoods.items():
        ax.annotate(name, (east, north), fontsize=11, weight="bold", ha="center", color="#333")
    ax.set_aspect("equal")
    ax.set_title(f"Demo city: {len({p.address for p in plans})} addresses, {len(plans)} views")
    ax.set_xlabel(f"UTM {partition.utm_zone} east (m)")
    ax.set_ylabel("north (m)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(directory: str | os.PathLike, path: str | os.PathLike, count: int = 16, seed: int = 0) -> None:
    """Contact sheet of query views with their address and caption."""
    import textwrap

    import datasets
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    query = datasets.load_dataset(str(directory), split="query", download_mode="force_redownload")
    picks = np.random.default_rng(seed).choice(len(query), size=min(count, len(query)), replace=False)
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(picks) / cols), cols, figsize=(4 * cols, 4.6 * math.ceil(len(picks) / cols)))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, index in zip(np.atleast_1d(axes).ravel(), picks):
        row = query[int(index)]
        ax.imshow(row["image"])
        text = textwrap.fill(row["address"], 44) + "\n" + textwrap.fill(row["caption"], 52)
        ax.set_title(f"{text}\nheading {row['heading']:.0f}°", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> BuildReport:
    parser = argparse.ArgumentParser(description="Build the AddressCLIP demo city dataset (Hub-ready directory).")
    parser.add_argument("--output", required=True, type=Path, help="dataset directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--max-addresses", type=int, default=None, help="tiny subset (e.g. 6) for tests")
    parser.add_argument("--plot-map", type=Path, default=None, help="PNG map of sub-streets and cameras")
    parser.add_argument("--plot-samples", type=Path, default=None, help="PNG contact sheet of views")
    args = parser.parse_args(argv)
    report = build_demo_city(args.output, args.seed, args.image_size, args.max_addresses)
    for split in SPLITS:
        print(f"{split:>8}: {report.images[split]:5d} images, {report.locations[split]:4d} locations, "
              f"{report.addresses[split]:3d} addresses")  # fmt: skip
    print(
        f"moved to train: {report.moved_to_train}; NN-pixel baseline SSA@1 {100 * report.nn_ssa1:.1f}% "
        f"SA@1 {100 * report.nn_sa1:.1f}%; build {report.seconds:.1f} s (render {report.render_seconds:.1f} s)"
    )
    if args.plot_map:
        plot_map(report, args.plot_map)
    if args.plot_samples:
        plot_samples(report.output, args.plot_samples, seed=args.seed)
    print(f"wrote {report.output}")
    return report


if __name__ == "__main__":
    main()
