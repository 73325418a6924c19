"""Raw annotations + images -> validated IAL rows -> parquet shards + card, with a report of every row not written.

``build_ial`` is the one loop every builder (Pitts-IAL, SF-IAL, users' own tables) runs:
rows stream from the annotation readers through the checks into ``datasets``' own
``ParquetWriter`` (IAL_FEATURES), one shard at a time (≤ ``max_shard_bytes``). Memory is
flat in the number of rows except ~8 bytes per key and one entry per location. Everything
is written into a hidden temp directory and renamed at the end, and only if the build is
usable: a split without rows, or more rejected rows than ``--max-rejected-fraction`` (default
0.5) of the input, raises ``BuildError`` (exit status 1) with the top reasons and a hint, and
nothing appears at ``--output``. Image keys resolve through ``ial_io.ImageKeys``: each names
exactly one file, relative to the builder's roots, with or without their folder names in front.

``python -m dataset_scripts.ial_builder --table rows.csv --image-root DIR --output OUT``
builds a dataset from a user's own CSV/JSONL (splits 7:2:1 by location if it has none); its
``image`` paths are relative to ``--image-root``, with or without that folder's own name in front.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from dataset_scripts.ial_io import Annotation, ImageKeys, Reject, iter_table, read_image
from dataset_scripts.ial_places import Locator, locate_in_zone, table_locator
from dataset_scripts.ial_report import BuildReport, SeenSet, card_sections, publish_problems, refusal
from dataset_scripts.ial_shards import ShardWriter
from dataset_scripts.schema import (
    SPLITS,
    dataset_card,
    publish_directory,
    split_by_location,
    staging_directory,
    validate_row,
)
from modeling_addressclip.address import Address

__all__ = ["BuildError", "BuildOptions", "DatasetInfo", "build_ial", "push_directory", "run_cli"]

SF_IAL_LARGE_IMAGES = 1_960_000


class BuildError(RuntimeError):
    """``--strict`` met a row it would have reported, or the inputs are unusable; ``report`` says what was read."""

    def __init__(self, message: str, report: BuildReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class BuildOptions:
    """What the command line controls (shared by every builder)."""

    strict: bool = False
    image_size: int | None = None
    captions: Mapping[str, str] = field(default_factory=dict)
    max_shard_bytes: int = 500 * 2**20
    progress: bool | None = None
    seed: int = 0
    max_rejected_fraction: float = 0.5


@dataclass(frozen=True)
class DatasetInfo:
    """Card text and metadata of one dataset (name, source, license notes, citation)."""

    pretty_name: str
    zone: str
    description: str
    license: str = "other"
    tags: tuple[str, ...] = ("image-address-localization",)


@dataclass
class _Context:
    images: ImageKeys
    locate: Locator
    zone: str
    options: BuildOptions
    report: BuildReport
    keys: SeenSet = field(default_factory=SeenSet)
    owner: dict[str, str] = field(default_factory=dict)
    splits: Mapping[str, str] | None = None


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> Address:
    return Address.parse(text)


def _address(annotation: Annotation) -> Address:
    try:
        return _parse(annotation.address)
    except (ValueError, TypeError) as err:
        raise Reject("address_unparseable", str(err)) from None


def _row(annotation: Annotation, context: _Context) -> tuple[str, dict]:
    """The checked row of one annotation and its split; ``Reject`` says why not.

    From the image on, the annotation carries its canonical key (relative to the root the file is under).
    """
    if annotation.problem:
        raise Reject("annotation_malformed", f"{annotation.source}: {annotation.problem}")
    path, key = context.images.resolve(annotation.key)
    if not context.keys.add(key):
        same = "" if key == annotation.key else f" (image {key!r})"
        raise Reject("duplicate_key", f"{annotation.key!r}{same} was already read")
    caption = annotation.caption or context.options.captions.get(annotation.key) or context.options.captions.get(key)
    annotation = replace(annotation, key=key)
    address = _address(annotation)
    place = context.locate(annotation)
    lat, lon = locate_in_zone(place, context.zone, annotation.key)
    split = annotation.split or (context.splits or {}).get(place.location_id)
    if split is None:
        raise Reject("annotation_malformed", f"{annotation.source}: no split for location {place.location_id!r}")
    owner = context.owner.get(place.location_id, split)
    if owner != split:
        raise Reject("location_in_two_splits", f"location {place.location_id!r} is in {owner}, this row in {split}")
    row = {
        "image": read_image(path, annotation.key, context.options.image_size), "address": address.format(),
        "main_street": address.main_street, "cross_streets": list(address.cross_streets),
        "neighborhood": address.neighborhood, "caption": caption or "", "latitude": lat, "longitude": lon,
        "utm_east": place.east, "utm_north": place.north, "utm_zone": context.zone,
        "location_id": place.location_id, "heading": place.heading,
    }  # fmt: skip
    try:
        validate_row(row, annotation.source)
    except ValueError as err:
        raise Reject("schema_invalid", str(err)) from None
    context.owner[place.location_id] = split
    return split, row


def _auto_splits(
    annotations: Callable[[], Iterable[Annotation]], locate: Locator, images: ImageKeys, seed: int
) -> dict[str, str] | None:
    """If the first row names no split: the paper's 7:2:1 split by location (§5.1) of the rows with an image;
    else None."""
    locations: dict[str, str] = {}
    named = unnamed = 0
    for annotation in annotations():
        if annotation.problem:
            continue
        if annotation.split is not None and not unnamed:
            return None  # the data brings its splits; a row without one is reported by the main pass
        named, unnamed = named + (annotation.split is not None), unnamed + (annotation.split is None)
        try:
            place = locate(replace(annotation, key=images.resolve(annotation.key)[1]))
            locations.setdefault(place.location_id, _parse(annotation.address).format())
        except (Reject, ValueError, TypeError):
            continue
    if named and unnamed:
        raise BuildError(f"{named} rows name a split and {unnamed} do not: give every row a split or none")
    if named or not locations:
        return None
    return split_by_location(list(locations), list(locations.values()), seed=seed).assignment


def _write_rows(annotations: Iterable[Annotation], context: _Context, writers: dict[str, ShardWriter]) -> None:
    disable = {True: False, False: True, None: None}[context.options.progress]
    bar = tqdm(annotations, unit=" rows", desc="building", disable=disable)
    for annotation in bar:
        context.report.rows_in += 1
        try:
            split, row = _row(annotation, context)
        except Reject as reject:
            context.report.reject(annotation, reject)
            if context.options.strict:
                raise BuildError(f"--strict: {annotation.source}: {reject}", context.report) from None
            continue
        writers[split].write(row)
        context.report.written(split, row)
        if context.report.rows_in % 256 == 0:
            bar.set_postfix(rejected=context.report.rows_rejected, refresh=False)


def _check_publishable(report: BuildReport, options: BuildOptions, images: ImageKeys) -> None:
    """``BuildError`` (with the report) if a split got no rows or too many rows were rejected."""
    problems = publish_problems(report, options.max_rejected_fraction)
    if problems:
        raise BuildError(refusal(report, problems, {"image_missing": images.hint()}), report)


def build_ial(
    output: str | os.PathLike,
    annotations: Callable[[], Iterable[Annotation]],
    root: str | os.PathLike | ImageKeys,
    locate: Locator,
    info: DatasetInfo,
    options: BuildOptions | None = None,
) -> BuildReport:
    """Write the IAL dataset directory ``output`` from ``annotations()`` (images below ``root``, a folder or the
    ``ImageKeys`` of the builder's key forms).

    Returns the report (rows in = rows written + rows reported). ``BuildError`` (its ``report`` attached),
    and nothing at ``output``, if a split got no rows, more than ``options.max_rejected_fraction`` of the
    rows were rejected, or, under ``options.strict``, at the first reported row.
    """
    options = options or BuildOptions()
    output = Path(output).expanduser().resolve()
    report = BuildReport(output=str(output))
    images = root if isinstance(root, ImageKeys) else ImageKeys.under(Path(root).resolve())
    context = _Context(images, locate, info.zone, options, report)
    context.splits = _auto_splits(annotations, locate, images, options.seed)
    temp = staging_directory(output)
    start = time.perf_counter()
    try:
        (temp / "data").mkdir(parents=True)
        writers = {s: ShardWriter(temp / "data", s, options.max_shard_bytes) for s in SPLITS}
        _write_rows(annotations(), context, writers)
        sizes = {split: writer.close() for split, writer in writers.items()}
        report.locations = dict(Counter(context.owner.values()))
        report.seconds = time.perf_counter() - start
        report.auto_split = context.splits is not None
        _check_publishable(report, options, images)
        body = info.description.strip() + "\n\n" + card_sections(report, SF_IAL_LARGE_IMAGES)
        metadata = dict(pretty_name=info.pretty_name, tags=list(info.tags), language=["en"])
        card = dataset_card(body, sizes, info.license, task_categories=["zero-shot-image-classification"], **metadata)
        card.save(temp / "README.md")
        publish_directory(temp, output)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return report


def push_directory(directory: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload the finished dataset directory as it is (parquet shards + card) to the Hub dataset ``repo_id``."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(directory), repo_type="dataset")
    except Exception as err:  # the local directory is complete either way; say so
        raise BuildError(
            f"the dataset directory {directory} is complete and loads with load_dataset({str(directory)!r}), "
            f"but pushing it to the Hub repo {repo_id!r} failed: {type(err).__name__}: {err}"
        ) from err
    return f"https://huggingface.co/datasets/{repo_id}"


# --------------------------------------------------------------------------- command line


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every IAL builder shares."""
    parser.add_argument("--output", required=True, help="dataset directory to write (parquet shards + README.md)")
    parser.add_argument("--report", help="write the validation report (JSON) here")
    parser.add_argument("--strict", action="store_true", help="fail on the first row that would be reported")
    parser.add_argument(
        "--max-rejected-fraction", type=float, default=0.5, metavar="F",
        help="fail, publishing nothing, if more than this fraction of the rows is rejected (default 0.5; "
        "a split without rows always fails)",
    )  # fmt: skip
    parser.add_argument("--push-to-hub", metavar="REPO", help="then upload the directory to this Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--image-size", type=int, help="store images with the shorter side resized to N pixels")
    parser.add_argument("--captions", help="JSONL {key, caption} (from dataset_scripts.captions) for empty captions")
    parser.add_argument("--max-shard-mb", type=int, default=500, help="parquet shard size limit (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 7:2:1 split when the data has no splits")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """``BuildOptions`` from the common arguments (loads ``--captions``)."""
    if args.image_size is not None and args.image_size < 8:
        raise SystemExit(f"--image-size must be at least 8, got {args.image_size}")
    if not 0.0 <= args.max_rejected_fraction <= 1.0:
        raise SystemExit(f"--max-rejected-fraction must be between 0 and 1, got {args.max_rejected_fraction}")
    captions: dict[str, str] = {}
    if args.captions:
        with open(args.captions, encoding="utf-8") as handle:
            captions = {r["key"]: r["caption"] for r in map(json.loads, filter(str.strip, handle))}
    return BuildOptions(
        args.strict, args.image_size, captions, args.max_shard_mb * 2**20, not args.no_progress, args.seed,
        args.max_rejected_fraction,
    )  # fmt: skip


def _save_failed_report(args: argparse.Namespace, report: BuildReport | None) -> str:
    """Write the report of a failed build if ``--report`` asks for it; a line saying where every rejected row is."""
    if report is None:
        return ""
    if args.report:
        report.save(args.report)
        return f"every rejected row is listed in {args.report}"
    return "pass --report FILE to list every rejected row"


def run_cli(args: argparse.Namespace, build: Callable[[BuildOptions], BuildReport]) -> int:
    """Build, write the report, print the one-line summary, push if asked; the exit status."""
    try:
        report = build(options_from_args(args))
    except BuildError as err:
        note = _save_failed_report(args, err.report)
        print(f"error: {err}" + (f"\n{note}" if note else ""), file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.report:
        report.save(args.report)
    print(report.summary())
    if args.push_to_hub:
        try:
            print(f"pushed: {push_directory(report.output, args.push_to_hub, args.private)}")
        except BuildError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build an IAL dataset from a user's own CSV/JSONL table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help=".csv or .jsonl with the schema's columns (+ optional split)")
    parser.add_argument(
        "--image-root", required=True, help="folder the table's image paths are relative to (its name in front or not)"
    )
    parser.add_argument("--utm-zone", required=True, help='the dataset\'s UTM zone, e.g. "17T"')
    parser.add_argument("--name", default="IAL dataset", help="pretty name for the card")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    info = DatasetInfo(args.name, args.utm_zone, f"# {args.name}\n\nBuilt from `{Path(args.table).name}`.")
    images = ImageKeys.under(args.image_root, "--image-root")
    return run_cli(args, lambda options: build_ial(args.output, lambda: iter_table(args.table), images,
                                                   table_locator(args.utm_zone), info, options))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
