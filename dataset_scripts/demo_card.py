"""What a demo-city build tells its reader: the city's name and code, the dataset card, the CLI's lines, figures.

The card names the city and its source extract (file, sha256), the partition's statistics and where
its neighborhoods came from (``osm_partition``'s fallback chain), how the views were rendered, the
split statistics, the raw-pixel baseline and the OpenStreetMap attribution (ODbL 1.0). The figures
are the map of sub-streets and cameras (like paper Fig. 4) and a contact sheet of query views.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from dataset_scripts.osm import OSM_ATTRIBUTION, summary_lines
from dataset_scripts.schema import SPLITS
from dataset_scripts.street_view import stable_seed

__all__ = ["CitySource", "card_body", "city_code", "plot_map", "plot_samples", "report_lines", "slug", "source_lines"]


@dataclass(frozen=True)
class CitySource:
    """Where a demo city comes from: its name, the extract (file name, sha256) and its partition."""

    name: str
    extract: str  # file name of the OSM extract, or "a given partition"
    sha256: str | None
    partition: object  # dataset_scripts.osm.StreetPartition
    seconds: float = 0.0  # parse + partition

    @property
    def code(self) -> str:
        return city_code(self.name)


def slug(name: str) -> str:
    """Lowercase ASCII letters and digits joined by hyphens: ``"Etelä-Helsinki"`` -> ``"etela-helsinki"``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_name.lower())) or "city"


def city_code(name: str) -> str:
    """The ``location_id`` prefix of a city: its first three ASCII letters/digits, lowercase ("Kotka" -> "kot")."""
    return slug(name).replace("-", "")[:3]


def _source_text(city: CitySource) -> str:
    partition, stats = city.partition, city.partition.stats
    checksum = f" (sha256 `{city.sha256}`)" if city.sha256 else ""
    neighborhoods = ", ".join(sorted(partition.neighborhoods)) or "none"
    source = f", from {partition.neighborhood_source}" if partition.neighborhood_source else ""
    return (
        f"- Extract: `{city.extract}`{checksum}; UTM zone {partition.utm_zone} (the zone of the extract's centre).\n"
        f"- Partition: {stats.get('sub_streets', len(partition.sub_streets))} sub-streets "
        f"({stats.get('sub_streets_50m', 0)} of at least 50 m), {stats.get('distinct_addresses', 0)} distinct "
        f"addresses ({stats.get('distinct_addresses_50m', 0)} with a sub-street of at least 50 m).\n"
        f"- Neighborhoods: {neighborhoods}{source}."
    )


def card_body(
    report, city: CitySource, seed: int, image_size: int, *, spacing_m: float, min_length_m: float, nn_pixels: int,
    version: str,
) -> str:  # fmt: skip
    """The dataset card text (below the YAML): what, how, statistics, baseline, license.

    ``report`` is the build's ``demo_city.BuildReport``; the keywords are the builder's constants.
    """
    table = "\n".join(f"| {s} | {report.images[s]} | {report.locations[s]} | {report.addresses[s]} |" for s in SPLITS)
    return f"""# AddressCLIP demo city: {city.name} (image address localization)

A small image-address-localization (IAL) dataset in the schema of Pitts-IAL / SF-IAL
(AddressCLIP, ECCV 2024), built offline in minutes from an OpenStreetMap extract of
{city.name}. The street network and addresses are real; the **images are
procedurally rendered** stylised street views (no photographs), with BLIP-style scene
captions describing what was drawn (never a street name).

## Source
{_source_text(city)}

## How it was built
- Semantic address partition of the OSM streets (`dataset_scripts/osm.py`): each street is
  cut at its junctions into sub-streets addressed "Main between Cross A and Cross B, Neighborhood".
- Neighborhoods: the nearest `place=suburb|neighbourhood|quarter` node; an extract without them uses
  the nearest `place=city|town|village|hamlet` node; one without any place node is one neighborhood
  named after the city.
- Camera positions every ~{spacing_m:g} m along every sub-street of at least {min_length_m:g} m; four views
  per position (ahead, right, behind, left of the street; `heading` is the compass angle); `location_id`
  is `{city.code}-<sub-street>-<position>`.
- What a view shows depends on the street (OSM `highway`, `lanes`, `width`, `tram`; its paving), the
  block (each sub-street's palette shift, storeys, window rhythm and awning colour), a smooth random
  appearance field over UTM coordinates (facade colours, storeys, window rhythm at 150-400 m scale),
  each building's own variation, the heading, and per-image nuisance (weather, light, camera jitter,
  cars, pedestrians, JPEG noise).
- Split 7:2:1 by location into train / database / query (paper §5.1); {report.moved_to_train} locations were moved
  to train so that every database/query address also occurs in train.
- Seed {seed}, images {image_size}x{image_size} JPEG, builder version {version}; build time {report.seconds:.1f} s.

## Statistics
| split | images | locations | addresses |
|---|---|---|---|
{table}

## Baseline
Nearest neighbour on raw {nn_pixels}x{nn_pixels} RGB pixels (query vs train):
SSA@1 = {100 * report.nn_ssa1:.1f}%, SA@1 = {100 * report.nn_sa1:.1f}%.

## Usage
```python
from datasets import load_dataset
ds = load_dataset("path/to/this/directory")  # splits: train, database, query
```

## License
The addresses and coordinates are derived from OpenStreetMap data and are licensed under the
Open Database License (ODbL) 1.0: {OSM_ATTRIBUTION}.
"""


def source_lines(city: CitySource) -> list[str]:
    """What a build logs before rendering: the city, its extract and the partition statistics."""
    return [f"demo city {city.name} from {city.extract}", *summary_lines(city.partition, city.seconds)]


def report_lines(report, city: CitySource) -> list[str]:
    """What the CLI prints after a build: the splits, the baseline and the times."""
    lines = []
    for split in SPLITS:
        lines.append(f"{split:>8}: {report.images[split]:5d} images, {report.locations[split]:4d} locations, "
                     f"{report.addresses[split]:3d} addresses")  # fmt: skip
    lines.append(
        f"moved to train: {report.moved_to_train}; NN-pixel baseline SSA@1 {100 * report.nn_ssa1:.1f}% "
        f"SA@1 {100 * report.nn_sa1:.1f}%; build {report.seconds:.1f} s (parse + partition {city.seconds:.1f} s, "
        f"render {report.render_seconds:.1f} s)"
    )
    return lines


def plot_map(report, path: str | os.PathLike) -> None:
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
    ax.set_title(f"Demo city {report.city}: {len({p.address for p in plans})} addresses, {len(plans)} views")
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
