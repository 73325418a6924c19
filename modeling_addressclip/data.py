"""The collator: IAL dataset rows (schema in docs/structure.md) -> AddressCLIP model inputs.

One processor object does the image and text processing, and one image policy
(``image_utils.load_image``) turns files into RGB, in training, evaluation and the pipeline, so what
the model sees never differs between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch

from .configuration_addressclip import DEFAULT_ADDRESS_TEMPLATE
from .image_utils import image_pixels


def caption_text(caption: str, address: str, include_address: bool = True) -> str:
    """The text of Eq. 2: the scene caption followed by the address (§4.2); the address alone if no caption.

    ``include_address=False``: the caption alone (``config.caption_includes_address``).
    """
    if not include_address:
        return caption.strip()
    return f"{caption.strip()} {address}".strip()


def undecoded_images(dataset):
    """``dataset`` with its ``image`` column left undecoded (``{"bytes", "path"}``) for :func:`decode_image`.

    ``datasets.Image`` decodes every row in full when it is read; the collator decodes through the image
    policy instead (``image_utils.load_image``, with draft JPEG decoding at the model's size), exactly as the
    pipeline decodes a file. Only the feature changes, no data is rewritten. Datasets
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
        caption_includes_address: Eq. 2's text is ``caption + " " + address`` (§4.2); False: the caption alone (a row
            without a caption then gets an empty text), for training a captions-only stand-in for a pretrained CLIP.
        draft_decoding: decode undecoded JPEG rows (``{"bytes", "path"}``, see :func:`undecoded_images`) only
            down to the image processor's size, as the pipeline does (``image_utils.load_image``); PIL images and
            arrays are used as given.
    """

    processor: Any
    address_template: str = DEFAULT_ADDRESS_TEMPLATE
    use_captions: bool = True
    max_length: int | None = None
    draft_decoding: bool = True
    caption_includes_address: bool = True

    @classmethod
    def from_config(cls, processor, config, **kwargs) -> AddressCLIPCollator:
        """A collator that matches ``config``: its text template (``"{address}."`` with prompt learning), captions
        only when beta > 0, with or without the address (``caption_includes_address``)."""
        settings = dict(
            use_captions=config.caption_loss_weight > 0,
            caption_includes_address=getattr(config, "caption_includes_address", True),
        )
        template = getattr(config, "text_template", config.address_template)
        return cls(processor, template, **{**settings, **kwargs})

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
        images = [row["image"] for row in rows]
        batch = {"pixel_values": image_pixels(self.processor, images, "batch row", self.draft_decoding)}
        batch.update(self._tokenize([self.address_template.format(address=a) for a in addresses]))
        captions = [row.get("caption") or "" for row in rows]
        if self.use_captions and any(captions):
            with_address = self.caption_includes_address
            texts = [caption_text(c, a, with_address) for c, a in zip(captions, addresses)]
            batch.update(self._tokenize(texts, "caption_"))
        utm = [[row["utm_east"], row["utm_north"]] for row in rows]
        batch["utm"] = torch.tensor(utm, dtype=torch.float64)
        return batch


__all__ = ["AddressCLIPCollator", "caption_text", "undecoded_images"]
