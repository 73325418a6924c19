"""The web demo of ``addressclip demo`` and the Space's ``app.py``: drop a street photo, see its ranked addresses,
where they are on the city map, and the similarity map of the best one over the dataset (paper Fig. 6).

Everything is offline: the pipeline is loaded once, the dataset's image embeddings are computed once, the maps are
matplotlib images, the page uses gradio's bundled fonts and no analytics. Uploads are deleted after each answer.
"""

from __future__ import annotations

import html
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from PIL import Image  # noqa: E402

from addressclip_train.cli import load_localizer  # noqa: E402
from addressclip_train.places import street_map  # noqa: E402
from addressclip_train.similarity_map import load_splits  # noqa: E402
from addressclip_train.web_map import CityMap, embed_rows, explain_image  # noqa: E402
from modeling_addressclip.data import undecoded_images  # noqa: E402
from modeling_addressclip.image_utils import ImageLoadError  # noqa: E402

MAX_FILE_SIZE = "20mb"
SPLITS = ("train", "database", "query")
NO_ANSWER = (
    "**No confident address.** The best score is below the model's abstain threshold: "
    "this may not be a street view of this city."
)
INTRO = (
    "# AddressCLIP: where was this street photo taken?\n"
    "Drop, paste or upload a street-level photo, or pick an example below."
)


def demo_city_splits(bank: list[str]) -> dict[str, Any]:
    """The demo city's splits if it is already built (never built here: minutes) and ``bank`` has its addresses."""
    from dataset_scripts.demo_city import default_cache_dir, load_demo_city

    if not (default_cache_dir() / "README.md").is_file():
        return {}
    splits = dict(load_demo_city())
    return splits if set(bank) & set(splits["query"]["address"]) else {}


def write_examples(rows, folder: Path, count: int = 8) -> list[tuple[str, str]]:
    """Up to ``count`` photos of ``rows`` (distinct addresses first) as files of their own bytes, with their address."""
    seen: dict[str, int] = {}
    for i, address in enumerate(rows["address"]):
        seen.setdefault(str(address), i)
    picks = list(seen.values())[:count] or list(range(min(count, len(rows))))
    images = undecoded_images(rows.select_columns(["image", "address"]).select(picks))
    examples = []
    for k, row in enumerate(images):
        data = row["image"]["bytes"] or Path(row["image"]["path"]).read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            suffix = (probe.format or "png").lower().replace("jpeg", "jpg")
        path = folder / f"example_{k}.{suffix}"
        path.write_bytes(data)
        examples.append((str(path), f"true: {row['address']}"))
    return examples


class DemoApp:
    """The pipeline (loaded once), and with a dataset its city map, cached image embeddings and example photos."""

    def __init__(
        self,
        model: str,
        dataset: str | os.PathLike | None = None,
        split: str = "query",
        top_k: int = 5,
        min_score: float | None = None,
        device: str | None = None,
    ):
        self.localizer = load_localizer(model, device)
        self.top_k, self.min_score = top_k, min_score
        self.rows, self.city, self.embeddings, self.examples = None, None, None, []
        self.note, self.keep = "", frozenset()
        splits = load_splits(dataset) if dataset is not None else demo_city_splits(self.localizer.model.address_bank)
        if not splits:
            self.note = "No dataset: no map or similarity view (pass --dataset DIR; the demo city is not built here)."
            return
        self.rows = splits[split] if split in splits else next(iter(splits.values()))
        self.city = CityMap(street_map(self.localizer.model, list(splits.values())))
        start = time.perf_counter()
        self.embeddings = embed_rows(self.localizer, self.rows)
        seconds = time.perf_counter() - start
        print(f"addressclip demo: embedded {len(self.rows)} images for the similarity map in {seconds:.1f} s")
        self.folder = Path(tempfile.mkdtemp(prefix="addressclip-examples-"))
        self.examples = write_examples(self.rows, self.folder)
        # One answer at startup, so that the person's first answer is a warm one.
        if self.examples and (top := self.localize({"path": self.examples[0][0]})[3]):
            explain_image(self.localizer, self.rows, self.embeddings, top, streets=self.city.streets)

    def localize(self, payload: dict[str, Any] | None):
        """(best address, ranked table, city map, top address) for one upload; a readable message if it fails."""
        if not payload:
            return "", [], None, None
        try:
            predictions = self.localizer(payload["path"], top_k=self.top_k, min_score=self.min_score)
        except ImageLoadError as err:  # the pipeline's own message, naming the file as the person called it
            message = str(err).replace(payload["path"], payload.get("orig_name") or "the upload")
            return f"<div id='upload-error'><b>Cannot read this image.</b> {html.escape(message)}</div>", [], None, None
        city = self.city.render(predictions) if self.city else None
        if not predictions:
            return NO_ANSWER, [], city, None
        table = [
            [rank, row["address"], round(row["score"], 4), round(row["similarity"], 4)]
            for rank, row in enumerate(predictions, start=1)
        ]
        return best_markdown(predictions[0]), table, city, predictions[0]["address"]

    def explain(self, payload: dict[str, Any] | None, address: str | None):
        """The similarity map of the top address over the dataset; then the upload is deleted."""
        try:
            if self.rows is None or not address:
                return None
            return explain_image(self.localizer, self.rows, self.embeddings, address, streets=self.city.streets)
        finally:
            forget_upload(payload, self.keep)

    def pick_example(self, evt: gr.SelectData) -> str:
        """The file of the example photo clicked in the gallery (it becomes the upload)."""
        return self.examples[evt.index][0]


def best_markdown(best: dict[str, Any]) -> str:
    """The best address in large type, with its parts."""
    cross = " and ".join(best["cross_streets"] or []) or "-"
    return (
        f"<div id='best-address' style='font-size:1.9em;font-weight:700'>{html.escape(best['address'])}</div>\n\n"
        f"**Main street:** {best['main_street'] or '-'} · **Cross streets:** {cross} · "
        f"**Neighborhood:** {best['neighborhood'] or '-'} · score {best['score']:.3f} (cosine {best['similarity']:.3f})"
    )


def forget_upload(payload: dict[str, Any] | None, keep: frozenset[Path] = frozenset()) -> None:
    """Delete an uploaded file (only inside gradio's upload folder, never one of ``keep``) and its emptied folder.

    gradio's cache is content-addressed: an example photo, clicked or uploaded, is the gallery's own cached file.
    """
    path = Path((payload or {}).get("path") or "")
    folder = Path(get_upload_folder()).resolve()
    if not path.name or folder not in path.resolve().parents or path.resolve() in keep:
        return
    path.unlink(missing_ok=True)
    if path.parent != folder and not any(path.parent.iterdir()):
        shutil.rmtree(path.parent, ignore_errors=True)


def build_demo(model: str, dataset: str | os.PathLike | None = None, split: str = "query", **options: Any) -> gr.Blocks:
    """The gradio app for a saved model directory (or Hub id) and, optionally, an IAL dataset directory.

    ``options``: ``top_k`` (5), ``min_score`` (the model's abstain threshold), ``device`` (as the pipeline's).
    """
    app = DemoApp(model, dataset, split, **options)
    with gr.Blocks(title="AddressCLIP", analytics_enabled=False, delete_cache=(600, 600)) as demo:
        gr.Markdown(INTRO + (f"\n\n_{app.note}_" if app.note else ""))
        with gr.Row():
            with gr.Column(scale=2):
                photo = gr.Image(
                    label="Street photo",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    format="png",
                    elem_id="photo",
                    height=320,
                )
                gallery = gr.Gallery(
                    app.examples or None,
                    label=f"Examples ({split} split)",
                    columns=4,
                    height=220,
                    allow_preview=False,
                    visible=bool(app.examples),
                    elem_id="examples",
                )
            with gr.Column(scale=3):
                best = gr.Markdown(elem_id="best")
                table = gr.Dataframe(
                    headers=["#", "address", "score", "cosine"],
                    label="Top addresses",
                    wrap=True,
                    interactive=False,
                    column_widths=["7%", "63%", "15%", "15%"],
                    elem_id="ranking",
                )
        with gr.Row():
            shown = dict(type="pil", format="png", interactive=False)
            city = gr.Image(
                label="City map: the ranked addresses", elem_id="city-map", visible=app.city is not None, **shown
            )
            explain = gr.Image(
                label=f"Explain: similarity of every {split}-split image to the best address (Fig. 6)",
                elem_id="explain",
                visible=app.rows is not None,
                **shown,
            )
        app.keep = frozenset(Path(item["image"]["path"]).resolve() for item in gallery.value or [])
        top = gr.State(None)
        answer = dict(preprocess=False, show_progress="minimal", queue=False)
        photo.change(app.localize, photo, [best, table, city, top], **answer).then(
            app.explain, [photo, top], explain, preprocess=False, show_progress="hidden"
        )
        gallery.select(app.pick_example, None, photo, show_progress="hidden")
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Serve the app: localhost unless ``host`` says otherwise, an upload size limit, no tunnel unless asked."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"addressclip demo: WARNING: serving on {host}, reachable from other machines", file=sys.stderr)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE, ssr_mode=False)


__all__ = ["DemoApp", "build_demo", "launch"]
