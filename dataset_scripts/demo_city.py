"""A demo IAL dataset from any OpenStreetMap extract: its streets (OSM) + rendered street views.

Camera positions every ~10 m along every sub-street of at least 50 m, four views each
(ahead, right, behind, left of the street direction, stored as compass headings); each
position is one ``location_id`` (``<city code>-<sub-street>-<position>``); the paper's 7:2:1
split by location (§5.1)::

    python -m dataset_scripts.demo_city --output demo_city --plot-map map.png --plot-samples views.png
    python -m dataset_scripts.demo_city --pbf CITY.osm.pbf --output city   # .osm.pbf, .osm, .osm.bz2, .osm.gz

The default is the shipped central-Helsinki extract; ``dataset_scripts/data/kotka.osm.pbf`` ships
too. Everything city-specific comes from the extract: the UTM zone (of its centre), the city's name
(``--name``, else its most common ``addr:city``, else its largest city/town node, else the file
name), and the neighborhoods: the nearest ``place=suburb|neighbourhood|quarter`` node, else (an
extract without them) the nearest ``place=city|town|village|hamlet`` node, else (no place node at
all) one neighborhood named after the city. An extract with fewer than ``MIN_ADDRESSES`` addresses
that have a sub-street of at least 50 m, or too few camera positions for the 7:2:1 split with every
database/query address in train, fails with a ``ValueError`` naming the counts before anything is
rendered; the CLI prints it as one line (exit status 1).

``load_demo_city()`` builds once into a cache and reuses it (another extract: ``pbf=``; its cache
entry is named by a hash of the file's bytes). Data © OpenStreetMap contributors, ODbL 1.0.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.demo_card import (
    CitySource,
    card_body,
    city_code,
    plot_map,
    plot_samples,
    report_lines,
    slug,
    source_lines,
)
from dataset_scripts.schema import SPLITS, LocationSplit, encode_image, split_by_location, write_hub_dataset
from dataset_scripts.street_view import AppearanceField, Camera, caption_for, render_view, stable_seed, street_style
from modeling_addressclip.geo import utm_to_latlon

VERSION = "4"  # bump when the rendering changes: cached builds are keyed by it
DEFAULT_IMAGE_SIZE = 96  # stored at the demo model's input size: no resize per training step
SPACING_M, MIN_LENGTH_M = 10.0, 50.0
VIEWS = ((0.0, "ahead"), (90.0, "right"), (180.0, "behind"), (270.0, "left"))
NN_PIXELS = 16
MIN_ADDRESSES = 5  # addresses with a sub-street >= MIN_LENGTH_M an extract needs to make a demo city


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
    city: str = ""
    partition_seconds: float = 0.0  # parse + partition of the extract
    extra: dict = field(default_factory=dict)


def default_cache_dir(
    seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE, max_addresses: int | None = None,
    pbf: str | os.PathLike | None = None, name: str | None = None,
) -> Path:  # fmt: skip
    """``$ADDRESSCLIP_CACHE`` or ``~/.cache/addressclip``, + the build's cache name (``cache_name``)."""
    root = Path(os.environ.get("ADDRESSCLIP_CACHE", Path.home() / ".cache" / "addressclip")).expanduser()
    return root / cache_name(seed, image_size, max_addresses, pbf, name)


def cache_name(
    seed: int, image_size: int, max_addresses: int | None, pbf: str | os.PathLike | None = None, name: str | None = None
) -> str:
    """``demo_city-<version>-<seed>-<size>[-<n>addr]`` for Helsinki; other extracts (or a ``name``) add
    ``-<file stem>-<12 hex of sha256(file bytes[, name])>`` after ``demo_city``, so two cities never share one."""
    from dataset_scripts import osm

    tail = f"{VERSION}-{seed}-{image_size}" + (f"-{max_addresses}addr" if max_addresses else "")
    if (pbf is None or Path(pbf).resolve() == osm.HELSINKI_PBF) and name is None:
        return f"demo_city-{tail}"
    pbf = Path(pbf or osm.HELSINKI_PBF)
    key = osm.shipped_sha256(pbf) or osm.file_sha256(pbf)
    digest = hashlib.sha256(f"{key}\0{name}".encode()).hexdigest() if name is not None else key
    return f"demo_city-{slug(osm.extract_stem(pbf))}-{digest[:12]}-{tail}"


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


def plan_views(partition, seed: int = 0, max_addresses: int | None = None, code: str | None = None) -> list[ViewPlan]:
    """Camera positions every ~10 m along each chosen sub-street, four views each.

    ``location_id`` is ``<code>-<sub-street index>-<position>``; ``code`` defaults to the partition's city's.
    """
    code = code or city_code(partition.city or "city")
    plans = []
    for index, sub in select_sub_streets(partition, max_addresses):
        style = street_style(sub.address.main_street, sub.highway, sub.tags)
        count = max(1, round(sub.length_m / SPACING_M))
        for k in range(count):
            s = (k + 0.5) * sub.length_m / count
            point, bearing = sub.line.interpolate(s), _bearing(sub.line, s, partition.utm_zone)
            location = f"{code}-{index:04d}-{k:03d}"
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


def open_city(
    pbf: str | os.PathLike | None = None, sha256: str | None = None, name: str | None = None, partition=None
) -> CitySource:
    """Parse and partition an extract (the shipped Helsinki one by default) and name its city.

    ``sha256`` is checked when given; the shipped extracts are always checked. ``partition`` skips OSM.
    """
    from dataset_scripts import osm

    if partition is not None:
        return CitySource(name or partition.city or "Demo city", "the given partition", None, partition)
    start = time.perf_counter()
    pbf = Path(pbf or osm.HELSINKI_PBF)
    extract = osm.read_extract(pbf, sha256)
    city = name or extract.city or osm.extract_stem(pbf)
    partition = osm.partition_streets(extract, default_neighborhood=city)
    checksum = (sha256 or osm.shipped_sha256(pbf) or osm.file_sha256(pbf)).lower()
    return CitySource(city, pbf.name, checksum, partition, time.perf_counter() - start)


def check_enough_streets(city: CitySource) -> None:
    """``ValueError`` naming the counts unless the partition has ``MIN_ADDRESSES`` addresses of >= 50 m."""
    chosen = select_sub_streets(city.partition)
    addresses = {sub.address for _, sub in chosen}
    if len(addresses) < MIN_ADDRESSES:
        raise ValueError(
            f"{city.extract}: {len(chosen)} sub-streets >= {MIN_LENGTH_M:g} m, {len(addresses)} addresses; a demo "
            f"city needs at least {MIN_ADDRESSES} addresses with a sub-street of at least {MIN_LENGTH_M:g} m (the "
            f"extract has {city.partition.stats.get('street_names', 0)} street names and "
            f"{len(city.partition.sub_streets)} sub-streets in all; use a larger extract)"
        )


def check_splits(city: CitySource, assigned: LocationSplit, addresses: int) -> None:
    """``ValueError`` naming the counts unless the 7:2:1 split left a location in every split."""
    counts = assigned.counts()
    if min(counts.values()) == 0:
        raise ValueError(
            f"{city.extract}: {len(assigned.assignment)} camera positions of {addresses} addresses split into "
            + "/".join(f"{counts[s]} {s}" for s in SPLITS)
            + " locations (every database/query address kept in train); a demo city needs at least one location "
            "in each split: use more addresses (--max-addresses) or a larger extract"
        )


def build_demo_city(
    output: str | os.PathLike,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    max_addresses: int | None = None,
    pbf: str | os.PathLike | None = None,
    sha256: str | None = None,
    partition=None,
    workers: int | None = None,
    name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build the Hub-ready demo dataset directory at ``output``; returns the build report.

    ``pbf`` defaults to the shipped Helsinki extract (any ``.osm.pbf``/``.osm``/``.osm.bz2``); it is
    checked (against ``sha256`` if given, the shipped extracts always) and its streets counted
    (``check_enough_streets``, ``check_splits``) before anything is rendered or written. ``name`` is the
    city's name (default: from the extract); ``partition`` skips OSM; ``log`` gets the partition's
    statistics before rendering starts.
    """
    start = time.perf_counter()
    city = open_city(pbf, sha256, name, partition)
    partition = city.partition
    for line in source_lines(city) if log else ():
        log(line)
    check_enough_streets(city)
    plans = plan_views(partition, seed, max_addresses, code=city.code)
    addresses = [p.address.format() for p in plans]
    assigned = split_by_location([p.location_id for p in plans], addresses, seed=seed)
    check_splits(city, assigned, len(set(addresses)))
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
                         _counts(rows, "address"), assigned.moved_to_train, ssa, sa, 0.0, render_seconds,
                         city.name, city.seconds)  # fmt: skip
    report.seconds = time.perf_counter() - start
    body = card_body(report, city, seed, image_size, spacing_m=SPACING_M, min_length_m=MIN_LENGTH_M,
                     nn_pixels=NN_PIXELS, version=VERSION)  # fmt: skip
    report.output = write_hub_dataset(
        output, {s: (lambda r=r: iter(r)) for s, r in rows.items()}, body, license="odbl",
        pretty_name=f"AddressCLIP demo city ({city.name})", task_categories=["zero-shot-image-classification"],
        tags=["image-address-localization", "openstreetmap", "synthetic"], language=["en"],
    )  # fmt: skip
    report.seconds = time.perf_counter() - start
    report.extra.update(plans=plans, partition=partition, city=city)
    return report


def load_demo_city(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    max_addresses: int | None = None,
    pbf: str | os.PathLike | None = None,
    name: str | None = None,
    sha256: str | None = None,
):
    """The demo ``DatasetDict`` (train/database/query); built once into the cache, then reused.

    ``max_addresses`` builds (and caches separately) a subset with only that many addresses; ``pbf``
    (and ``name``) build another city, cached under a name with a hash of the extract (``cache_name``).
    """
    import datasets

    folder = cache_name(seed, image_size, max_addresses, pbf, name)
    directory = Path(cache_dir) / folder if cache_dir else default_cache_dir(seed, image_size, max_addresses, pbf, name)
    # A private datasets cache per build, beside it (not inside: the directory is what a user uploads), and
    # emptied on every rebuild, since datasets' default cache key does not see a rebuild at one path.
    arrow_cache = directory.parent / ".hf_datasets_cache" / directory.name
    if not (directory / "README.md").is_file():
        shutil.rmtree(arrow_cache, ignore_errors=True)
        build_demo_city(directory, seed, image_size, max_addresses, pbf=pbf, sha256=sha256, name=name)
    return datasets.load_dataset(str(directory), cache_dir=str(arrow_cache))


def main(argv: list[str] | None = None) -> BuildReport:
    """``python -m dataset_scripts.demo_city`` / ``addressclip build-demo``; a bad extract exits with one line."""
    from dataset_scripts import osm

    parser = argparse.ArgumentParser(description="Build the AddressCLIP demo city dataset (Hub-ready directory).")
    parser.add_argument("--output", required=True, type=Path, help="dataset directory to write")
    pbf_help = "OSM extract (.osm.pbf, .osm, .osm.bz2, .osm.gz) or a shipped one: helsinki (default), kotka"
    parser.add_argument("--pbf", type=osm.extract_path, default=None, help=pbf_help)
    parser.add_argument("--sha256", default=None, help="expected sha256 of --pbf (shipped extracts: always checked)")
    parser.add_argument("--name", default=None,
                        help="city name for the card and location ids (default: the extract's most common "
                        "addr:city, else its largest city/town node, else the file name)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--max-addresses", type=int, default=None, help="tiny subset (e.g. 6) for tests")
    parser.add_argument("--plot-map", type=Path, default=None, help="PNG map of sub-streets and cameras")
    parser.add_argument("--plot-samples", type=Path, default=None, help="PNG contact sheet of views")
    args = parser.parse_args(argv)
    if args.image_size < 8:
        raise SystemExit(f"demo_city: --image-size must be at least 8, got {args.image_size}")
    if args.max_addresses is not None and args.max_addresses < 1:
        raise SystemExit(f"demo_city: --max-addresses must be at least 1, got {args.max_addresses}")
    try:
        report = build_demo_city(args.output, args.seed, args.image_size, args.max_addresses, pbf=args.pbf,
                                 sha256=args.sha256, name=args.name, log=print)  # fmt: skip
    except (ValueError, OSError) as err:
        raise SystemExit(f"demo_city: {err}") from None
    print("\n".join(report_lines(report, report.extra["city"])))
    if args.plot_map:
        plot_map(report, args.plot_map)
    if args.plot_samples:
        plot_samples(report.output, args.plot_samples, seed=args.seed)
    print(f"wrote {report.output}")
    return report


if __name__ == "__main__":
    main()
