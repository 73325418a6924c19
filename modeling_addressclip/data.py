"""The collator: IAL dataset rows (schema in ARCHITECTURE.md) -> AddressCLIP model inputs.

One processor object does the image and text processing in training, evaluation and the
pipeline, so what the model sees never differs between them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps

from .configuration_addressclip import DEFAULT_ADDRESS_TEMPLATE


def caption_text(caption: str, address: str) -> str:
    """The text of Eq. 2: the scene caption followed by the address (§4.2); the address alone if no caption."""
    return f"{caption.strip()} {address}".strip()


def draft_size(image_processor) -> int | None:
    """The side an image must keep for ``image_processor``'s resize (None: it does not resize, decode in full)."""
    if not getattr(image_processor, "do_resize", True) or getattr(image_processor, "size", None) is None:
        return None
    size = image_processor.size
    return size.get("shortest_edge") or max(size.get("height") or 0, size.get("width") or 0) or None


def _open(image: dict, where: str, draft: int | None) -> Image.Image:
    """Decode an undecoded ``{"bytes", "path"}`` image; a JPEG only down to ``draft`` pixels a side."""
    data, path = image.get("bytes"), image.get("path")
    if data is None and not path:
        raise ValueError(f"{where}: 'image' has neither bytes nor a path")
    try:
        if data is None and "://" in path:  # a remote file (hf://, https://): datasets' own decoder, in full
            return datasets.Image().decode_example({"bytes": None, "path": path})
        opened = Image.open(io.BytesIO(data) if data is not None else path)
        if draft and opened.format == "JPEG":
            opened.draft("RGB", (draft, draft))
        opened.load()
    except (OSError, SyntaxError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{where}: cannot decode 'image' ({type(err).__name__}: {err})") from err
    if opened.getexif().get(Image.ExifTags.Base.Orientation) is not None:  # as datasets.Image decodes
        opened = ImageOps.exif_transpose(opened)
    return opened


def decode_image(image: Any, where: str, draft: int | None = None) -> Image.Image:
    """An RGB PIL image from a PIL image, an array, or an undecoded ``{"bytes", "path"}`` dict.

    ``datasets.Image(decode=False)`` rows are decoded here so a JPEG can use ``Image.draft``: libjpeg
    then scales by 1/2, 1/4 or 1/8 while decoding, never below ``draft`` pixels on either side (the
    image processor's resize target), which makes a 640x480 photo ~3x cheaper to decode and resize.
    Other formats, and ``draft=None``, decode in full. ``where`` names the row in errors.
    """
    if isinstance(image, dict):
        image = _open(image, where, draft)
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    raise ValueError(
        f"{where}: 'image' must be a PIL image, an array or a {{'bytes', 'path'}} dict, got {type(image).__name__}"
    )


def undecoded_images(dataset):
    """``dataset`` with its ``image`` column left undecoded (``{"bytes", "path"}``) for :func:`decode_image`.

    ``datasets.Image`` decodes every row in full when it is read; the collator decodes cheaper (draft
    JPEG decoding at the model's size). Only the feature changes, no data is rewritten. Datasets
    without an ``Image`` feature (lists of rows, streams of unknown features) are returned as they are.
    """
    feature = (getattr(dataset, "features", None) or {}).get("image")
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column("image", datasets.Image(mode=feature.mode, decode=False))
    return dataset


@dataclass
class AddressCLIPCollator:
    """Turn a list of IAL rows into ``{pixel_values, input_ids, attention_mask, caption_input_ids,
    caption_attention_mask, utm}``.

    Args:
        processor: a ``CLIPProcessor`` (tokenizer + image processor).
        address_template: the prompt around each address; must be the model config's ``address_template``.
        use_captions: tokenize ``caption + " " + address`` for Eq. 2. A batch in which every caption is
            empty carries no caption ids (no caption loss); a row without a caption uses its address alone.
        max_length: truncate texts to this many tokens (default: the tokenizer's ``model_max_length``).
        draft_decoding: decode undecoded JPEG rows (``{"bytes", "path"}``, see :func:`undecoded_images`) only
            down to the image processor's size (:func:`decode_image`); PIL images and arrays are used as given.
    """

    processor: Any
    address_template: str = DEFAULT_ADDRESS_TEMPLATE
    use_captions: bool = True
    max_length: int | None = None
    draft_decoding: bool = True

    @classmethod
    def from_config(cls, processor, config, **kwargs) -> AddressCLIPCollator:
        """A collator that matches ``config``: its template, and captions only when beta > 0."""
        return cls(processor, config.address_template, use_captions=config.caption_loss_weight > 0, **kwargs)

    def _tokenize(self, texts: list[str], prefix: str = "") -> dict[str, torch.Tensor]:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {f"{prefix}input_ids": tokens["input_ids"], f"{prefix}attention_mask": tokens["attention_mask"]}

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        for i, row in enumerate(rows):
            missing = [k for k in ("image", "address", "utm_east", "utm_north") if k not in row]
            if missing:
                raise ValueError(f"batch row {i} lacks field(s) {missing}; got {sorted(row)}")
        addresses = [row["address"] for row in rows]
        image_processor = self.processor.image_processor
        draft = draft_size(image_processor) if self.draft_decoding else None
        images = [decode_image(row["image"], f"batch row {i}", draft) for i, row in enumerate(rows)]
        batch = {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]}
        batch.update(self._tokenize([self.address_template.format(address=a) for a in addresses]))
        captions = [row.get("caption") or "" for row in rows]
        if self.use_captions and any(captions):
            batch.update(self._tokenize([caption_text(c, a) for c, a in zip(captions, addresses)], "caption_"))
        utm = [[row["utm_east"], row["utm_north"]] for row in rows]
        batch["utm"] = torch.tensor(utm, dtype=torch.float64)
        return batch


__all__ = ["AddressCLIPCollator", "caption_text", "decode_image", "draft_size", "undecoded_images"]
