"""The pictures of the web demo (``addressclip demo``), drawn offline with matplotlib: the city map of the ranked
addresses, and the paper's Fig. 6 similarity map of the best one (``similarity_map``), both as PIL images."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image

from addressclip_train.similarity_map import plot_similarity_map
from modeling_addressclip.data import undecoded_images

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EDGE = dict(edgecolors="black", zorder=4)
RANK_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#8c564b")


class CityMap:
    """Every image position of a dataset (the streets, as points) and each address's mean position, drawn once;
    each answer only draws its ranked addresses over that background (matplotlib blitting: milliseconds)."""

    def __init__(self, splits: list[Any], size: tuple[int, int] = (820, 700)):
        columns = [split.select_columns(["address", "utm_east", "utm_north"]) for split in splits]
        address = np.concatenate([np.asarray(c["address"], dtype=object) for c in columns]).astype(str)
        self.east = np.concatenate([np.asarray(c["utm_east"], dtype=float) for c in columns])
        self.north = np.concatenate([np.asarray(c["utm_north"], dtype=float) for c in columns])
        self.names, self.inverse = np.unique(address, return_inverse=True)
        sums = np.stack([np.bincount(self.inverse, self.east), np.bincount(self.inverse, self.north)], axis=1)
        means = sums / np.bincount(self.inverse)[:, None]
        self.centres = {str(name): (float(e), float(n)) for name, (e, n) in zip(self.names, means, strict=True)}
        self.row = {str(name): i for i, name in enumerate(self.names)}
        self.fig, self.ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
        self.fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.3)
        ax = self.ax
        ax.scatter(self.east, self.north, s=3, c="#b8b8b8", label="dataset images (they trace the streets)")
        ax.scatter(means[:, 0], means[:, 1], s=12, c="#444444", label="an address (mean of its images)")
        ax.scatter([], [], s=120, c=RANK_COLOURS[0], marker="*", edgecolors="black", label="predicted, by rank")
        ax.legend(loc="upper right", fontsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.ticklabel_format(useOffset=False, style="plain")
        zone = str(splits[0][0]["utm_zone"]) if len(splits[0]) else ""
        ax.set(xlabel=f"UTM {zone} east (m)", ylabel="north (m)", title="Where the ranked addresses are")
        self.fig.canvas.draw()
        # Freeze the limits the background was drawn with: an answer's scatter would otherwise re-autoscale the
        # axes (without the equal-aspect widening) and its markers would land off their streets.
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
        ax.set_autoscale_on(False)
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        self.lock = threading.Lock()

    def _artists(self, predictions: list[dict[str, Any]]) -> list[Any]:
        ax, artists, lines = self.ax, [], []
        for rank, row in reversed(list(enumerate(predictions, start=1))):
            colour = RANK_COLOURS[(rank - 1) % len(RANK_COLOURS)]
            lines.insert(0, f"{rank}. {row['address']}  ({row['score']:.3f})")
            if row["address"] not in self.centres:
                lines[0] += "  (not in the dataset: not on the map)"
                continue
            members = self.inverse == self.row[row["address"]]
            east, north = self.centres[row["address"]]
            artists += [
                ax.scatter(self.east[members], self.north[members], s=14, c=colour, zorder=3),
                ax.scatter(east, north, s=240 + 180 * (rank == 1), c=colour, marker="o*"[rank == 1], **EDGE),
                ax.annotate(str(rank), (east, north), ha="center", va="center", fontsize=8, weight="bold", zorder=5),
            ]
        text = "\n".join(lines) or "no confident address"
        return [*artists, self.fig.text(0.02, 0.2, text, fontsize=8, va="top", family="monospace")]

    def render(self, predictions: list[dict[str, Any]]) -> Image.Image:
        """The city with ``predictions`` (best first) highlighted: coloured by rank, the best as a star."""
        with self.lock:
            canvas = self.fig.canvas
            canvas.restore_region(self.background)
            artists = self._artists(predictions)
            for artist in artists:
                self.fig.draw_artist(artist)
            image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
            for artist in artists:
                artist.remove()
        return image


def embed_rows(localizer, rows, batch_size: int = 32) -> torch.Tensor:
    """Normalized (N, D) embeddings of every image of ``rows``, through the pipeline's image policy (once)."""
    images = undecoded_images(rows.select_columns(["image"]))
    batches = [localizer.embed_images(images[i : i + batch_size]["image"]) for i in range(0, len(rows), batch_size)]
    return torch.cat(batches) if batches else torch.zeros(0, 1)


def explain_image(localizer, rows, embeddings: torch.Tensor, address: str) -> Image.Image:
    """The similarity map (paper Fig. 6) of ``address`` over ``rows``, from their cached image embeddings."""
    similarity = (embeddings @ localizer.encode_addresses([address])[0]).cpu().numpy()
    with tempfile.TemporaryDirectory(prefix="addressclip-explain-") as folder:
        out = Path(folder) / "map.png"
        plot_similarity_map(rows, similarity, address, out, size=(1100, 900))
        with Image.open(out) as image:
            return image.convert("RGB")


__all__ = ["CityMap", "embed_rows", "explain_image"]
