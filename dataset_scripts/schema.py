"""The IAL dataset contract shared by every builder (docs/structure.md, "Dataset schema").

* ``IAL_FEATURES``: the exact ``datasets.Features`` every builder emits.
* ``validate_row``: strict per-row checks that name the offending row and field.
* ``split_by_location``: the paper's 7:2:1 split by location (§5.1), with every
  database/query address also present in train.
* ``write_hub_dataset``: a Hub-ready directory (parquet shards + README card) that
  ``datasets.load_dataset(DIR)`` reads back with exactly ``IAL_FEATURES``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

import datasets
import numpy as np
from datasets import Dataset, DatasetInfo, Features, Image, List, Value
from datasets.exceptions import DatasetGenerationError
from datasets.info import DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from modeling_addressclip.address import Address
from modeling_addressclip.geo import latlon_to_utm, parse_utm_zone

__all__ = [
    "IAL_FEATURES",
    "SPLITS",
    "LocationSplit",
    "dataset_card",
    "encode_image",
    "publish_directory",
    "remove_stale_siblings",
    "split_by_location",
    "staging_directory",
    "validate_row",
    "write_hub_dataset",
]

logger = logging.getLogger(__name__)
SPLITS: tuple[str, str, str] = ("train", "database", "query")
UTM_TOLERANCE_M = 5.0

IAL_FEATURES = Features(
    {
        "image": Image(),
        "address": Value("string"),
        "main_street": Value("string"),
        "cross_streets": List(Value("string")),
        "neighborhood": Value("string"),
        "caption": Value("string"),
        "latitude": Value("float64"),
        "longitude": Value("float64"),
        "utm_east": Value("float64"),
        "utm_north": Value("float64"),
        "utm_zone": Value("string"),
        "location_id": Value("string"),
        "heading": Value("float32"),
    }
)


# --------------------------------------------------------------------------- validation


def _fail(where: str, field: str, problem: str) -> NoReturn:
    raise ValueError(f"{where}: field {field!r} {problem}")


def _check_fields(row: Mapping, where: str) -> None:
    missing = [name for name in IAL_FEATURES if name not in row]
    if missing:
        _fail(where, missing[0], f"is missing (all missing: {missing})")
    extra = sorted(set(row) - set(IAL_FEATURES), key=str)
    if extra:
        _fail(where, extra[0], f"is not part of the IAL schema (extra fields: {extra})")
    for name in ("address", "main_street", "neighborhood", "caption", "utm_zone", "location_id"):
        if not isinstance(row[name], str):
            _fail(where, name, f"must be a string, got {type(row[name]).__name__}")
    if not row["location_id"]:
        _fail(where, "location_id", "must be non-empty")


def _check_image(image, where: str) -> None:
    if image is None:
        _fail(where, "image", "is None")
    if isinstance(image, dict):
        if not image.get("bytes") and not image.get("path"):
            _fail(where, "image", "dict has neither 'bytes' nor 'path'")
    elif not isinstance(image, (bytes, str, os.PathLike)) and not hasattr(image, "size"):
        _fail(where, "image", f"is not an image, got {type(image).__name__}")


@lru_cache(maxsize=65536)
def _parse_address(text: str) -> Address:
    """``Address.parse`` once per distinct text: a dataset repeats each address over many rows."""
    return Address.parse(text)


def _check_address(row: Mapping, where: str) -> None:
    try:
        address = _parse_address(row["address"])
    except (ValueError, TypeError) as err:
        _fail(where, "address", f"does not parse: {err}")
    crosses = row["cross_streets"]
    if isinstance(crosses, str) or not isinstance(crosses, Sequence):
        _fail(where, "cross_streets", f"must be a list of names, got {crosses!r}")
    if not 1 <= len(crosses) <= 2:
        _fail(where, "cross_streets", f"must hold 1 or 2 names, got {len(crosses)}")
    if not all(isinstance(name, str) for name in crosses):
        _fail(where, "cross_streets", f"must hold strings, got {list(crosses)!r}")
    if row["main_street"] != address.main_street:
        _fail(where, "main_street", f"{row['main_street']!r} differs from the address's {address.main_street!r}")
    if tuple(sorted(crosses)) != address.cross_streets:
        _fail(where, "cross_streets", f"{list(crosses)!r} differ from the address's {list(address.cross_streets)!r}")
    if row["neighborhood"] != address.neighborhood:
        _fail(where, "neighborhood", f"{row['neighborhood']!r} differs from the address's {address.neighborhood!r}")


def _number(value, name: str, where: str, kind: str) -> float:
    """``value`` as a float; bools, non-numbers and ints beyond float64's range fail naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        _fail(where, name, f"must be {kind}, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        _fail(where, name, "is an integer beyond float64's range")


def _finite(row: Mapping, name: str, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    value = _number(row[name], name, where, "a number")
    if not math.isfinite(value) or not low <= value <= high:
        _fail(where, name, f"must be finite in [{low}, {high}], got {row[name]!r}")
    return value


def _check_geography(row: Mapping, where: str) -> None:
    lat = _finite(row, "latitude", where, -90.0, 90.0)
    lon = _finite(row, "longitude", where, -180.0, 180.0)
    east = _finite(row, "utm_east", where)
    north = _finite(row, "utm_north", where)
    try:
        parse_utm_zone(row["utm_zone"])
    except ValueError as err:
        _fail(where, "utm_zone", str(err))
    e, n, _ = latlon_to_utm(lat, lon, row["utm_zone"])
    error = math.hypot(float(e[0]) - east, float(n[0]) - north)
    if error > UTM_TOLERANCE_M:
        _fail(where, "utm_east", f"/utm_north are {error:.1f} m from latitude/longitude projected to {row['utm_zone']}")


def _check_heading(value, where: str) -> None:
    heading = _number(value, "heading", where, "a float (NaN if unknown)")
    if math.isinf(heading) or (math.isfinite(heading) and not 0.0 <= heading < 360.0):
        _fail(where, "heading", f"must be a compass angle in [0, 360) or NaN, got {value!r}")


def validate_row(row: Mapping, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` and the field if ``row`` breaks the IAL schema."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: row must be a mapping, got {type(row).__name__}")
    _check_fields(row, where)
    _check_image(row["image"], where)
    _check_address(row, where)
    _check_geography(row, where)
    _check_heading(row["heading"], where)


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class LocationSplit:
    """Split name per ``location_id`` and how many locations were moved into train."""

    assignment: dict[str, str]
    moved_to_train: int

    def counts(self) -> dict[str, int]:
        return {split: sum(1 for s in self.assignment.values() if s == split) for split in SPLITS}


def _address_per_location(location_ids: Sequence[str], addresses: Sequence[str]) -> dict[str, str]:
    if len(location_ids) != len(addresses):
        raise ValueError(f"{len(location_ids)} location ids but {len(addresses)} addresses")
    mapping: dict[str, str] = {}
    for location, address in zip(location_ids, addresses):
        if mapping.setdefault(location, address) != address:
            raise ValueError(f"location {location!r} has two addresses: {mapping[location]!r} and {address!r}")
    return mapping


def split_by_location(
    location_ids: Sequence[str],
    addresses: Sequence[str],
    ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
    seed: int = 0,
) -> LocationSplit:
    """The paper's random 7:2:1 train/database/query split by location (§5.1).

    ``location_ids``/``addresses`` are parallel (per row or per location). Locations are
    shuffled with ``seed`` and cut by ``ratios``; then, for every address that has no train
    location, one of its locations is moved to train so database/query addresses ⊆ train.
    """
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    per_location = _address_per_location(location_ids, addresses)
    order = sorted(per_location)
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    cut_train = round(ratios[0] * len(order))
    cut_database = cut_train + round(ratios[1] * len(order))
    assignment = {loc: SPLITS[0 if i < cut_train else 1 if i < cut_database else 2] for i, loc in enumerate(order)}
    covered = {per_location[loc] for loc, split in assignment.items() if split == "train"}
    moved = 0
    for location in order:
        if per_location[location] not in covered:
            assignment[location] = "train"
            covered.add(per_location[location])
            moved += 1
    return LocationSplit(assignment=assignment, moved_to_train=moved)


# --------------------------------------------------------------------------- writing


def encode_image(image, format: str = "JPEG", quality: int = 90) -> dict:
    """A PIL image as the ``{"bytes", "path"}`` dict that ``Image()`` stores in parquet."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, quality=quality) if format == "JPEG" else image.save(buffer, format=format)
    return {"bytes": buffer.getvalue(), "path": None}


def _validated(rows: Callable[[], Iterable[dict]], split: str, validate: bool) -> Iterator[dict]:
    for index, row in enumerate(rows()):
        if validate:
            validate_row(row, f"{split} row {index}")
        yield row


def _build_split(rows: Callable[[], Iterable[dict]], split: str, cache_dir: Path, validate: bool) -> Dataset:
    """``Dataset.from_generator`` with IAL_FEATURES; a row error surfaces as itself, not wrapped."""
    try:
        return Dataset.from_generator(
            _validated,
            features=IAL_FEATURES,
            cache_dir=str(cache_dir),
            gen_kwargs={"rows": rows, "split": split, "validate": validate},
            fingerprint=uuid.uuid4().hex,
            split=datasets.NamedSplit(split),
        )
    except DatasetGenerationError as err:
        if isinstance(err.__cause__, (ValueError, TypeError)):
            raise err.__cause__ from None
        raise


def _write_shards(dataset: Dataset, data_dir: Path, split: str, rows_per_shard: int) -> None:
    num_shards = max(1, math.ceil(len(dataset) / rows_per_shard))
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        shard.to_parquet(str(data_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))


def dataset_card(card_body: str, sizes: Mapping[str, tuple[int, int]], license: str, **metadata) -> DatasetCard:
    """README with YAML: ``configs`` (one ``data/{split}-*`` per split), license, ``dataset_info``.

    ``sizes`` maps split -> (num_examples, num_bytes).
    """
    card_data = DatasetCardData(license=license, **metadata)
    splits = SplitDict()
    for split, (examples, num_bytes) in sizes.items():
        splits.add(SplitInfo(name=split, num_examples=examples, num_bytes=num_bytes))
    DatasetInfosDict({"default": DatasetInfo(features=IAL_FEATURES, splits=splits)}).to_dataset_card_data(card_data)
    files = [{"split": split, "path": f"data/{split}-*"} for split in sizes]
    MetadataConfigs({"default": {"data_files": files}}).to_dataset_card_data(card_data)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{card_body.strip()}\n")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _sibling(output: Path, kind: str) -> Path:
    """``.<name>.<kind>-<host>-<pid>-<random>`` beside ``output``: its writer can be told dead or alive later."""
    return output.with_name(f".{output.name}.{kind}-{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_siblings(output: Path) -> list[Path]:
    """Remove the ``.<name>.tmp-*`` / ``.<name>.old-*`` directories beside ``output`` whose writer is gone.

    Only names made by :func:`_sibling` on this host count, and only when their process no longer
    exists (a pid reused since keeps its directory, to be removed by a later build).
    """
    pattern = re.compile(rf"\.{re.escape(output.name)}\.(?:tmp|old)-{_host_tag()}-(\d+)-[0-9a-f]{{8}}")
    stale = [
        path
        for path in (output.parent.iterdir() if output.parent.is_dir() else ())
        if (m := pattern.fullmatch(path.name)) and int(m[1]) != os.getpid() and not _alive(int(m[1]))
    ]
    for path in stale:
        logger.info(f"removing {path}, left by a writer that no longer runs")
        shutil.rmtree(path, ignore_errors=True)
    return stale


def staging_directory(output: Path) -> Path:
    """A new hidden temp directory path beside ``output`` to build into; stale ones of killed writers go first."""
    remove_stale_siblings(output)
    return _sibling(output, "tmp")


def publish_directory(temp: Path, output: Path) -> None:
    """Move the finished ``temp`` to ``output``; an old ``output`` is swapped out, then removed.

    Killed between the two renames, ``output`` is missing (the old one waits in ``.<name>.old-*``); a
    rerun writes it again and removes the leftovers.
    """
    old = None
    if output.exists():
        old = _sibling(output, "old")
        output.rename(old)
    temp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_hub_dataset(
    output: str | os.PathLike,
    splits: Mapping[str, Callable[[], Iterable[dict]]],
    card_body: str | Callable[[dict[str, Dataset]], str],
    license: str,
    rows_per_shard: int = 5000,
    validate: bool = True,
    **card_metadata,
) -> Path:
    """Write ``output/data/{split}-0000i-of-0000N.parquet`` + ``output/README.md``.

    ``splits`` maps each split name to a function returning its rows (IAL schema). Everything
    is written into a hidden temp directory beside ``output`` and renamed at the end, so an
    interrupted build never leaves a directory that looks complete; temp directories of killed
    builds are removed by the next one (:func:`staging_directory`). ``card_body`` may be a
    function of the built splits (to report statistics).
    """
    output = Path(output).expanduser().resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = staging_directory(output)
    try:
        (temp / "data").mkdir(parents=True)
        built = {name: _build_split(rows, name, temp / ".cache", validate) for name, rows in splits.items()}
        for name, dataset in built.items():
            _write_shards(dataset, temp / "data", name, rows_per_shard)
        body = card_body(built) if callable(card_body) else card_body
        sizes = {name: (len(dataset), dataset.data.nbytes) for name, dataset in built.items()}
        del built
        dataset_card(body, sizes, license, **card_metadata).save(temp / "README.md")
        shutil.rmtree(temp / ".cache", ignore_errors=True)
        publish_directory(temp, output)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return output
