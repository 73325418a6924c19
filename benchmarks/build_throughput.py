"""IAL builder throughput and memory: build 10k and 100k synthetic SF-XL rows, each in its own process.

    python -m benchmarks.build_throughput            # 10,000 and 100,000 rows
    python -m benchmarks.build_throughput --tiny     # 500 and 2,000 rows (CI, < 60 s)

Each size gets a raw tree in the SF-XL ``processed/`` layout (tiny @-named JPEGs, 12 per
panorama, release annotation JSONs); a fresh subprocess runs ``sf_ial.build_sf_ial`` on it
and reports rows/s and its peak RSS. Prints the RSS ratio (the builder streams, so it should
stay ≤ 1.1) and the projected SF-IAL-Large build time at the measured rate.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_scripts.vg_names import VGName, format_vg_name

SF_IAL_LARGE_IMAGES = 1_960_000
VIEWS = 12
STREETS = ["Market Street", "Mission Street", "Howard Street", "Folsom Street", "Bryant Street", "Harrison Street"]
CROSSES = [f"{n} Street" for n in ("1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th")]


def _jpegs(count: int = 64, size: int = 16) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def _address(pano: int) -> str:
    main, a, b = STREETS[pano % 6], CROSSES[(pano // 6) % 8], CROSSES[(pano // 6 + 1) % 8]
    return f"{main}, Hood {pano % 40} ({a}, {b})"


def make_raw_tree(directory: Path, rows: int) -> tuple[Path, Path]:
    """SF-XL-like ``processed/train`` with ``rows`` tiny crops + the three release JSONs (7:2:1 by panorama)."""
    images, annotations = directory / "sf_xl" / "processed" / "train", directory / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    jpegs, entries = _jpegs(), {"train": {}, "database": {}, "queries": {}}
    for index in range(rows):
        pano, view = divmod(index, VIEWS)
        name = VGName(550000.0 + 7.5 * (pano % 500), 4180000.0 + 9.5 * (pano // 500), 10, "S", 37.77, -122.42,
                      f"p{pano:07d}", heading=30.0 * view)  # fmt: skip
        key = f"train/{format_vg_name(name)}"
        (images.parent / key).write_bytes(jpegs[index % len(jpegs)])
        split = ("train", "train", "train", "train", "train", "train", "train", "database", "database", "queries")
        entries[split[pano % 10]][key] = [f"a street view of pano {pano}", "verbose", _address(pano)]
    for split, values in entries.items():
        (annotations / f"SF_base_{split}.json").write_text(json.dumps(values))
    return images.parent.parent, annotations


def child(root: str, annotations: str, output: str) -> None:
    """Run one build and print its rate and peak RSS as JSON (this process only)."""
    from dataset_scripts.ial_builder import BuildOptions
    from dataset_scripts.sf_ial import build_sf_ial

    start = time.perf_counter()
    report = build_sf_ial(root, annotations, output, "base", BuildOptions(progress=False))
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    projection = next(line for line in (Path(output) / "README.md").read_text().splitlines() if "would take" in line)
    print(json.dumps({"rows_in": report.rows_in, "rows_written": report.rows_written, "seconds": seconds,
                      "rows_per_s": report.rows_in / seconds, "peak_rss_mb": rss_mb,
                      "card": projection.strip()}))  # fmt: skip


def measure(rows: int, workdir: Path) -> dict:
    """Make the raw tree, then build it in a fresh interpreter; that process's numbers."""
    directory = workdir / f"rows{rows}"
    root, annotations = make_raw_tree(directory, rows)
    command = [sys.executable, "-m", "benchmarks.build_throughput", "--child", str(root), str(annotations)]
    command.append(str(directory / "out"))  # the fresh interpreter starts in this one's directory (the root)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build of {rows} rows failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rows_written"] != rows:
        raise RuntimeError(f"{rows} rows in, {result['rows_written']} written")
    shutil.rmtree(directory, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="500 and 2,000 rows (CI)")
    parser.add_argument("--workdir", help="where to put the raw trees (default: a temp dir)")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "ANNOTATIONS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    sizes = (500, 2000) if args.tiny else (10_000, 100_000)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        results = {rows: measure(rows, Path(workdir)) for rows in sizes}
    for rows, r in results.items():
        print(
            f"{rows:>7} rows: {r['rows_per_s']:8.0f} rows/s, {r['seconds']:6.1f} s, peak RSS {r['peak_rss_mb']:6.1f} MB"
        )
    small, large = (results[s] for s in sizes)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    print(f"peak RSS ratio {sizes[1]}/{sizes[0]} rows: {ratio:.3f} (streaming target <= 1.1)")
    hours = SF_IAL_LARGE_IMAGES / large["rows_per_s"] / 3600
    print(f"projected SF-IAL-Large ({SF_IAL_LARGE_IMAGES:,} images) at {large['rows_per_s']:.0f} rows/s: {hours:.1f} h")
    print(f"card of the {sizes[1]}-row build: {large['card']}")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
