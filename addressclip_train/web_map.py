"""The pictures of the web demo (``addressclip demo``) and ``addressclip map --image``, drawn offline with matplotlib:
the city map of the ranked addresses at their places, and the paper's Fig. 6 similarity map of the best one
(``similarity_map``), both as PIL images."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image

from addressclip_train.places import StreetMap, street_map
from addressclip_train.similarity_map import draw_streets, plot_similarity_map
from modeling_addressclip.data import undecoded_images

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EDGE = dict(edgecolors="black", zorder=4)
RANK_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#8c564b")


class CityMap:
    """The city's streets (:func:`draw_streets`) and every address's place, drawn once; each answer only draws its
    ranked addresses over that background (matplotlib blitting: milliseconds).

    ``source`` is a :class:`StreetMap` (e.g. ``places.street_map(model)``: the model's own places) or dataset
    splits, whose image positions trace the streets (``StreetMap.from_images``).
    """

    def __init__(
        self,
        source: StreetMap | list[Any],
        size: tuple[int, int] = (820, 700),
        title: str = "Where the ranked addresses are",
    ):
        self.streets = source if isinstance(source, StreetMap) else StreetMap.from_images(source)
        self.centres = self.streets.centres
        self.fig, self.ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
        self.fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.3)
        ax = self.ax
        draw_streets(ax, self.streets)
        places = np.array(list(self.centres.values())).reshape(-1, 2)
        ax.scatter(*places.T, s=10, c="#444444", zorder=2, label="an address (its place on its sub-street)")
        ax.scatter([], [], s=120, c=RANK_COLOURS[0], marker="*", edgecolors="black", label="predicted, by rank")
        self.fig.legend(loc="lower right", fontsize=7)  # below the axes: never over a street
        ax.margins(0.06)
        ax.set_aspect("equal", adjustable="datalim")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.set(xlabel=f"UTM {self.streets.zone} east (m)", ylabel="north (m)", title=title)
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
                lines[0] += "  (no place known: not on the map)"
                continue
            line = self.streets.lines[row["address"]]
            east, north = self.centres[row["address"]]
            artists += [
                *ax.plot(line[:, 0], line[:, 1], color=colour, lw=3, solid_capstyle="round", zorder=3),
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


def explain_image(
    localizer, rows, embeddings: torch.Tensor, address: str, streets: StreetMap | None = None
) -> Image.Image:
    """The similarity map (paper Fig. 6) of ``address`` over ``rows``, from their cached image embeddings, over
    ``streets`` (default: ``places.street_map`` of the model and ``rows``)."""
    similarity = (embeddings @ localizer.encode_addresses([address])[0]).cpu().numpy()
    streets = streets or street_map(localizer.model, [rows])
    with tempfile.TemporaryDirectory(prefix="addressclip-explain-") as folder:
        out = Path(folder) / "map.png"
        plot_similarity_map(rows, similarity, address, out, size=(1100, 900), streets=streets)
        with Image.open(out) as image:
            return image.convert("RGB")


__all__ = ["CityMap", "embed_rows", "explain_image"]
