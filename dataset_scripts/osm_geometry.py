"""Plane geometry (UTM metres) for the address partition: centre lines and cutting.

A street name's ways are merged into centre lines: ``linemerge``, then a parallel
carriageway of the same name within ``merge_m`` is folded into the line it runs along
(the line moves to the middle), and line ends left close together are joined.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.ops import linemerge, substring

STEP_M = 5.0
PARALLEL_COS = 0.85  # |cos| of the angle between two lines to count as parallel (~32 degrees)


def sample_positions(line: LineString, step: float = STEP_M) -> np.ndarray:
    """Distances along ``line`` every ``step`` metres, both ends included."""
    count = max(int(np.ceil(line.length / step)), 1)
    return np.linspace(0.0, line.length, count + 1)


def direction(line: LineString, position: float) -> np.ndarray:
    """Unit tangent of ``line`` at ``position`` (metres along it)."""
    a = line.interpolate(max(position - 1.0, 0.0))
    b = line.interpolate(min(position + 1.0, line.length))
    vec = np.array([b.x - a.x, b.y - a.y])
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec


def alongside(line: LineString, other: LineString, tol: float) -> np.ndarray:
    """Mask over ``sample_positions(line)``: the sample runs parallel to ``other`` within ``tol``.

    A sample whose nearest point on ``other`` is one of its ends does not count, so a
    continuation or a side branch is not mistaken for a second carriageway.
    """
    positions = sample_positions(line)
    mask = np.zeros(len(positions), dtype=bool)
    for i, pos in enumerate(positions):
        point = line.interpolate(pos)
        along = other.project(point)
        if not 0.5 < along < other.length - 0.5 or point.distance(other) > tol:
            continue
        mask[i] = abs(float(direction(line, pos) @ direction(other, along))) >= PARALLEL_COS
    return mask


def midline(ref: LineString, partner: LineString, tol: float) -> LineString:
    """``ref`` moved halfway towards ``partner`` wherever the two run alongside."""
    dense = shapely.segmentize(ref, STEP_M)
    coords = np.asarray(dense.coords)
    mask = alongside(LineString(coords), partner, tol) if len(coords) > 1 else np.zeros(0, bool)
    positions = sample_positions(LineString(coords))
    out = []
    for pos, near in zip(positions, mask):
        point = dense.interpolate(pos)
        if near:
            other = partner.interpolate(partner.project(point))
            point = Point((point.x + other.x) / 2, (point.y + other.y) / 2)
        out.append((point.x, point.y))
    return _clean(out) or ref


def _clean(coords: list[tuple[float, float]]) -> LineString | None:
    kept = [c for i, c in enumerate(coords) if i == 0 or np.hypot(*np.subtract(c, coords[i - 1])) > 1e-6]
    return LineString(kept) if len(kept) >= 2 else None


def runs(line: LineString, mask: np.ndarray, min_length: float) -> list[LineString]:
    """Parts of ``line`` where ``mask`` (over its sample positions) is False, at least ``min_length`` long."""
    positions = sample_positions(line)
    out, start = [], None
    for pos, covered in zip(list(positions) + [None], list(mask) + [True]):
        if not covered and start is None:
            start = pos
        elif covered and start is not None:
            end = line.length if pos is None else pos
            if end - start >= min_length:
                out.append(substring(line, start, end))
            start = None
    return out


def _fold_carriageways(lines: list[LineString], tol: float, min_piece: float) -> list[LineString]:
    """Fold each line that runs alongside an accepted (longer) line into it."""
    queue = sorted(lines, key=lambda g: (-g.length, g.coords[0]))
    accepted: list[LineString] = []
    while queue:
        line = queue.pop(0)
        masks = [alongside(line, other, tol) for other in accepted]
        best = max(range(len(masks)), key=lambda i: masks[i].sum(), default=None)
        covered = 0.0 if best is None else masks[best].mean() * line.length
        if best is None or covered < min(0.5 * line.length, 50.0):
            accepted.append(line)
            continue
        accepted[best] = midline(accepted[best], line, tol)
        leftovers = runs(line, masks[best], min_piece)
        queue = sorted(queue + leftovers, key=lambda g: (-g.length, g.coords[0]))
    return accepted


def _end_points(lines: list[LineString]) -> list[tuple[int, int, np.ndarray]]:
    return [(i, k, np.asarray(line.coords[0 if k == 0 else -1])) for i, line in enumerate(lines) for k in (0, 1)]


def _join_pair(a: LineString, ka: int, b: LineString, kb: int) -> LineString:
    """Join end ``ka`` of ``a`` to end ``kb`` of ``b`` (0 = start, 1 = end) with a straight segment."""
    ca = list(a.coords) if ka == 1 else list(a.coords)[::-1]
    cb = list(b.coords) if kb == 0 else list(b.coords)[::-1]
    return _clean(ca + cb) or a


def _close_pair(lines: list[LineString], tol: float) -> tuple[int, int, int, int] | None:
    """Two ends of different lines within ``tol`` of each other and of no third end."""
    ends = _end_points(lines)
    xy = np.array([p for *_, p in ends])
    dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(dist, np.inf)
    close = dist <= tol
    for x, (i, ki, _) in enumerate(ends):
        near = np.flatnonzero(close[x])
        if len(near) == 1 and ends[near[0]][0] != i and np.flatnonzero(close[near[0]]).tolist() == [x]:
            return i, ki, ends[near[0]][0], ends[near[0]][1]
    return None


def join_close_ends(lines: list[LineString], tol: float) -> list[LineString]:
    """Join pairs of line ends closer than ``tol`` when no third end is that close."""
    lines = list(lines)
    while (pair := _close_pair(lines, tol)) is not None:
        i, ki, j, kj = pair
        joined = _join_pair(lines[i], ki, lines[j], kj)
        lines = [g for n, g in enumerate(lines) if n not in (i, j)] + [joined]
    return lines


def centre_lines(ways: list[LineString], merge_m: float, min_piece: float) -> list[LineString]:
    """Centre line(s) of one street name's ways (see module docstring)."""
    merged = linemerge(shapely.MultiLineString(ways)) if len(ways) > 1 else ways[0]
    parts = list(merged.geoms) if hasattr(merged, "geoms") else [merged]
    folded = _fold_carriageways(parts, merge_m, min_piece)
    joined = join_close_ends(folded, merge_m / 2)
    merged = linemerge(shapely.MultiLineString(joined)) if len(joined) > 1 else joined[0]
    out = list(merged.geoms) if hasattr(merged, "geoms") else [merged]
    return sorted(out, key=lambda g: (-g.length, g.coords[0]))


def group_positions(items: list[tuple[float, frozenset[str]]], merge_m: float, pair_m: float) -> list:
    """Group (position, names) along a line: gaps up to ``merge_m``, or ``pair_m`` when a name repeats.

    Returns [(mean position, names)], sorted by position.
    """
    groups: list[list[tuple[float, frozenset[str]]]] = []
    for pos, names in sorted(items, key=lambda t: (t[0], sorted(t[1]))):
        if groups:
            last = groups[-1]
            gap = pos - last[-1][0]
            shared = names & frozenset().union(*(n for _, n in last))
            if gap <= merge_m or (shared and gap <= pair_m):
                last.append((pos, names))
                continue
        groups.append([(pos, names)])
    return [(float(np.mean([p for p, _ in g])), frozenset().union(*(n for _, n in g))) for g in groups]


def cut(line: LineString, start: float, end: float) -> LineString:
    """The piece of ``line`` between two positions."""
    return substring(line, start, end)
