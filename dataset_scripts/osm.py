"""OSM extract -> semantic address partition (paper §3) + reverse geocoder.

Streets of any OpenStreetMap extract are cut at their junctions into sub-streets whose
addresses read "Main between Cross A and Cross B, Neighborhood" (see ``osm_partition``;
its docstring says where neighborhoods come from when an extract has no suburb nodes).
Two extracts ship (© OpenStreetMap contributors, ODbL 1.0; ``data/NOTICE``): central Helsinki
(``HELSINKI_PBF``, the demo city) and Kotka's Karhula area (``KOTKA_PBF``); both are always
checked against their sha256. Any ``.osm.pbf``, ``.osm``, ``.osm.bz2`` or ``.osm.gz`` works::

    python -m dataset_scripts.osm --pbf dataset_scripts/data/kotka.osm.pbf --summary
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import osmium
import shapely
from shapely.geometry import Point

from dataset_scripts.osm_partition import StreetPartition, SubStreet, partition_extract
from dataset_scripts.osm_read import OsmExtract, extract_stem, load_extract
from modeling_addressclip.address import Address
from modeling_addressclip.geo import latlon_to_utm

__all__ = [
    "HELSINKI_PBF", "HELSINKI_SHA256", "KOTKA_PBF", "KOTKA_SHA256", "OSM_ATTRIBUTION", "SHIPPED_EXTRACTS",
    "SHIPPED_NAMES", "extract_path",
    "GeocodeResult", "OsmExtract", "ReverseGeocoder", "StreetPartition", "SubStreet", "extract_stem", "file_sha256",
    "partition_streets", "read_extract", "shipped_sha256", "summary_lines", "verify_extract",
]  # fmt: skip

DATA = Path(__file__).resolve().parent / "data"
HELSINKI_PBF = DATA / "helsinki.osm.pbf"
HELSINKI_SHA256 = "b73e9c2c82054d654209b0127f1c3287d5900d6780a6083bf3a45ead8ba3e5ee"
KOTKA_PBF = DATA / "kotka.osm.pbf"
KOTKA_SHA256 = "39a274a125205531b4d1de7d0059802ffbb3f1a4cec915d0399c8b195274767b"
SHIPPED_EXTRACTS = {HELSINKI_PBF: HELSINKI_SHA256, KOTKA_PBF: KOTKA_SHA256}
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0, https://www.openstreetmap.org/copyright"
TIE_TOLERANCE_M = 1e-6


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_extract(path: str | Path, sha256: str | None = None) -> Path:
    """Check that ``path`` is a complete, readable OSM file (with ``sha256`` if given); else ``ValueError``.

    Only reads: a corrupted, truncated or swapped file fails here, before anything is written.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"OSM extract {path} does not exist or is not a file")
    if sha256 is not None and (actual := file_sha256(path)) != sha256.lower():
        raise ValueError(
            f"OSM extract {path} has sha256 {actual}, expected {sha256.lower()}: the file is corrupted, "
            "truncated or not the expected extract"
        )
    try:  # one full decoding pass (fast: a filter that keeps nothing), so truncation is caught here
        for _ in osmium.FileProcessor(str(path)).with_filter(osmium.filter.KeyFilter("\x00")):
            pass
    except Exception as err:  # osmium raises RuntimeError for truncated/garbled data
        raise ValueError(f"OSM extract {path} is not a readable OSM file: {err}") from err
    return path


SHIPPED_NAMES = {"helsinki": HELSINKI_PBF, "kotka": KOTKA_PBF}


def extract_path(text: str | Path) -> Path:
    """``--pbf``: a file path, or the name of a shipped extract (``helsinki``, ``kotka``) when no such file exists,
    so an installed package (no checkout) can build the second city too."""
    path = Path(text).expanduser()
    if not path.exists() and str(text).lower() in SHIPPED_NAMES:
        return SHIPPED_NAMES[str(text).lower()]
    return path


def shipped_sha256(path: str | Path) -> str | None:
    """The sha256 a shipped extract must have (``SHIPPED_EXTRACTS``), None for any other file."""
    return SHIPPED_EXTRACTS.get(Path(path).resolve())


def read_extract(path: str | Path, sha256: str | None = None) -> OsmExtract:
    """Verify (``verify_extract``) then parse an extract; the shipped extracts are always checksummed."""
    path = Path(path)
    verify_extract(path, sha256 or shipped_sha256(path))
    try:
        return load_extract(path)
    except Exception as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"OSM extract {path} could not be parsed: {err}") from err


def partition_streets(
    path_or_extract: str | Path | OsmExtract,
    *,
    min_length_m: float = 20.0,
    junction_merge_m: float = 20.0,
    carriageway_merge_m: float = 30.0,
    neighborhood: Callable[[float, float], str] | None = None,
    default_neighborhood: str | None = None,
) -> StreetPartition:
    """Semantic address partition of an extract (paper §3).

    ``neighborhood`` maps a UTM point (east, north) to a name; by default the nearest
    ``place=suburb|neighbourhood|quarter`` node (admin polygons are clipped in extracts), else the
    nearest city/town/village/hamlet node, else one neighborhood named ``default_neighborhood``
    (or the extract's city, or its file name): ``osm_partition``'s docstring.
    Pieces not turned into addresses are counted in ``StreetPartition.dropped`` by reason:
    ``bbox-cut`` (an end cut by the extract, its crossing unknown), ``no-junction`` (no
    crossing at either end), ``too-short`` (under ``min_length_m``).
    """
    extract = path_or_extract if isinstance(path_or_extract, OsmExtract) else read_extract(path_or_extract)
    return partition_extract(
        extract, min_length_m=min_length_m, junction_merge_m=junction_merge_m,
        carriageway_merge_m=carriageway_merge_m, neighborhood=neighborhood,
        default_neighborhood=default_neighborhood,
    )  # fmt: skip


@dataclass(frozen=True)
class GeocodeResult:
    """Reverse-geocoding answer: an address (None when no street is near) and why."""

    address: Address | None
    distance_m: float
    message: str
    sub_street: SubStreet | None = None


class ReverseGeocoder:
    """Point -> address of the nearest sub-street within ``max_distance_m``.

    Ties (distances equal within 1 micrometre) go to the alphabetically first address text.
    """

    def __init__(self, partition: StreetPartition, max_distance_m: float = 50.0) -> None:
        if not partition.sub_streets:
            raise ValueError("the partition has no sub-streets to geocode against")
        self.partition = partition
        self.max_distance_m = float(max_distance_m)
        self._lines = [s.line for s in partition.sub_streets]
        self._tree = shapely.STRtree(self._lines)

    def __call__(self, latitude: float, longitude: float) -> GeocodeResult:
        east, north, _ = latlon_to_utm(latitude, longitude, self.partition.utm_zone)
        return self.from_utm(float(east[0]), float(north[0]))

    def from_utm(self, east: float, north: float) -> GeocodeResult:
        """Same as calling with lat/lon, for a point already in the partition's UTM zone."""
        point = Point(east, north)
        nearest = int(self._tree.nearest(point))
        best = self._lines[nearest].distance(point)
        candidates = self._tree.query(point, predicate="dwithin", distance=best + TIE_TOLERANCE_M)
        subs = [self.partition.sub_streets[int(i)] for i in candidates]
        subs = [s for s in subs if s.line.distance(point) <= best + TIE_TOLERANCE_M] or [
            self.partition.sub_streets[nearest]
        ]
        chosen = min(subs, key=lambda s: (s.address.format(), s.line.coords[0]))
        if best > self.max_distance_m:
            message = f"no street within {self.max_distance_m:g} m (nearest: {best:.1f} m)"
            return GeocodeResult(None, float(best), message)
        message = f"{chosen.address.format()} ({best:.1f} m away)"
        return GeocodeResult(chosen.address, float(best), message, chosen)


def summary_lines(partition: StreetPartition, seconds: float | None = None) -> list[str]:
    """Human-readable statistics of a partition (what the CLI prints)."""
    s = partition.stats
    lines = [
        f"UTM zone {partition.utm_zone}, bounds {tuple(round(b, 1) for b in partition.bounds)}",
        f"highway ways: {s.get('highway_ways', 0)}, named street ways: {s.get('named_street_ways', 0)}",
        f"street names: {s.get('street_names', 0)}, junction nodes: {s.get('junction_nodes', 0)}",
        f"sub-streets: {s.get('sub_streets', 0)} ({s.get('sub_streets_50m', 0)} >= 50 m), "
        f"distinct addresses: {s.get('distinct_addresses', 0)} ({s.get('distinct_addresses_50m', 0)} >= 50 m)",
        f"median sub-street length: {s.get('median_length_m', 0.0):.1f} m",
        "dropped: " + (", ".join(f"{k} {v}" for k, v in partition.dropped.items()) or "none"),
        f"neighborhoods: {', '.join(sorted(partition.neighborhoods)) or 'none'}"
        + (f" (from {partition.neighborhood_source})" if partition.neighborhood_source else ""),
        f"city: {partition.city or 'unknown (no addr:city tag or place=city|town node)'}",
    ]
    if seconds is not None:
        lines.append(f"parse + partition time: {seconds:.2f} s")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Semantic address partition of an OSM extract.")
    parser.add_argument(
        "--pbf",
        type=extract_path,
        default=HELSINKI_PBF,
        help="OSM extract (.osm.pbf, .osm, .osm.bz2, .osm.gz, .opl) or a shipped one: helsinki, kotka",
    )
    parser.add_argument("--sha256", default=None, help="expected sha256 of the extract")
    parser.add_argument("--summary", action="store_true", help="print statistics only, not every address")
    parser.add_argument("--min-length", type=float, default=20.0, help="shortest sub-street kept (m)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    partition = partition_streets(read_extract(args.pbf, args.sha256), min_length_m=args.min_length)
    seconds = time.perf_counter() - start
    if not args.summary:
        for sub in partition.sub_streets:
            print(f"{sub.length_m:7.1f} m  {sub.highway:<12} {sub.address.format()}")
    print("\n".join(summary_lines(partition, seconds)))
    if partition.sub_streets:
        print(f"lengths: min {min(s.length_m for s in partition.sub_streets):.1f} m, "
              f"mean {statistics.fmean(s.length_m for s in partition.sub_streets):.1f} m")  # fmt: skip
    print(OSM_ATTRIBUTION)


if __name__ == "__main__":
    main()
