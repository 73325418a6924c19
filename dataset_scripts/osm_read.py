"""Read an OSM extract (.osm.pbf / .osm / .osm.bz2 / .osm.gz / .opl) into plain UTM geometry for the partition.

Only what the semantic address partition needs is kept: named street ways (split where the
extract dropped nodes, with those ends flagged as cut by the extract's boundary), unnamed
connector ways (link roads), roundabouts, tram tracks and place nodes. Everything is
projected to the extract's UTM zone (metres), the zone of the extract's centre. The
extract's city name (``OsmExtract.city``) is its most common ``addr:city`` value, else the
largest ``place=city|town`` node (city before town, then by ``population``), else None.
pyosmium picks the format and compression from the file name's suffixes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import osmium

from modeling_addressclip.geo import latlon_to_utm, utm_zone_for

STREET_HIGHWAYS = {
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
    "living_street", "pedestrian", "road", "busway",
    "motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link",
}  # fmt: skip
"""Highway classes that make streets (vehicle + pedestrian streets, no footways/service roads)."""

NEIGHBORHOOD_PLACES = ("suburb", "neighbourhood", "quarter")
FALLBACK_PLACES = ("city", "town", "village", "hamlet")
CITY_PLACES = ("city", "town")


@dataclass
class OsmWay:
    """One way (or the part of a way between nodes missing from the extract), in UTM metres."""

    id: int
    tags: dict[str, str]
    node_ids: list[int]
    coords: np.ndarray  # (n, 2) east, north
    cut_start: bool = False  # the node before the first one is missing from the extract
    cut_end: bool = False

    @property
    def name(self) -> str:
        return self.tags.get("name", "")

    @property
    def highway(self) -> str:
        return self.tags.get("highway", "")


@dataclass
class OsmExtract:
    """The parts of an OSM extract that the address partition uses (UTM metres)."""

    path: Path | None
    utm_zone: str
    bounds: tuple[float, float, float, float]
    streets: list[OsmWay]
    connectors: list[OsmWay]
    roundabouts: list[OsmWay]
    trams: list[np.ndarray]
    places: dict[str, tuple[float, float]]
    fallback_places: dict[str, tuple[float, float]]
    counts: dict[str, int] = field(default_factory=dict)
    city: str | None = None  # most common addr:city, else the largest city/town node's name


OSM_SUFFIXES = (".pbf", ".osm", ".opl", ".o5m", ".xml", ".bz2", ".gz")


def extract_stem(path: str | Path) -> str:
    """A place name from an extract's file name: ``new_york.osm.bz2`` -> ``"New York"`` (as-is unless lowercase)."""
    name = Path(path).name
    while Path(name).suffix.lower() in OSM_SUFFIXES and Path(name).stem:
        name = Path(name).stem
    name = " ".join(name.replace("_", " ").replace("-", " ").split()) or "city"
    return name.title() if name.islower() else name


def excluded_reason(tags: dict[str, str]) -> str | None:
    """Why a highway way cannot carry an address (tunnel, passage, area), or None."""
    if tags.get("tunnel", "no") != "no" or tags.get("covered", "no") not in ("no", "arcade"):
        return "tunnel"
    if tags.get("area") == "yes":
        return "area"
    return None


def _is_closed_area(ids: list[int], tags: dict[str, str]) -> bool:
    """Pedestrian squares drawn as closed ways count as areas even without area=yes."""
    return len(ids) > 3 and ids[0] == ids[-1] and tags.get("highway") == "pedestrian"


class _Collector:
    """Collects raw (lat/lon) geometry of the interesting objects while osmium streams the file."""

    def __init__(self) -> None:
        self.ways: list[tuple[str, int, dict[str, str], list[tuple[int, float, float] | None]]] = []
        self.places: list[tuple[str, str, float, float]] = []
        self.counts: dict[str, int] = {"highway_ways": 0, "named_street_ways": 0}
        self.addr_cities: Counter[str] = Counter()
        self.settlements: list[tuple[int, float, str]] = []  # (class rank: city 0, town 1; -population; name)

    def node(self, obj) -> None:
        place, name = obj.tags.get("place"), obj.tags.get("name")
        self._count_city(obj.tags.get("addr:city"))
        if name and place in NEIGHBORHOOD_PLACES + FALLBACK_PLACES and obj.location.valid():
            self.places.append((place, name, obj.location.lat, obj.location.lon))
        if name and place in CITY_PLACES:
            self.settlements.append((CITY_PLACES.index(place), -_population(obj.tags.get("population")), name))

    def _count_city(self, value: str | None) -> None:
        if value and value.strip():
            self.addr_cities[value.strip()] += 1

    def city(self) -> str | None:
        """Most common ``addr:city`` (ties: alphabetical), else the largest city/town node, else None."""
        if self.addr_cities:
            return min(self.addr_cities.items(), key=lambda item: (-item[1], item[0]))[0]
        return min(self.settlements)[2] if self.settlements else None

    def way(self, obj) -> None:
        tags = {t.k: t.v for t in obj.tags}
        self._count_city(tags.get("addr:city"))
        kind = self._kind(tags, [n.ref for n in obj.nodes])
        if kind is not None:
            nodes = [(n.ref, n.location.lat, n.location.lon) if n.location.valid() else None for n in obj.nodes]
            self.ways.append((kind, obj.id, tags, nodes))

    def _kind(self, tags: dict[str, str], ids: list[int]) -> str | None:
        if tags.get("railway") == "tram" and tags.get("tunnel", "no") == "no":
            return "tram"
        highway = tags.get("highway")
        if highway is None:
            return None
        self.counts["highway_ways"] += 1
        if highway not in STREET_HIGHWAYS:
            return None
        reason = excluded_reason(tags) or ("area" if _is_closed_area(ids, tags) else None)
        if reason is not None:
            self.counts[f"excluded_{reason}"] = self.counts.get(f"excluded_{reason}", 0) + 1
            return None
        if tags.get("junction") in ("roundabout", "circular"):
            return "roundabout"
        if "name" not in tags:
            return "connector"
        self.counts["named_street_ways"] += 1
        return "street"


def _population(value: str | None) -> float:
    """``population`` tag as a number (0 when absent or not a plain number such as "12 000")."""
    try:
        return float((value or "0").replace(" ", "").replace(",", ""))
    except ValueError:
        return 0.0


def _split_at_missing(nodes: list[tuple[int, int] | None]) -> list[tuple[list[tuple[int, int]], bool, bool]]:
    """Runs of present (node id, index) pairs, flagged when a missing node precedes/follows the run."""
    runs, current, cut_before = [], [], False
    for node in nodes:
        if node is None:
            if len(current) >= 2:
                runs.append((current, cut_before, True))
            current, cut_before = [], True
        else:
            current.append(node)
    if len(current) >= 2:
        runs.append((current, cut_before, False))
    return [r for r in runs if len({n[0] for n in r[0]}) >= 2]


def _header_box(path: Path) -> tuple[float, float, float, float] | None:
    """(min_lat, min_lon, max_lat, max_lon) of the file header's bounding box, if any."""
    reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
    try:
        box = reader.header().box()
        if not box.valid():
            return None
        return (box.bottom_left.lat, box.bottom_left.lon, box.top_right.lat, box.top_right.lon)
    finally:
        reader.close()


def _collect(path: Path) -> _Collector:
    collector = _Collector()
    processor = osmium.FileProcessor(str(path)).with_locations()
    processor = processor.with_filter(osmium.filter.KeyFilter("highway", "railway", "place", "addr:city"))
    for obj in processor:
        if obj.is_node():
            collector.node(obj)
        elif obj.is_way():
            collector.way(obj)
    return collector


def _zone_and_box(collector: _Collector, box) -> tuple[str, tuple[float, float, float, float]]:
    if box is None:
        lat_lon = np.array([(n[1], n[2]) for *_, nodes in collector.ways for n in nodes if n is not None])
        if lat_lon.size == 0:
            raise ValueError("the extract has no street ways with node locations")
        box = (*lat_lon.min(axis=0), *lat_lon.max(axis=0))
    zone = utm_zone_for((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    east, north, _ = latlon_to_utm([box[0], box[0], box[2], box[2]], [box[1], box[3], box[1], box[3]], zone)
    return zone, (float(east.min()), float(north.min()), float(east.max()), float(north.max()))


def _project_places(places, zone: str, kinds: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    chosen = [p for p in places if p[0] in kinds]
    if not chosen:
        return {}
    east, north, _ = latlon_to_utm([p[2] for p in chosen], [p[3] for p in chosen], zone)
    out: dict[str, tuple[float, float]] = {}
    for p, e, n in zip(chosen, east, north):
        out.setdefault(p[1], (float(e), float(n)))
    return out


def load_extract(path: Path) -> OsmExtract:
    """Parse ``path`` with osmium (no checksum check; see ``osm.read_extract``)."""
    collector = _collect(path)
    zone, bounds = _zone_and_box(collector, _header_box(path))
    lat = [n[1] for *_, nodes in collector.ways for n in nodes if n is not None]
    lon = [n[2] for *_, nodes in collector.ways for n in nodes if n is not None]
    east, north, _ = latlon_to_utm(lat, lon, zone) if lat else (np.zeros(0), np.zeros(0), zone)
    xy = np.column_stack([east, north])
    groups: dict[str, list] = {"street": [], "connector": [], "roundabout": [], "tram": []}
    offset = 0
    for kind, way_id, tags, nodes in collector.ways:
        index = {}
        for i, node in enumerate(nodes):
            if node is not None:
                index[i] = offset
                offset += 1
        present = [(node[0], index[i]) if node is not None else None for i, node in enumerate(nodes)]
        for run, cut_start, cut_end in _split_at_missing(present):
            coords = xy[[r[1] for r in run]]
            ids = [r[0] for r in run]
            groups[kind].append(OsmWay(way_id, tags, ids, coords, cut_start, cut_end))
    return OsmExtract(
        path=path, utm_zone=zone, bounds=bounds, streets=groups["street"], connectors=groups["connector"],
        roundabouts=groups["roundabout"], trams=[w.coords for w in groups["tram"]],
        places=_project_places(collector.places, zone, NEIGHBORHOOD_PLACES),
        fallback_places=_project_places(collector.places, zone, FALLBACK_PLACES), counts=collector.counts,
        city=collector.city(),
    )  # fmt: skip
