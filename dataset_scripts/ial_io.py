"""Strict, streaming readers shared by the IAL builders.

* the AddressCLIP release annotations (``*_train.json``, ``*_database.json``, ``*_queries.json``:
  ``{relative image path: [caption, verbose_address, canonical_address]}``), read entry by
  entry so memory does not grow with the file;
* a plain CSV / JSONL table with the schema's columns (users' own data);
* image files below a data root: ``ImageKeys`` resolves each key to exactly one file under the
  accepted key forms (path safety kept), ``read_image`` checks decodability (optional resize).

A row that cannot be used raises ``Reject(reason, detail)``; the builder reports it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from dataset_scripts.schema import SPLITS, encode_image
from modeling_addressclip.image_utils import load_image

__all__ = [
    "REASONS", "RELEASE_FILES", "TABLE_COLUMNS", "Annotation", "ImageKeys", "Reject", "find_release_files",
    "iter_annotations",
    "iter_json_object", "iter_release_annotations", "iter_table", "read_image", "resolve_key",
]  # fmt: skip

REASONS = {
    "image_missing": "image missing",
    "image_unreadable": "unreadable or truncated image",
    "coordinates_missing": "missing or non-finite coordinates",
    "coordinates_outside_zone": "coordinates outside the UTM zone",
    "address_unparseable": "unparseable address",
    "path_escapes_root": "path escapes the data root",
    "key_ambiguous": "key names two different files",
    "duplicate_key": "duplicate key",
    "location_in_two_splits": "location in two splits",
    "annotation_malformed": "malformed annotation entry",
    "schema_invalid": "row breaks the IAL schema",
    # geotagged photos (dataset_scripts.geotagged)
    "gps_missing": "photo without a GPS position",
    "gps_malformed": "malformed EXIF GPS position",
    "outside_extract": "GPS position outside the OSM extract",
    "no_street_nearby": "no sub-street within --max-distance",
}
RELEASE_FILES = {"train": "_train.json", "database": "_database.json", "query": "_queries.json"}
_SPACE = re.compile(r"\s*")
TABLE_COLUMNS = (
    "image", "address", "caption", "split", "latitude", "longitude", "utm_east", "utm_north", "utm_zone",
    "location_id", "heading",
)  # fmt: skip


class Reject(Exception):
    """A row that is reported instead of written; ``reason`` is a key of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise KeyError(f"unknown reject reason {reason!r}")
        super().__init__(f"{REASONS[reason]}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Annotation:
    """One annotated image: its key (path relative to the data root) and what the source says."""

    key: str
    split: str | None
    address: str
    caption: str
    source: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None


# --------------------------------------------------------------------------- JSON objects


class _Buffer:
    """A text file read in chunks, with a cursor; ``decode`` reads one JSON value."""

    def __init__(self, handle, chunk_size: int) -> None:
        self.handle, self.chunk_size = handle, chunk_size
        self.text, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        chunk = "" if self.eof else self.handle.read(self.chunk_size)
        self.eof = self.eof or not chunk
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return bool(chunk)

    def peek(self) -> str:
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text) or not self._more():
                return self.text[self.pos : self.pos + 1]

    def decode(self):
        while True:
            self.peek()
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
                if end < len(self.text) or self.eof:
                    self.pos = end
                    return value
            except json.JSONDecodeError:
                if self.eof:
                    raise
            self._more()


def iter_json_object(path: str | os.PathLike, chunk_size: int = 1 << 20) -> Iterator[tuple[str, Any]]:
    """Yield the (key, value) pairs of a top-level JSON object in file order, duplicates included."""
    with open(path, encoding="utf-8") as handle:
        buffer = _Buffer(handle, chunk_size)
        if buffer.peek() != "{":
            raise ValueError(f"{path}: expected a JSON object {{key: value, ...}}")
        buffer.pos += 1
        while buffer.peek() != "}":
            try:
                key = buffer.decode()
                if not isinstance(key, str) or buffer.peek() != ":":
                    raise ValueError("expected '\"key\": value'")
                buffer.pos += 1
                yield key, buffer.decode()
            except (json.JSONDecodeError, ValueError) as err:
                raise ValueError(f"{path}: malformed JSON near character {buffer.pos}: {err}") from None
            if buffer.peek() == ",":
                buffer.pos += 1
            elif buffer.peek() != "}":
                raise ValueError(f"{path}: expected ',' or '}}' near character {buffer.pos}")


# --------------------------------------------------------------------------- release annotations


def _pick(candidates: list[Path], suffix: str, config: str | None, exclude: tuple[str, ...]) -> list[Path]:
    """Files named for ``config``; failing that, those named for no config in ``exclude``."""
    if config is None:
        return candidates
    prefixes = [(p, p.name[: -len(suffix)].lower()) for p in candidates]
    named = [p for p, prefix in prefixes if config.lower() in prefix]
    return named or [p for p, prefix in prefixes if not any(o.lower() in prefix for o in exclude)]


def find_release_files(
    directory: str | os.PathLike, config: str | None = None, exclude: tuple[str, ...] = ()
) -> dict[str, Path]:
    """``{split: path}`` of the three release files; ``config`` picks among several (e.g. base/large).

    With a ``config``, a file whose name carries another config in ``exclude`` is never used.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"--annotations {directory} is not a directory")
    found = {}
    for split, suffix in RELEASE_FILES.items():
        candidates = _pick(sorted(directory.glob(f"*{suffix}")), suffix, config, exclude)
        if len(candidates) != 1:
            which = f" for config {config!r}" if config else ""
            names = [p.name for p in candidates]
            raise FileNotFoundError(f"{directory}: need exactly one *{suffix}{which}, found {names}")
        found[split] = candidates[0]
    return found


def _release_annotation(key: str, value, split: str, source: str) -> Annotation:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        problem = f"expected [caption, verbose_address, canonical_address], got {json.dumps(value)[:200]}"
        return Annotation(key, split, "", "", source, problem=problem)
    caption, _verbose, canonical = value
    return Annotation(key, split, canonical, caption.strip(), source)


def iter_release_annotations(files: Mapping[str, Path]) -> Iterator[Annotation]:
    """Every entry of the release files, split by the file it is in (train, database, query order)."""
    for split in SPLITS:
        for index, (key, value) in enumerate(iter_json_object(files[split])):
            yield _release_annotation(key, value, split, f"{files[split].name}[{index}]")


def iter_annotations(
    path: str | os.PathLike, config: str | None = None, exclude: tuple[str, ...] = ()
) -> Iterator[Annotation]:
    """``--annotations``: the release folder (three JSON files) or a CSV/JSONL table."""
    path = Path(path)
    if path.is_file():
        return iter_table(path)
    return iter_release_annotations(find_release_files(path, config, exclude))


# --------------------------------------------------------------------------- CSV / JSONL tables


def _table_annotation(record: Mapping[str, Any], source: str) -> Annotation:
    unknown = sorted(set(record) - set(TABLE_COLUMNS))
    missing = [c for c in ("image", "address") if not isinstance(record.get(c), str) or not record.get(c)]
    if unknown or missing:
        problem = f"unknown columns {unknown}" if unknown else f"missing column(s) {missing}"
        return Annotation(str(record.get("image", "")), None, "", "", source, problem=problem)
    split = record.get("split") or None
    if split is not None and split not in SPLITS:
        return Annotation(record["image"], None, "", "", source, problem=f"split {split!r} is not one of {SPLITS}")
    values = {k: v for k, v in record.items() if k not in ("image", "address", "caption", "split") and v != ""}
    caption = record.get("caption") or ""
    return Annotation(record["image"], split, record["address"], str(caption).strip(), source, values)


def iter_table(path: str | os.PathLike) -> Iterator[Annotation]:
    """Rows of a ``.csv`` (header = schema column names) or ``.jsonl`` file, one at a time."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            for number, record in enumerate(reader, start=2):
                yield _table_annotation(record, f"{path.name}:{number}")
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        record = {"image": "", "problem": str(err)}
                    record = record if isinstance(record, dict) else {"image": "", "row": record}
                    yield _table_annotation(record, f"{path.name}:{number}")
        else:
            raise ValueError(f"{path}: a table must be .csv or .jsonl")


# --------------------------------------------------------------------------- images


_realpath = lru_cache(maxsize=4096)(os.path.realpath)  # folders are few; files are checked one by one


def _key_parts(key: str) -> list[str]:
    """The ``/``-separated parts of a relative ``key``; ``Reject`` if it is absolute or climbs with ``..``."""
    parts = key.replace("\\", "/").split("/")
    if not key or key.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise Reject("path_escapes_root", f"{key!r} is not a path inside the data root")
    return parts


def _inside(root: str, parts: list[str], key: str) -> str:
    """``root/parts`` as a string; ``Reject`` if it resolves outside ``root`` (symlink)."""
    path = os.path.join(root, *parts)
    real = os.path.join(_realpath(os.path.dirname(path)), parts[-1])
    if os.path.islink(real):
        real = os.path.realpath(real)
    if not real.startswith(_realpath(root) + os.sep):
        raise Reject("path_escapes_root", f"{key!r} resolves outside {root} (symlink)")
    return path


def resolve_key(root: str | os.PathLike, key: str) -> str:
    """``root/key`` as a string; ``Reject`` if ``key`` is absolute, climbs with ``..`` or resolves outside ``root``.

    Plain string operations on purpose: ``pathlib`` interns every path component, which
    would grow memory with the number of distinct file names.
    """
    return _inside(os.fspath(root), _key_parts(key), key)


def _file_id(path: str, key: str) -> tuple[int, int] | None:
    """(device, inode) of the regular file at ``path``, None if there is none; ``Reject`` if it cannot be read."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise Reject("image_unreadable", f"{key!r}: {err}") from None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


@dataclass(frozen=True)
class ImageKeys:
    """The key forms an annotation may name its image by, each key resolving to exactly one existing file.

    A key is a path relative to one of ``roots`` (the data root first), written with or without
    leading folders from ``names`` (the roots' own folder names, compared case-insensitively).
    ``labels`` say in messages where each root came from (e.g. ``--sfxl-root/processed``).
    """

    roots: tuple[str, ...]
    names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def under(cls, root: str | os.PathLike, label: str = "the data root", names: tuple[str, ...] = ()) -> ImageKeys:
        """Keys relative to the one folder ``root``, also written with its own name in front (``root.name/…``)."""
        root = os.path.abspath(root)
        return cls((root,), (os.path.basename(root), *names), (label,))

    def _forms(self, parts: list[str]) -> Iterator[list[str]]:
        """``parts`` as given, then without each run of leading folders found in ``names``."""
        names = {name.casefold() for name in self.names}
        yield parts
        for index, part in enumerate(parts[:-1]):
            if part.casefold() not in names:
                return
            yield parts[index + 1 :]

    def resolve(self, key: str) -> tuple[str, str]:
        """(path, canonical key) of the one file ``key`` names; the canonical key is relative to its root.

        ``Reject``: ``path_escapes_root`` (no form stays inside its root), ``image_missing`` (no form
        names a file) or ``key_ambiguous`` (two forms name different files).
        """
        parts, escaped, found = _key_parts(key), None, {}
        for root in self.roots:
            for form in self._forms(parts):
                try:
                    path = _inside(root, form, key)
                except Reject as reject:
                    escaped = escaped or reject
                    continue
                file_id = _file_id(path, key)
                if file_id is not None:
                    found.setdefault(file_id, (path, "/".join(form)))
        if len(found) > 1:
            paths = " and ".join(path for path, _ in found.values())
            raise Reject("key_ambiguous", f"{key!r} names {paths}, which are different files")
        if found:
            return next(iter(found.values()))
        if escaped is not None:
            raise escaped
        raise Reject("image_missing", f"{key!r} is no file under {self.where()}")

    def where(self) -> str:
        """The roots with their labels, for messages: ``--sfxl-root/processed (/data/sf_xl/processed) or …``."""
        labels = self.labels or self.roots
        return " or ".join(f"{label} ({root})" if label != root else root for label, root in zip(labels, self.roots))

    def hint(self) -> str:
        """What to check when keys name no file."""
        labels = " or ".join(self.labels or self.roots)
        unique: dict[str, str] = {}
        for name in self.names:
            unique.setdefault(name.casefold(), name)
        folders = " or ".join(f"'{name}/'" for name in unique.values())
        leading = f", with or without a leading {folders}" if folders else ""
        return f"keys are resolved relative to {labels}{leading}; check the folder you passed"


def _decode(data: bytes, image_size: int | None) -> bytes | None:
    """Check that ``data`` reads under the package's one image policy (``image_utils.load_image``, a JPEG at
    reduced DCT scale: fast, still reads every byte); with ``image_size``, return it as RGB re-encoded with
    its shorter side resized down to ``image_size`` (the same pixels the pipeline would start from)."""
    if image_size is None:
        load_image(data, draft=1)
        return None
    rgb = load_image(data, draft=image_size)
    width, height = rgb.size
    scale = image_size / min(width, height)
    if scale < 1:
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BICUBIC)
    return encode_image(rgb)["bytes"]


def read_image(path: str, key: str, image_size: int | None = None) -> dict:
    """The ``Image()`` dict of the file at ``path`` (shorter side resized to ``image_size`` if given)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise Reject("image_missing", f"{key!r} does not exist") from None
    except OSError as err:
        raise Reject("image_unreadable", f"{key!r}: {err}") from None
    try:
        resized = _decode(data, image_size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # ImageLoadError is a ValueError
        raise Reject("image_unreadable", f"{key!r}: {err}") from None
    return {"bytes": resized or data, "path": key}
