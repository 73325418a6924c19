"""What an IAL build did: rows in / written / reported (with reasons), split statistics, card sections, and why a
build must not be published (a split without rows, most rows rejected)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dataset_scripts.ial_io import REASONS, Annotation, Reject
from dataset_scripts.schema import SPLITS

__all__ = ["HINTS", "BuildReport", "SeenSet", "card_sections", "publish_problems", "refusal"]

HINTS = {
    "image_missing": "keys are resolved relative to the image folder; check the folder you passed",
    "image_unreadable": "the files are truncated or not images: check the download",
    "coordinates_missing": "coordinates come from @-names, datasets/pitts250k_*.mat entries or the table's "
    "utm_east/utm_north or latitude/longitude columns",
    "coordinates_outside_zone": "the images are not in the dataset's UTM zone: check the zone and the coordinates",
    "address_unparseable": 'addresses read "Main between Cross and Cross, Neighborhood", "Main near Cross, '
    'Neighborhood" or the release form "Main, Neighborhood (Cross, Cross)"',
    "path_escapes_root": "keys must be relative paths that stay inside the image folder (symlinks included)",
    "key_ambiguous": "two accepted forms of the key name different files: fix the key or remove one file",
    "duplicate_key": "each image may be annotated once",
    "location_in_two_splits": "all views of one location must be in the same split",
    "annotation_malformed": "check the format of --annotations",
    "schema_invalid": "the row breaks dataset_scripts.schema.IAL_FEATURES",
    "gps_missing": "the camera saved no position (location off, no fix) or an editor stripped the EXIF; "
    "give positions with --table photos.csv",
    "gps_malformed": "GPSLatitude/GPSLongitude must be degrees, minutes, seconds with N/S and E/W references; "
    "fix the tags (e.g. exiftool) or give positions with --table photos.csv",
    "outside_extract": "the photos were taken outside the area of --pbf: use an extract that covers them",
    "no_street_nearby": "the position is off every street (park, courtyard, water) or the GPS is poor; "
    "raise --max-distance only if the photos really show streets",
}


class SeenSet:
    """Set membership of strings at ~8 bytes each (64-bit BLAKE2b digests).

    Recent digests live in a Python set; every ``buffer_size`` they are merged into a sorted
    uint64 array searched by bisection. A false "already seen" needs a 64-bit collision:
    about 1e-7 for the 1.96M keys of SF-IAL-Large.
    """

    def __init__(self, buffer_size: int = 1 << 14) -> None:
        self.buffer_size = buffer_size
        self._recent: set[int] = set()
        self._sorted = np.empty(0, dtype=np.uint64)

    def add(self, text: str) -> bool:
        """Add ``text``; False if it was already there."""
        digest = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
        if digest in self._recent:
            return False
        value = np.uint64(digest)
        index = int(np.searchsorted(self._sorted, value))
        if index < self._sorted.size and self._sorted[index] == value:
            return False
        self._recent.add(digest)
        if len(self._recent) >= self.buffer_size:
            merged = np.concatenate([self._sorted, np.fromiter(self._recent, np.uint64, len(self._recent))])
            self._sorted = np.sort(merged, kind="stable")  # timsort: merging two sorted runs is linear
            self._recent.clear()
        return True

    def __len__(self) -> int:
        return len(self._recent) + int(self._sorted.size)


@dataclass
class BuildReport:
    """rows_in == rows_written + rows_rejected; ``reported`` lists every row not written and why."""

    output: str
    rows_in: int = 0
    images: Counter = field(default_factory=Counter)
    addresses: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SPLITS})
    locations: dict[str, int] = field(default_factory=dict)
    reported: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    auto_split: bool = False

    @property
    def rows_written(self) -> int:
        return sum(self.images.values())

    @property
    def rows_rejected(self) -> int:
        return len(self.reported)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.reported))

    def top_reasons(self, count: int = 3) -> list[tuple[str, int, dict]]:
        """The ``count`` most frequent reasons: (reason, rows, the first such row)."""
        first: dict[str, dict] = {}
        for row in self.reported:
            first.setdefault(row["reason"], row)
        return [(reason, n, first[reason]) for reason, n in Counter(self.reasons).most_common(count)]

    def reject(self, annotation: Annotation, reject: Reject) -> None:
        """Record one row that is not written."""
        self.reported.append(
            {"source": annotation.source, "key": annotation.key, "split": annotation.split,
             "reason": reject.reason, "detail": reject.detail}
        )  # fmt: skip

    def written(self, split: str, row: dict) -> None:
        """Count one written row."""
        self.images[split] += 1
        self.addresses[split].add(row["address"])

    def split_statistics(self) -> dict[str, dict[str, int]]:
        return {
            s: {"images": self.images[s], "locations": self.locations.get(s, 0), "addresses": len(self.addresses[s])}
            for s in SPLITS
        }

    def uncovered_query_addresses(self) -> int:
        """Query addresses that no train row has (the paper keeps this at 0, §5.2)."""
        return len(self.addresses["query"] - self.addresses["train"])

    def to_json(self) -> dict:
        rate = self.rows_in / self.seconds if self.seconds else None
        return {
            "output": self.output, "rows_in": self.rows_in, "rows_written": self.rows_written,
            "rows_reported": self.rows_rejected, "seconds": round(self.seconds, 3), "rows_per_second": rate,
            "splits": self.split_statistics(), "auto_split": self.auto_split,
            "query_addresses_not_in_train": self.uncovered_query_addresses(),
            "reasons": self.reasons, "reported": self.reported,
        }  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, indent=1, ensure_ascii=False)

    def summary(self) -> str:
        """One line: rows in, written per split, reported per reason, time and rate."""
        written = ", ".join(f"{s} {self.images[s]}" for s in SPLITS)
        reasons = ", ".join(f"{REASONS[r]} {n}" for r, n in sorted(self.reasons.items())) or "none"
        rate = self.rows_in / self.seconds if self.seconds else 0.0
        return (
            f"{self.rows_in} rows in, {self.rows_written} written ({written}), {self.rows_rejected} reported "
            f"({reasons}); {self.seconds:.1f} s, {rate:.0f} rows/s -> {self.output}"
        )


def _empty_split(report: BuildReport, split: str) -> str:
    rejected = sum(row["split"] == split for row in report.reported)
    if rejected:
        return f"{split} ({rejected} rejected)"
    return split if report.auto_split else f"{split} (none annotated)"


def publish_problems(report: BuildReport, max_rejected_fraction: float) -> list[str]:
    """Why the dataset of ``report`` must not be published: splits without rows, more rows rejected than allowed."""
    problems = []
    empty = [_empty_split(report, split) for split in SPLITS if not report.images[split]]
    if empty:
        problems.append(f"no rows in split(s) {', '.join(empty)}")
    if report.rows_in and report.rows_rejected > max_rejected_fraction * report.rows_in:
        problems.append(
            f"{report.rows_rejected} of {report.rows_in} rows rejected ({report.rows_rejected / report.rows_in:.0%}; "
            f"--max-rejected-fraction is {max_rejected_fraction:g})"
        )
    return problems


def refusal(report: BuildReport, problems: list[str], hints: Mapping[str, str] | None = None) -> str:
    """The message of a build that is not published: its problems, the top 3 reasons with an example and a hint."""
    lines = [f"not publishing {report.output}: {'; '.join(problems)}."]
    top = report.top_reasons(3)
    if top:
        lines.append("top reasons rows were rejected:")
    for reason, count, row in top:
        lines.append(f"  {REASONS[reason]} [{reason}]: {count} row(s), e.g. {row['source']}: {row['detail']}")
        lines.append(f"    hint: {(hints or {}).get(reason) or HINTS[reason]}")
    lines.append(f"Nothing was written at {report.output}.")
    return "\n".join(lines)


def card_sections(report: BuildReport, large_images: int) -> str:
    """Card markdown: statistics per split, validation counts, build rate, usage."""
    stats = report.split_statistics()
    table = "\n".join(f"| {s} | {v['images']} | {v['locations']} | {v['addresses']} |" for s, v in stats.items())
    reasons = "\n".join(f"- {REASONS[r]}: {n}" for r, n in sorted(report.reasons.items())) or "- none"
    rate = report.rows_in / report.seconds if report.seconds else 0.0
    projection = f"{large_images / rate / 3600:.1f} h" if rate else "n/a"
    split_note = "7:2:1 by location (paper §5.1), computed by the builder" if report.auto_split else "as released"
    return f"""## Statistics
| split | images | locations | addresses |
|---|---|---|---|
{table}

Splits: {split_note}. Query addresses without a train image: {report.uncovered_query_addresses()}.

## Validation
{report.rows_in} annotated rows read, {report.rows_written} written, {report.rows_rejected} not written:
{reasons}

Build: {report.seconds:.1f} s, {rate:.0f} rows/s on the build machine.
At this rate SF-IAL-Large ({large_images:,} images) would take about {projection}.

## Usage
```python
from datasets import load_dataset
ds = load_dataset("path/to/this/directory")  # splits: train, database, query
```
"""
