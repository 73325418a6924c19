"""Parquet shards of one split, written row by row with ``datasets``' own ``ParquetWriter`` (IAL_FEATURES).

A shard is closed once its rows hold ``max_bytes`` (images dominate; parquet adds little),
so shards stay ≤ ~500 MB. A row group is flushed at ``group_bytes`` (or ``max_rows_per_group``
rows): ~100 full-size street views, as ``datasets`` does for images, and few row groups (so
little footer metadata) for tiny images. Memory holds one row group at a time. Shards are
named ``{split}-{i:05d}-of-{n:05d}.parquet`` when the split is complete; an empty split gets
one empty shard so ``load_dataset`` still finds it.
"""

from __future__ import annotations

from pathlib import Path

from datasets.arrow_writer import ParquetWriter

from dataset_scripts.schema import IAL_FEATURES

__all__ = ["ShardWriter"]

ROW_OVERHEAD_BYTES = 512
GROUP_BYTES = 4 * 2**20


class ShardWriter:
    """Rows of one split -> ``directory/{split}-*.parquet``; ``close`` returns (examples, bytes)."""

    def __init__(self, directory: Path, split: str, max_bytes: int, max_rows_per_group: int = 2000) -> None:
        self.directory, self.split, self.max_bytes = Path(directory), split, max_bytes
        self.max_rows_per_group = max_rows_per_group
        self.paths: list[Path] = []
        self.num_examples = self.num_bytes = 0
        self._writer: ParquetWriter | None = None
        self._shard_bytes = self._group_bytes = 0

    def _open(self) -> ParquetWriter:
        path = self.directory / f"{self.split}-{len(self.paths):05d}.partial"
        self.paths.append(path)
        self._shard_bytes = self._group_bytes = 0
        return ParquetWriter(path=str(path), features=IAL_FEATURES, writer_batch_size=self.max_rows_per_group)

    def _finish(self) -> None:
        examples, num_bytes = self._writer.finalize()
        self.num_examples += examples
        self.num_bytes += num_bytes
        self._writer = None

    def write(self, row: dict) -> None:
        """Append one IAL row (already validated)."""
        if self._writer is None:
            self._writer = self._open()
        self._writer.write(row)  # validated IAL rows are already in their encoded form (image = bytes dict)
        image = row["image"]
        size = ROW_OVERHEAD_BYTES + (len(image["bytes"]) if isinstance(image, dict) else 0)
        self._shard_bytes += size
        self._group_bytes += size
        if self._shard_bytes >= self.max_bytes:
            self._finish()
        elif self._group_bytes >= GROUP_BYTES:
            self._writer.write_examples_on_file()
            self._group_bytes = 0

    def close(self) -> tuple[int, int]:
        """Finish the last shard, give every shard its final name; (num_examples, num_bytes)."""
        if self._writer is None and not self.paths:
            self._writer = self._open()
        if self._writer is not None:
            self._finish()
        total = len(self.paths)
        for index, path in enumerate(self.paths):
            path.rename(self.directory / f"{self.split}-{index:05d}-of-{total:05d}.parquet")
        return self.num_examples, self.num_bytes
