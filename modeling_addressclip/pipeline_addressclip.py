"""Image address localization pipeline: an image in, the top-k addresses of the model's bank out.

Inference is one image encode and one product with the cached address bank (see
``AddressCLIPModel.set_address_bank``); no text is encoded unless ``candidate_addresses`` names
addresses that are not in the bank::

    from transformers import pipeline

    localizer = pipeline("image-address-localization", model="path/to/model", trust_remote_code=True)
    localizer("street.jpg", top_k=3)
    # [{"address": "Mannerheimintie between Kaivokatu and Simonkatu, Kluuvi", "score": 0.41,
    #   "similarity": 0.83, "main_street": "Mannerheimintie", "cross_streets": ["Kaivokatu", "Simonkatu"],
    #   "neighborhood": "Kluuvi", "latitude": 60.1698, "longitude": 24.9397}, ...]

``latitude``/``longitude`` (WGS84 degrees) are the address's place saved with the bank (``config.address_places``,
from the dataset's coordinates), or None where the bank has no place for it (a model trained without
coordinates, or a ``candidate_addresses`` text that is not in the bank).

Images may be paths, raw bytes, ``datasets`` image dicts, PIL images or arrays; they become pixels through
the package's one image policy (``image_utils.load_image``: EXIF orientation, alpha onto white, 16-bit
and float scaling, JPEG draft decoding at the model's size), exactly as in training. An unreadable image
raises :class:`ImageLoadError` naming it, or with
``errors="skip"`` its entry becomes ``{"error": "<message naming the image>"}``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, Pipeline, ZeroShotImageClassificationPipeline

from .address import Address, parse_candidate
from .image_utils import ImageLoadError, draft_size, image_pixels, load_image

TASK = "image-address-localization"
ERROR_MODES = ("raise", "skip")
_CANDIDATE_CACHE_SIZE = 8


def _candidate_key(candidates: Any) -> tuple[str, ...]:
    """Validate ``candidate_addresses``: a non-empty list of texts, de-duplicated in order.

    Free text is ranked as it is; a text that claims the address forms must parse (``parse_candidate``).
    """
    if isinstance(candidates, str):
        candidates = [candidates]
    texts = tuple(dict.fromkeys(str(text) for text in candidates))
    if not texts:
        raise ValueError("candidate_addresses is empty")
    for text in texts:
        parse_candidate(text)
    return texts


def pinned_image_processor(image_processor):
    """The PIL CLIP image processor that training used, whatever backend ``AutoImageProcessor`` picked.

    transformers 5 resolves a saved ``CLIPImageProcessor`` to its torchvision backend where torchvision is
    installed; its resize and crop can differ from the PIL path our models were trained with, so the pipeline
    rebuilds the same settings on ``CLIPImageProcessorPil``. Other processors are used as they are.
    """
    if image_processor is None or isinstance(image_processor, CLIPImageProcessorPil):
        return image_processor
    if type(image_processor).__name__.startswith("CLIPImageProcessor"):
        settings = {k: v for k, v in image_processor.to_dict().items() if not k.startswith("_")}
        settings.pop("image_processor_type", None)
        return CLIPImageProcessorPil(**settings)
    return image_processor


def _as_inputs(images: Any) -> Any:
    """A list of images for any sequence that is not itself one image (a ``datasets`` column, a tuple, ...)."""
    single = (str, bytes, bytearray, dict, os.PathLike, Image.Image, np.ndarray, torch.Tensor)
    if isinstance(images, single) or not hasattr(images, "__len__") or not hasattr(images, "__getitem__"):
        return images
    return list(images)


class Candidates(NamedTuple):
    """What one call ranks: the texts, their normalized ``(N, D)`` float embeddings, their parsed addresses (None
    for free text) and their places (``{"latitude", "longitude", "line"}`` from the bank, or None)."""

    texts: list[str]
    matrix: torch.Tensor
    parsed: list[Address | None]
    places: list[dict | None]


def _where(place: dict | None) -> dict[str, float | None]:
    """An answer's ``latitude``/``longitude``: the bank place's point, or None for both."""
    if place is None:
        return {"latitude": None, "longitude": None}
    return {"latitude": float(place["latitude"]), "longitude": float(place["longitude"])}


def _parts(address: Address | None) -> dict[str, Any]:
    if address is None:  # free text: ranked, but it has no parts
        return {"main_street": None, "cross_streets": [], "neighborhood": None}
    return {
        "main_street": address.main_street,
        "cross_streets": list(address.cross_streets),
        "neighborhood": address.neighborhood,
    }


class ImageAddressLocalizationPipeline(Pipeline):
    """Rank candidate addresses for street-level images (task ``"image-address-localization"``).

    Call arguments: ``top_k`` (default 5) addresses per image; ``candidate_addresses`` restricts the bank
    to a subset (bank rows are reused) or replaces it (texts outside the bank are encoded once per list and
    cached); ``errors="raise"`` (default) stops at the first unreadable image, ``errors="skip"`` answers the
    other images and returns ``{"error": message}`` for it; ``batch_size`` batches the image encoder.

    Each prediction is ``{"address", "score", "similarity", "main_street", "cross_streets", "neighborhood",
    "latitude", "longitude"}`` sorted by ``score`` (softmax over the candidates of the scaled cosine similarity;
    ``similarity`` is the cosine itself, as returned by ``model.localize``); free-text candidates have ``None``
    parts. ``latitude``/``longitude`` are the address's place in the bank (``model.address_places``), None where
    the bank has none for it or the candidate is not in the bank.

    ``min_score`` is the abstain threshold: an image whose best candidate scores below it has no confident
    address and gets ``[]``; otherwise it gets its whole ``top_k`` ranking (the runners-up are not filtered:
    softmax scores sum to 1, so a filter would cut a top-5 to one or two). Its default is the model's
    ``config.abstain_threshold`` (calibrated on the query split by training, see the model card), or 0
    (never abstain) if it has none.
    """

    _load_processor = None
    _load_image_processor = None
    _load_tokenizer = None
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            raise ValueError(
                "image-address-localization needs the model's image processor: save the processor beside the "
                "model (processor.save_pretrained(dir)) or pass processor=... / image_processor=..."
            )
        if not hasattr(self.model, "check_address_bank"):
            raise TypeError(f"image-address-localization needs an AddressCLIPModel, got {type(self.model).__name__}")
        self.image_processor = pinned_image_processor(self.image_processor)
        self._candidate_cache: OrderedDict[tuple[str, ...], Candidates] = OrderedDict()
        self._blank: torch.Tensor | None = None

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        """Localize one image (returns a list of ``top_k`` dicts) or a list of images (a list of such lists).

        ``images`` (or ``inputs=``, as transformers' image pipelines take it): paths, URLs, raw bytes, PIL
        images, arrays or tensors (HWC or CHW, uint8 or floats in [0, 1]), ``datasets`` image values or a
        whole ``datasets`` image column.
        """
        if images is None:
            images = kwargs.pop("inputs", None)
        elif "inputs" in kwargs:
            raise TypeError("give the images either positionally or as inputs=, not both")
        if images is None:
            raise TypeError("image-address-localization needs images (positionally or as inputs=)")
        images = _as_inputs(images)
        if isinstance(images, list) and not images:
            return []
        return super().__call__(images, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        candidate_addresses: Any = None,
        errors: str | None = None,
        min_score: float | None = None,
    ):
        preprocess, forward, postprocess = {}, {}, {}
        if min_score is not None:
            if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1:
                raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
            postprocess["min_score"] = float(min_score)
        if errors is not None:
            if errors not in ERROR_MODES:
                raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
            preprocess["errors"] = errors
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
            postprocess["top_k"] = top_k
        if candidate_addresses is not None:
            forward["candidates"] = postprocess["candidates"] = _candidate_key(candidate_addresses)
        return preprocess, forward, postprocess

    # ----------------------------------------------------------------------------- stages
    def preprocess(self, image: Any, errors: str = "raise") -> dict[str, Any]:
        try:
            pixel_values = image_pixels(self.image_processor, [image])
        except ImageLoadError as err:
            if errors == "raise":
                raise
            return {"pixel_values": self._blank_pixels(), "error": str(err)}
        return {"pixel_values": pixel_values.to(self.model.dtype), "error": ""}

    def _forward(self, model_inputs: dict[str, Any], candidates: tuple[str, ...] | None = None) -> dict[str, Any]:
        similarity = self.model.address_similarity(
            model_inputs["pixel_values"], bank=self._candidates(candidates).matrix
        ).float()
        probabilities = self.model.address_probabilities(similarity)
        return {"similarity": similarity, "probabilities": probabilities, "error": model_inputs["error"]}

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        top_k: int = 5,
        candidates: tuple[str, ...] | None = None,
        min_score: float | None = None,
    ) -> list[dict[str, Any]] | dict[str, str]:
        error = model_outputs["error"]
        error = error[0] if isinstance(error, (list, tuple)) else error
        if error:
            return {"error": error}
        if min_score is None:
            min_score = getattr(self.model.config, "abstain_threshold", None) or 0.0
        ranked = self._candidates(candidates)
        probabilities, similarity = model_outputs["probabilities"][0], model_outputs["similarity"][0]
        top = probabilities.topk(min(top_k, len(ranked.texts)))
        if float(top.values[0]) < min_score:
            return []
        return [
            {
                "address": ranked.texts[i],
                "score": float(probabilities[i]),
                "similarity": float(similarity[i]),
                **_parts(ranked.parsed[i]),
                **_where(ranked.places[i]),
            }
            for i in top.indices.tolist()
        ]

    # ----------------------------------------------------------------------------- candidates
    def _blank_pixels(self) -> torch.Tensor:
        """Placeholder pixels for an unreadable image in ``errors="skip"`` mode (its result is discarded)."""
        if self._blank is None:
            blank = self.image_processor(images=Image.new("RGB", (8, 8)), return_tensors="pt")["pixel_values"]
            self._blank = blank.to(self.model.dtype)
        return self._blank

    def _candidates(self, key: tuple[str, ...] | None) -> Candidates:
        """The bank (``key`` empty) or a candidate list: texts, embeddings, parsed addresses, places; cached."""
        key = key or ()
        if key in self._candidate_cache:
            self._candidate_cache.move_to_end(key)
            return self._candidate_cache[key]
        bank_places = dict(zip(self.model.address_bank, self.model.address_places, strict=True))
        if not key:
            texts, matrix = self.model.address_bank, self._bank_matrix()
        else:
            texts, matrix = list(key), self._candidate_matrix(key)
        parsed = [parse_candidate(text) for text in texts]
        entry = Candidates(texts, matrix.float(), parsed, [bank_places.get(text) for text in texts])
        self._candidate_cache[key] = entry
        while len(self._candidate_cache) > _CANDIDATE_CACHE_SIZE:
            self._candidate_cache.popitem(last=False)
        return entry

    def _bank_matrix(self) -> torch.Tensor:
        try:
            return self.model.check_address_bank(self.tokenizer)
        except ValueError as err:
            raise ValueError(f"{err} (or pass candidate_addresses=[...] to the pipeline)") from None

    def _candidate_matrix(self, texts: tuple[str, ...]) -> torch.Tensor:
        """Bank rows for texts in the bank; texts outside it are encoded with the address template."""
        row_of = {text: i for i, text in enumerate(self.model.address_bank)}
        missing = [text for text in texts if text not in row_of]
        encoded = dict(zip(missing, self.encode_addresses(missing))) if missing else {}
        bank = self._bank_matrix().float() if len(missing) < len(texts) else None
        rows = [encoded[text] if text in encoded else bank[row_of[text]] for text in texts]
        return torch.stack(rows)

    def encode_addresses(self, texts: list[str]) -> torch.Tensor:
        """Normalized (N, D) embeddings of ``texts`` in the model's address template (``model.embed_addresses``).

        Any text works (a street or neighborhood name too); this is what ``candidate_addresses`` outside
        the bank use.
        """
        if self.tokenizer is None:
            raise ValueError("encoding address texts needs the tokenizer: save it with the model")
        return self.model.embed_addresses(list(texts), self.tokenizer)

    @torch.no_grad()
    def embed_images(self, images: list[Any]) -> torch.Tensor:
        """Normalized (N, D) float image embeddings of one batch of images, through the one image policy."""
        return self.model.embed_images(image_pixels(self.image_processor, images)).float()


class AddressZeroShotImageClassificationPipeline(ZeroShotImageClassificationPipeline):
    """transformers' ``zero-shot-image-classification`` with the model's address prompt as the default template.

    transformers' default ``"This is a photo of {}."`` is not the text AddressCLIP was trained on (top-1 on the
    demo's query split: 14.0% against 80.8% with the address template), so a saved AddressCLIP directory names
    this class for that task (``custom_pipelines``) and ``pipeline("zero-shot-image-classification", model=DIR,
    trust_remote_code=True)`` ranks labels as the model was trained to. Images go through the one image policy.
    """

    def _sanitize_parameters(self, tokenizer_kwargs=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(tokenizer_kwargs=tokenizer_kwargs, **kwargs)
        config = self.model.config  # the text the text tower saw in training (prompt models: "{address}.")
        template = getattr(config, "text_template", getattr(config, "address_template", None))
        if "hypothesis_template" not in kwargs and template:
            preprocess["hypothesis_template"] = template.replace("{address}", "{}")
        return preprocess, forward, postprocess

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.image_processor = pinned_image_processor(self.image_processor)

    def preprocess(self, image, *args, **kwargs):
        return super().preprocess(load_image(image, draft=draft_size(self.image_processor)), *args, **kwargs)


__all__ = [
    "Candidates",
    "ERROR_MODES",
    "TASK",
    "AddressZeroShotImageClassificationPipeline",
    "ImageAddressLocalizationPipeline",
    "ImageLoadError",
    "load_image",
    "pinned_image_processor",
]
