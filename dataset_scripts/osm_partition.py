"""The semantic address partition (paper §3) of an OSM extract: streets cut at their junctions.

Per street name: centre line(s) (``osm_geometry.centre_lines``), junctions with differently
named streets projected onto them (shared nodes, roundabouts contracted to one node,
unnamed link roads), junctions closer than ``junction_merge_m`` grouped, lines cut between
groups. A piece's address is the main street + the crossing street at each end; at a
junction the crossing named is preferably a street passing through it (so a name change
of the main street is not taken as its crossing), then the higher road class, then the name.

Neighborhoods (the address's last part), by default, in this order of what the extract has:

1. the nearest ``place=suburb|neighbourhood|quarter`` node;
2. if it has none, the nearest ``place=city|town|village|hamlet`` node;
3. if it has neither, one neighborhood for the whole extract, named ``default_neighborhood``
   (the demo city passes its city name: ``--name`` or derived), else the extract's city (``OsmExtract.city``: its most
   common ``addr:city``), else a name made from the file name (``osm_read.extract_stem``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Point, box

from dataset_scripts.osm_geometry import centre_lines, cut, direction, group_positions, sample_positions
from dataset_scripts.osm_read import OsmExtract, OsmWay, extract_stem
from modeling_addressclip.address import Address

CLASS_RANK = {
    name: rank
    for rank, names in enumerate(
        [["pedestrian", "living_street", "road", "busway"], ["residential"], ["unclassified"], ["tertiary"],
         ["secondary"], ["primary"], ["trunk"], ["motorway"]]
    )
    for name in names + [n + "_link" for n in names]
}  # fmt: skip
TRAM_DISTANCE_M = 10.0
DROPPED_TAG_PREFIXES = ("name:", "old_name", "alt_name", "official_name:", "source")


@dataclass(frozen=True)
class SubStreet:
    """One addressable piece of a street: its address, centre line (UTM metres) and OSM tags."""

    address: Address
    line: LineString
    highway: str
    tags: dict[str, str]

    @property
    def length_m(self) -> float:
        return float(self.line.length)


@dataclass
class StreetPartition:
    """All sub-streets of an extract plus what is needed to place and explain them."""

    sub_streets: list[SubStreet]
    utm_zone: str
    neighborhoods: dict[str, tuple[float, float]]
    bounds: tuple[float, float, float, float]
    dropped: dict[str, int]
    stats: dict[str, float] = field(default_factory=dict)
    city: str | None = None  # the extract's city name (OsmExtract.city), if it has one
    neighborhood_source: str = ""  # which rule of the module docstring named the neighborhoods


@dataclass(frozen=True)
class _End:
    """One end of a piece: the crossing names (best first), or a bare line end (cut by the extract or not)."""

    crossings: tuple[str, ...] = ()
    cut: bool = False


def _node_components(ways) -> Callable[[int], int]:
    """Union-find over the nodes of ``ways``: ``find(node)`` names the connected group a node belongs to."""
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for way in ways:
        for a, b in zip(way.node_ids, way.node_ids[1:]):
            parent[find(a)] = find(b)
    return find


def _contract_roundabouts(extract: OsmExtract) -> dict[int, tuple[int, tuple[float, float]]]:
    """Node id -> (virtual node id, centroid) for every node of a roundabout (one junction each)."""
    find = _node_components(extract.roundabouts)
    coords = {n: xy for way in extract.roundabouts for n, xy in zip(way.node_ids, way.coords)}
    members: dict[int, list[int]] = {}
    for node in coords:
        members.setdefault(find(node), []).append(node)
    out = {}
    for k, (_, nodes) in enumerate(sorted(members.items())):
        centre = tuple(np.mean([coords[n] for n in nodes], axis=0))
        out.update({n: (-(10**15) - k, centre) for n in nodes})
    return out


def _contract(way: OsmWay, contraction: dict) -> OsmWay | None:
    ids, xy = [], []
    for node, coord in zip(way.node_ids, way.coords):
        node, coord = contraction.get(node, (node, coord))
        if not ids or ids[-1] != node:
            ids.append(node)
            xy.append(coord)
    if len(ids) < 2:
        return None
    return OsmWay(way.id, way.tags, ids, np.asarray(xy, dtype=float), way.cut_start, way.cut_end)


class _Network:
    """Street ways by name, their centre lines and their junctions."""

    def __init__(self, extract: OsmExtract, merge_m: float, carriage_m: float, min_length: float) -> None:
        contraction = _contract_roundabouts(extract)
        streets = [w for w in (_contract(w, contraction) for w in extract.streets) if w is not None]
        self.connectors = [w for w in (_contract(w, contraction) for w in extract.connectors) if w is not None]
        self.ways: dict[str, list[OsmWay]] = {}
        for way in streets:
            self.ways.setdefault(way.name, []).append(way)
        self.node_names: dict[int, set[str]] = {}
        self.node_xy: dict[int, np.ndarray] = {}
        for way in streets:
            for node, xy in zip(way.node_ids, way.coords):
                self.node_names.setdefault(node, set()).add(way.name)
                self.node_xy[node] = xy
        self.rank = {n: max(CLASS_RANK.get(w.highway, 0) for w in ws) for n, ws in self.ways.items()}
        self.lines = {
            name: centre_lines([LineString(w.coords) for w in ws], carriage_m, merge_m)
            for name, ws in sorted(self.ways.items())
        }
        self.junctions = self._shared_node_junctions()
        self._add_connector_junctions(3 * merge_m)

    def _shared_node_junctions(self) -> dict[str, dict[int, set[str]]]:
        out: dict[str, dict[int, set[str]]] = {}
        for node, names in self.node_names.items():
            for name in names if len(names) > 1 else ():
                out.setdefault(name, {}).setdefault(node, set()).update(names - {name})
        return out

    def _add_connector_junctions(self, max_gap: float) -> None:
        """Streets joined only through unnamed link roads meet where each touches the links."""
        find = _node_components(self.connectors)
        touching: dict[int, list[tuple[str, int]]] = {}
        for node in sorted({n for way in self.connectors for n in way.node_ids}):
            for name in sorted(self.node_names.get(node, ())):
                touching.setdefault(find(node), []).append((name, node))
        for members in touching.values():
            for name_a, node_a in members:
                for name_b, node_b in members:
                    gap = np.hypot(*(self.node_xy[node_a] - self.node_xy[node_b]))
                    if name_a != name_b and gap <= max_gap:
                        self.junctions.setdefault(name_a, {}).setdefault(node_a, set()).add(name_b)

    def passes_through(self, name: str, point: Point, margin: float, tol: float) -> bool:
        """Whether street ``name`` continues on both sides of ``point``."""
        for line in self.lines.get(name, ()):
            if line.distance(point) <= tol and margin < line.project(point) < line.length - margin:
                return True
        return False

    def cut_points(self, name: str) -> list[Point]:
        """Way ends of street ``name`` where the extract dropped the next node (cut by its boundary)."""
        ways = self.ways[name]
        return [Point(w.coords[0]) for w in ways if w.cut_start] + [Point(w.coords[-1]) for w in ways if w.cut_end]


class _Partitioner:
    """Cuts each street's centre lines into addressed sub-streets."""

    def __init__(self, extract: OsmExtract, min_length: float, merge_m: float, carriage_m: float,
                 neighborhood: Callable[[float, float], str]) -> None:  # fmt: skip
        self.net = _Network(extract, merge_m, carriage_m, min_length)
        self.min_length, self.merge_m, self.carriage_m = min_length, merge_m, carriage_m
        self.neighborhood = neighborhood
        self.area = box(*extract.bounds)
        self.trams = shapely.MultiLineString([t for t in extract.trams if len(t) >= 2])
        shapely.prepare(self.trams)
        self.dropped: dict[str, int] = {}
        self.sub_streets: list[SubStreet] = []

    def run(self) -> None:
        for name, lines in self.net.lines.items():
            junctions = self.net.junctions.get(name, {})
            for index, line in enumerate(lines):
                self._cut_line(name, line, self._groups(lines, index, junctions))

    def _groups(self, lines: list[LineString], index: int, junctions: dict[int, set[str]]) -> list:
        """Junction groups (position, names) on ``lines[index]``.

        A junction belongs to its nearest line of the street, and also to any line of the
        street that ends within ``junction_merge_m`` of it (a fragment reaching the junction).
        """
        items = []
        line = lines[index]
        ends = (Point(line.coords[0]), Point(line.coords[-1]))
        for node, names in sorted(junctions.items()):
            point = Point(self.net.node_xy[node])
            distances = [other.distance(point) for other in lines]
            nearest = int(np.argmin(distances)) == index and distances[index] <= self.carriage_m
            if nearest or min(end.distance(point) for end in ends) <= self.merge_m:
                items.append((line.project(point), frozenset(names)))
        groups = group_positions(items, self.merge_m, self.carriage_m)
        length = lines[index].length
        snap = self.merge_m / 2
        return [(0.0 if p <= snap else length if p >= length - snap else p, names) for p, names in groups]

    def _cut_line(self, name: str, line: LineString, groups: list) -> None:
        cuts = [(p, self._crossings(name, line.interpolate(p), names)) for p, names in groups]
        if not cuts or cuts[0][0] > 0.5:
            cuts.insert(0, (0.0, _End(cut=self._is_cut(name, Point(line.coords[0])))))
        if cuts[-1][0] < line.length - 0.5:
            cuts.append((line.length, _End(cut=self._is_cut(name, Point(line.coords[-1])))))
        for (start, end_a), (stop, end_b) in zip(cuts, cuts[1:]):
            if stop - start > 0.5:
                self._piece(name, cut(line, start, stop), end_a, end_b)

    def _crossings(self, name: str, point: Point, names: frozenset[str]) -> _End:
        def key(other: str) -> tuple:
            passing = self.net.passes_through(other, point, self.merge_m / 2, self.carriage_m)
            return (not passing, -self.net.rank.get(other, 0), other)

        return _End(crossings=tuple(sorted(names - {name}, key=key)))

    def _is_cut(self, name: str, point: Point) -> bool:
        """A bare line end lies where the extract cut the street (its real crossing is unknown)."""
        if not self.area.contains(point) or self.area.exterior.distance(point) <= 1.0:
            return True
        return any(point.distance(c) <= self.carriage_m for c in self.net.cut_points(name))

    def _piece(self, name: str, line: LineString, start: _End, end: _End) -> None:
        outside = line.difference(self.area).length
        if start.cut or end.cut or outside > self.merge_m:
            reason = "bbox-cut"
        elif not start.crossings and not end.crossings:
            reason = "no-junction"
        elif self._inside_crossing(line, start, end):
            reason = "inside-junction"
        elif line.length < self.min_length:
            reason = "too-short"
        else:
            middle = line.interpolate(0.5, normalized=True)
            crosses = choose_crosses(start.crossings, end.crossings)
            address = Address(name, crosses, self.neighborhood(middle.x, middle.y))
            self.sub_streets.append(self._sub_street(address, line))
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _inside_crossing(self, line: LineString, start: _End, end: _End) -> bool:
        """The piece runs between two carriageways of the street crossing at both its ends."""
        middle = line.interpolate(0.5, normalized=True)
        shared = set(start.crossings) & set(end.crossings)
        return any(g.distance(middle) <= self.carriage_m / 2 for name in shared for g in self.net.lines[name])

    def _sub_street(self, address: Address, line: LineString) -> SubStreet:
        middle = line.interpolate(0.5, normalized=True)
        ways = self.net.ways[address.main_street]
        way = min(ways, key=lambda w: (LineString(w.coords).distance(middle), w.id))
        tags = {k: v for k, v in way.tags.items() if not k.startswith(DROPPED_TAG_PREFIXES)}
        carriageways = _carriageway_count(ways, line, middle, self.carriage_m / 2)
        if carriageways > 1:
            tags["carriageways"] = str(carriageways)
        if self._has_tram(line):
            tags["tram"] = "yes"
        return SubStreet(address, line, way.highway, tags)

    def _has_tram(self, line: LineString) -> bool:
        if self.trams.is_empty:
            return False
        points = shapely.points([line.interpolate(p).coords[0] for p in sample_positions(line)])
        return bool(np.mean(shapely.dwithin(points, self.trams, TRAM_DISTANCE_M)) >= 0.5)


def _carriageway_count(ways: list[OsmWay], line: LineString, middle: Point, tol: float) -> int:
    """Same-name carriageways crossed by a ``2 * tol`` long cross-section at the middle of ``line``."""
    dx, dy = direction(line, line.project(middle)) * tol
    section = LineString([(middle.x - dy, middle.y + dx), (middle.x + dy, middle.y - dx)])
    hits = shapely.get_parts(shapely.intersection(section, shapely.MultiLineString([w.coords for w in ways])))
    offsets = sorted(section.project(p) for p in hits if p.geom_type == "Point")
    return max(1, sum(1 for i, o in enumerate(offsets) if i == 0 or o - offsets[i - 1] > 2.0))


def choose_crosses(start: tuple[str, ...], end: tuple[str, ...]) -> tuple[str, ...]:
    """One crossing per end, best-ranked first, never the same name twice ("near" if impossible)."""
    if not start or not end:
        return (start or end)[:1]
    pairs = [(i + j, i, j) for i, s in enumerate(start) for j, e in enumerate(end) if s != e]
    if not pairs:
        return start[:1]
    _, i, j = min(pairs)
    return (start[i], end[j])


def nearest_place(places: dict[str, tuple[float, float]]) -> Callable[[float, float], str]:
    """Neighborhood function: the name of the nearest place node (ties: alphabetical)."""
    names = sorted(places)
    if not names:
        return lambda x, y: "Unknown"
    xy = np.array([places[n] for n in names])

    def lookup(x: float, y: float) -> str:
        return names[int(np.argmin(np.hypot(xy[:, 0] - x, xy[:, 1] - y)))]

    return lookup


def neighborhood_places(
    extract: OsmExtract, default_neighborhood: str | None = None
) -> tuple[dict[str, tuple[float, float]], str]:
    """The places that name neighborhoods and which fallback gave them (module docstring, rules 1-3)."""
    if extract.places:
        return dict(extract.places), "place=suburb|neighbourhood|quarter nodes"
    if extract.fallback_places:
        return dict(extract.fallback_places), "place=city|town|village|hamlet nodes (no suburb/neighbourhood/quarter)"
    name = default_neighborhood or extract.city or extract_stem(extract.path or "city")
    minx, miny, maxx, maxy = extract.bounds
    return {name: ((minx + maxx) / 2, (miny + maxy) / 2)}, "one neighborhood for the whole extract (no place nodes)"


def partition_extract(
    extract: OsmExtract, *, min_length_m: float, junction_merge_m: float, carriageway_merge_m: float,
    neighborhood: Callable[[float, float], str] | None, default_neighborhood: str | None = None,
) -> StreetPartition:  # fmt: skip
    """Run the partition on a parsed extract (see module docstring)."""
    places, source = neighborhood_places(extract, default_neighborhood)
    if neighborhood is not None:
        source = "a given function"
    lookup = neighborhood or nearest_place(places)
    worker = _Partitioner(extract, min_length_m, junction_merge_m, carriageway_merge_m, lookup)
    worker.run()
    subs = sorted(worker.sub_streets, key=lambda s: (s.address.format(), s.line.coords[0]))
    stats = _stats(extract, worker.net, subs)
    dropped = dict(sorted(worker.dropped.items()))
    return StreetPartition(subs, extract.utm_zone, places, extract.bounds, dropped, stats, extract.city, source)


def _stats(extract: OsmExtract, net: _Network, subs: list[SubStreet]) -> dict[str, float]:
    lengths = [s.length_m for s in subs]
    return {
        "highway_ways": extract.counts.get("highway_ways", 0),
        "named_street_ways": extract.counts.get("named_street_ways", 0),
        "street_names": len(net.ways),
        "junction_nodes": sum(len(v) > 1 for v in net.node_names.values()),
        "sub_streets": len(subs),
        "sub_streets_50m": sum(x >= 50.0 for x in lengths),
        "distinct_addresses": len({s.address for s in subs}),
        "distinct_addresses_50m": len({s.address for s in subs if s.length_m >= 50.0}),
        "median_length_m": float(np.median(lengths)) if lengths else 0.0,
    }
