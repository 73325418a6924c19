"""Image address localization pipeline: an image in, the top-k addresses of the model's bank out.

Inference is one image encode and one product with the cached address bank (see
``AddressCLIPModel.set_address_bank``); no text is encoded unless ``candidate_addresses`` names
addresses that are not in the bank::

    from transformers import pipeline

    localizer = pipeline("image-address-localization", model="path/to/model", trust_remote_code=True)
    localizer("street.jpg", top_k=3)
    # [{"address": "Mannerheimintie between Kaivokatu and Simonkatu, Kluuvi", "score": 0.41,
    #   "similarity": 0.83, "main_street": "Mannerheimintie", "cross_streets": ["Kaivokatu", "Simonkatu"],
    #   "neighborhood": "Kluuvi"}, ...]

Images may be paths, PIL images or ``(H, W[, C])`` uint8 arrays; any PIL mode is EXIF-transposed and
converted to 8-bit RGB. An unreadable image raises :class:`ImageLoadError` naming it, or with
``errors="skip"`` its entry becomes ``{"error": "<message naming the image>"}``.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import Pipeline

from .address import Address

TASK = "image-address-localization"
ERROR_MODES = ("raise", "skip")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_CANDIDATE_CACHE_SIZE = 8


class ImageLoadError(ValueError):
    """An input image could not be read or converted to RGB; the message names the image."""


def describe_image(source: Any) -> str:
    """A short name for an input image, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, Image.Image):
        return f"<PIL image mode={source.mode} size={source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array shape={source.shape} dtype={source.dtype}>"
    return f"<{type(source).__name__}>"


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit integer or float single-channel image to 8-bit grayscale."""
    array = np.asarray(image, dtype=np.float64)
    peak = float(array.max()) if array.size else 0.0
    if image.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = 65535.0 if image.mode.startswith("I;16") or peak > 255 else 255.0
    return Image.fromarray(np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF-transpose and convert any PIL mode to 8-bit RGB (alpha composited onto white)."""
    with contextlib.suppress(Exception):  # a broken EXIF block must not hide a readable image
        image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _to_eight_bit(image)
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def _open(source: Any) -> Image.Image:
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(Image.fromarray(source))
    if isinstance(source, (str, os.PathLike)):
        with Image.open(source) as image:
            image.load()
            return to_rgb(image)
    raise TypeError(f"expected a file path, a PIL image or a numpy array, got {type(source).__name__}")


def load_image(source: Any) -> Image.Image:
    """Read ``source`` (path, PIL image or uint8 array) as 8-bit RGB, or raise :class:`ImageLoadError`.

    PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) applies: images over twice the
    limit are refused.
    """
    name = describe_image(source)
    try:
        image = _open(source)
    except FileNotFoundError:
        raise ImageLoadError(f"image {name} not found") from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"image {name} is refused as a possible decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"image {name} is not a readable image (empty file or unknown format)") from None
    except (OSError, ValueError, TypeError, SyntaxError, EOFError) as err:
        raise ImageLoadError(f"cannot read image {name}: {err}") from err
    if image.width < 1 or image.height < 1:
        raise ImageLoadError(f"image {name} has no pixels ({image.width}x{image.height})")
    return image


def _candidate_key(candidates: Any) -> tuple[str, ...]:
    """Validate ``candidate_addresses``: a non-empty list of parseable addresses, de-duplicated in order."""
    if isinstance(candidates, str):
        candidates = [candidates]
    texts = tuple(dict.fromkeys(str(text) for text in candidates))
    if not texts:
        raise ValueError("candidate_addresses is empty")
    for text in texts:
        Address.parse(text)
    return texts


class ImageAddressLocalizationPipeline(Pipeline):
    """Rank candidate addresses for street-level images (task ``"image-address-localization"``).

    Call arguments: ``top_k`` (default 5) addresses per image; ``candidate_addresses`` restricts the bank
    to a subset (bank rows are reused) or replaces it (texts outside the bank are encoded once per list and
    cached); ``errors="raise"`` (default) stops at the first unreadable image, ``errors="skip"`` answers the
    other images and returns ``{"error": message}`` for it; ``batch_size`` batches the image encoder.

    Each prediction is ``{"address", "score", "similarity", "main_street", "cross_streets", "neighborhood"}``
    sorted by ``score`` (softmax over the candidates of the scaled cosine similarity; ``similarity`` is the
    cosine itself, as returned by ``model.localize``).
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
        self._candidate_cache: OrderedDict[tuple[str, ...], tuple[list[str], torch.Tensor, list[Address]]]
        self._candidate_cache = OrderedDict()
        self._blank: torch.Tensor | None = None

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        """Localize one image (returns a list of ``top_k`` dicts) or a list of images (a list of such lists)."""
        if isinstance(images, tuple):
            images = list(images)
        if isinstance(images, list) and not images:
            return []
        return super().__call__(images, **kwargs)

    def _sanitize_parameters(
        self, top_k: int | None = None, candidate_addresses: Any = None, errors: str | None = None
    ):
        preprocess, forward, postprocess = {}, {}, {}
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
            rgb = load_image(image)
        except ImageLoadError as err:
            if errors == "raise":
                raise
            return {"pixel_values": self._blank_pixels(), "error": str(err)}
        pixel_values = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values.to(self.model.dtype), "error": ""}

    def _forward(self, model_inputs: dict[str, Any], candidates: tuple[str, ...] | None = None) -> dict[str, Any]:
        _, matrix, _ = self._candidates(candidates)
        features = self.model.get_image_features(pixel_values=model_inputs["pixel_values"]).pooler_output
        similarity = F.normalize(features.float(), dim=-1) @ matrix.t()
        probabilities = (self.model.logit_scale.exp().float() * similarity).softmax(dim=-1)
        return {"similarity": similarity, "probabilities": probabilities, "error": model_inputs["error"]}

    def postprocess(
        self, model_outputs: dict[str, Any], top_k: int = 5, candidates: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]] | dict[str, str]:
        error = model_outputs["error"]
        error = error[0] if isinstance(error, (list, tuple)) else error
        if error:
            return {"error": error}
        texts, _, parsed = self._candidates(candidates)
        probabilities, similarity = model_outputs["probabilities"][0], model_outputs["similarity"][0]
        top = probabilities.topk(min(top_k, len(texts)))
        return [
            {
                "address": texts[i],
                "score": float(probabilities[i]),
                "similarity": float(similarity[i]),
                "main_street": parsed[i].main_street,
                "cross_streets": list(parsed[i].cross_streets),
                "neighborhood": parsed[i].neighborhood,
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

    def _candidates(self, key: tuple[str, ...] | None) -> tuple[list[str], torch.Tensor, list[Address]]:
        """(texts, normalized (N, D) float matrix, parsed addresses) for the bank or a candidate list; cached."""
        key = key or ()
        if key in self._candidate_cache:
            self._candidate_cache.move_to_end(key)
            return self._candidate_cache[key]
        if not key:
            texts, matrix = self.model.address_bank, self._bank_matrix()
        else:
            texts, matrix = list(key), self._candidate_matrix(key)
        entry = (texts, matrix.float(), [Address.parse(text) for text in texts])
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

    @torch.no_grad()
    def encode_addresses(self, texts: list[str]) -> torch.Tensor:
        """Normalized (N, D) text embeddings of ``texts`` wrapped in the model's address template.

        Any text works (a street or neighborhood name too); this is what ``candidate_addresses`` outside
        the bank use.
        """
        if self.tokenizer is None:
            raise ValueError("encoding address texts needs the tokenizer: save it with the model")
        prompts = [self.model.config.format_address_prompt(text) for text in texts]
        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.model.device)
        features = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(features.pooler_output.float(), dim=-1)

    @torch.no_grad()
    def embed_images(self, images: list[Any]) -> torch.Tensor:
        """Normalized (N, D) image embeddings of one batch of images (paths, PIL images or arrays)."""
        rgb = [load_image(image) for image in images]
        pixel_values = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(device=self.model.device, dtype=self.model.dtype)
        return F.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output.float(), dim=-1)


__all__ = ["ERROR_MODES", "TASK", "ImageAddressLocalizationPipeline", "ImageLoadError", "load_image", "to_rgb"]
