"""The similarity map of ``addressclip map`` (paper Fig. 6): every image of a split at its UTM position,
coloured by its cosine similarity to a text, with the text's true extent outlined, over the city's streets
(:func:`draw_streets`, the one street drawing of the CLI maps and the web demo's city map)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import datasets
import matplotlib
import numpy as np
from matplotlib.collections import LineCollection
from tqdm.auto import tqdm

from addressclip_train.places import StreetMap
from modeling_addressclip.address import Address
from modeling_addressclip.data import undecoded_images

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SPLITS = ("train", "database", "query")
STREET_GREY = "#9a9a9a"


def load_split(dataset: str | None, split: str):
    """One split of an IAL dataset directory (``save_to_disk`` or Hub-style), or of the demo city by default."""
    if dataset is None:
        from dataset_scripts.demo_city import load_demo_city

        return load_demo_city()[split]
    path = Path(dataset)
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))[split]
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset(str(path), split=split)


def load_splits(dataset: str, names: tuple[str, ...] = SPLITS) -> dict:
    """The splits of an IAL dataset directory that exist (at least one of ``names``)."""
    splits = {}
    for name in names:
        try:
            splits[name] = load_split(dataset, name)
        except (KeyError, ValueError, FileNotFoundError):
            continue
    if not splits:
        raise ValueError(f"{str(dataset)!r} has none of the splits {', '.join(names)}")
    return splits


def draw_streets(ax, streets: StreetMap, colour: str = STREET_GREY, zorder: float = 1, images: bool = True) -> None:
    """Every sub-street's line, thin grey (a one-point line as a dot); with ``images``, the image positions a map
    was traced from as faint dots under them. The one street drawing of ``addressclip map`` and the web demo."""
    if images and streets.images is not None:
        ax.scatter(*streets.images.T, s=3, c="#c8c8c8", zorder=zorder, label="dataset images (they trace the streets)")
    lines = [line for line in streets.lines.values() if len(line) > 1]
    dots = np.array([line[0] for line in streets.lines.values() if len(line) == 1]).reshape(-1, 2)
    ax.add_collection(LineCollection(lines, colors=colour, linewidths=0.9, zorder=zorder, label="streets"))
    if len(dots):
        ax.scatter(*dots.T, s=2, c=colour, zorder=zorder)
    ax.autoscale_view()


def query_similarity(localizer, rows, query: str, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Cosine similarity of every image in ``rows`` to ``query`` (encoded once, with the address template).

    Images are read undecoded, so they reach the model through the one image policy as in training.
    """
    text = localizer.encode_addresses([query])[0]
    images = undecoded_images(rows.select_columns(["image"]))
    starts = tqdm(range(0, len(rows), batch_size), desc="embedding images", unit="batch", disable=not progress)
    scores = [
        (localizer.embed_images(images[start : start + batch_size]["image"]) @ text).cpu().numpy() for start in starts
    ]
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def query_matches(rows, query: str) -> tuple[np.ndarray, str]:
    """Rows whose address, main street or neighborhood is ``query`` (case-insensitive), and which one matched."""
    keys = {query.strip().casefold()}
    with contextlib.suppress(ValueError):
        keys.add(Address.parse(query.strip()).format().casefold())
    for field, kind in (("address", "address"), ("main_street", "street"), ("neighborhood", "neighborhood")):
        mask = np.array([str(value).strip().casefold() in keys for value in rows[field]], dtype=bool)
        if mask.any():
            return mask, kind
    return np.zeros(len(rows), dtype=bool), "text"


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of (N, 2) points, counter-clockwise (Andrew's monotone chain)."""
    ordered = sorted({(float(x), float(y)) for x, y in points})
    if len(ordered) < 3:
        return np.array(ordered)

    def chain(sequence):
        out: list[tuple[float, float]] = []
        for p in sequence:
            while len(out) >= 2 and (
                (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0
            ):
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(chain(ordered) + chain(reversed(ordered)))


def extent_outlines(east: np.ndarray, north: np.ndarray, groups: list[str], radius: float) -> list[np.ndarray]:
    """One closed outline per sub-street (group): the hull of its image positions widened by ``radius`` metres."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    circle = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    outlines = []
    for group in sorted(set(groups)):
        members = np.array([g == group for g in groups])
        points = np.stack([east[members], north[members]], axis=1)
        hull = convex_hull((points[:, None, :] + circle[None]).reshape(-1, 2))
        outlines.append(np.vstack([hull, hull[:1]]))
    return outlines


def _draw_extent(ax, rows, east: np.ndarray, north: np.ndarray, mask: np.ndarray, kind: str) -> None:
    """Outline, in red, where the query really is: one widened hull per sub-street, or one for a neighborhood."""
    span = max(np.ptp(east), np.ptp(north), 1.0)
    groups = [str(a) for a in np.asarray(rows["address"], dtype=object)[mask]]
    if kind == "neighborhood":
        groups = [kind] * len(groups)
    for i, outline in enumerate(extent_outlines(east[mask], north[mask], groups, max(8.0, 0.012 * span))):
        label = "true extent of the query" if i == 0 else None
        ax.plot(outline[:, 0], outline[:, 1], color="red", lw=1.6, label=label)


def plot_similarity_map(
    rows,
    similarity: np.ndarray,
    query: str,
    out: Path,
    size: tuple[int, int] = (1000, 900),
    streets: StreetMap | None = None,
) -> str:
    """Scatter the images at their UTM position, brighter = more similar; outline the query's true extent in red;
    ``streets`` (in the rows' UTM zone) drawn underneath."""
    if len(rows) == 0:
        raise ValueError("the split has no images to map")
    east, north = np.asarray(rows["utm_east"], dtype=float), np.asarray(rows["utm_north"], dtype=float)
    mask, kind = query_matches(rows, query)
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax.set_facecolor("#2b2b2b")
    if streets is not None:
        draw_streets(ax, streets, colour="#6a6a6a", zorder=0, images=False)  # the rows themselves are the dots
    order = np.argsort(similarity)
    marker = max(4.0, min(40.0, 8000 / len(rows)))
    low, high = np.percentile(similarity, [2, 98]) if len(rows) > 1 else (similarity.min(), similarity.max() + 1e-6)
    dots = ax.scatter(east[order], north[order], c=similarity[order], cmap="inferno", vmin=low, vmax=high, s=marker)
    fig.colorbar(dots, ax=ax, fraction=0.04, label=f"cosine similarity to {query!r}")
    if mask.any():
        _draw_extent(ax, rows, east, north, mask, kind)
    best = int(np.argmax(similarity))
    ax.scatter(east[best], north[best], marker="*", s=260, c="cyan", edgecolors="black", label="most similar image")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_title(f"{query!r} ({kind} query): {int(mask.sum())} of {len(rows)} images are on it")
    ax.set_xlabel(f"UTM {rows[0]['utm_zone']} east (m)")
    ax.set_ylabel("north (m)")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return _summary(similarity, mask, kind, out)


def _summary(similarity: np.ndarray, mask: np.ndarray, kind: str, out: Path) -> str:
    if not mask.any():
        return f"no image matches the query as an address, street or neighborhood: no extent drawn; wrote {out}"
    inside = float(similarity[mask].mean())
    if mask.all():
        return f"{kind}: all {int(mask.sum())} images are on it, mean cosine {inside:.3f}; wrote {out}"
    outside = float(similarity[~mask].mean())
    return f"{kind}: {int(mask.sum())} images, mean cosine {inside:.3f} on it vs {outside:.3f} elsewhere; wrote {out}"


__all__ = [
    "convex_hull",
    "draw_streets",
    "extent_outlines",
    "load_split",
    "load_splits",
    "plot_similarity_map",
    "query_matches",
    "query_similarity",
]
