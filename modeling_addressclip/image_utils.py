"""The one image policy: any image source -> 8-bit RGB pixels, identical in training and at inference.

Every path that turns a file into pixels calls :func:`load_image`: the dataset builders (to check and
resize), the collator (train rows), the trainer's evaluation, the pipeline, the CLI and the
benchmarks. What it does, in order:

1. open: a path, an ``http(s)://`` URL, raw bytes, a ``datasets`` image dict (``{"bytes", "path"}``), a PIL
   image, or an ``(H, W[, C])`` / ``(C, H, W)`` array or tensor (uint8, or floats in [0, 1]);
2. JPEG draft decoding when ``draft`` is given and the file is opened here: libjpeg scales by 1/2, 1/4
   or 1/8 while decoding, never below ``draft`` pixels a side (see :func:`draft_size`);
3. PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``);
4. EXIF orientation applied;
5. 16-bit / 32-bit integer and float images scaled to 8 bits by their bit depth (:func:`to_eight_bit`);
6. alpha (RGBA, LA, palette transparency) composited onto white; CMYK, YCbCr, palette, grayscale -> RGB.

Errors are :class:`ImageLoadError` (a ``ValueError``) naming the image.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_BIT_DEPTHS = (8, 10, 12, 14, 16, 32)


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
    if isinstance(source, dict) and source.get("path"):
        return repr(str(source["path"]))
    if isinstance(source, (bytes, bytearray, dict)):
        return f"<{type(source).__name__} of an encoded image>"
    return f"<{type(source).__name__}>"


def draft_size(image_processor) -> int | None:
    """The side an image must keep for ``image_processor``'s resize (None: it does not resize; decode in full)."""
    if image_processor is None or not getattr(image_processor, "do_resize", True):
        return None
    size = getattr(image_processor, "size", None)
    if size is None:
        return None
    if not isinstance(size, dict):
        size = {key: getattr(size, key, None) for key in ("shortest_edge", "height", "width")}
    return size.get("shortest_edge") or max(size.get("height") or 0, size.get("width") or 0) or None


def to_eight_bit(image: Image.Image) -> Image.Image:
    """A single-channel 16-bit, 32-bit integer or float image as 8-bit grayscale.

    Integers are scaled by the smallest common sensor bit depth (8, 10, 12, 14, 16 or 32 bits) that holds
    the image's largest value, so a 12-bit image stored in 16 bits is not crushed to black; floats with
    values in [0, 1] are scaled by 255, other floats like integers.
    """
    array = np.asarray(image, dtype=np.float64)
    finite = array[np.isfinite(array)]
    peak = float(finite.max()) if finite.size else 0.0
    if image.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        depth = next((bits for bits in _BIT_DEPTHS if peak < 2**bits), 32)
        top = float(2**depth - 1)
    scaled = np.nan_to_num(array * (255.0 / top), nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF-transpose and convert any PIL mode to 8-bit RGB (alpha composited onto white)."""
    with contextlib.suppress(Exception):  # a broken EXIF block must not hide a readable image
        image = ImageOps.exif_transpose(image)
    if image.mode in _HIGH_DEPTH_MODES:
        image = to_eight_bit(image)
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def _array_image(array: np.ndarray) -> Image.Image:
    """``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` arrays; floats in [0, 1] are scaled to 0..255."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            array = np.rint(np.nan_to_num(array) * 255.0)
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(np.ascontiguousarray(array))


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _heif_supported(file: Any) -> bool:
    """Whether ``file`` is a HEIC/HEIF photo (the iPhone default) and ``pillow-heif`` now reads it.

    A HEIF file without the optional package raises a ``ValueError`` that names the install line.
    """
    if isinstance(file, io.BytesIO):
        head = file.getvalue()[:12]
    else:
        with open(file, "rb") as handle:
            head = handle.read(12)
    if head[4:8] != b"ftyp" or head[8:12] not in _HEIF_BRANDS:
        return False
    if importlib.util.find_spec("pillow_heif") is None:
        raise ValueError('a HEIC/HEIF photo needs the optional package pillow-heif: pip install "addressclip[heic]"')
    import pillow_heif

    pillow_heif.register_heif_opener()
    return True


def _open_file(file: Any, draft: int | None) -> Image.Image:
    try:
        return _decode_file(file, draft)
    except UnidentifiedImageError:
        if not _heif_supported(file):
            raise
        if isinstance(file, io.BytesIO):
            file.seek(0)
        return _decode_file(file, draft)


def _decode_file(file: Any, draft: int | None) -> Image.Image:
    with Image.open(file) as image:
        if draft and image.format == "JPEG":
            image.draft("RGB", (draft, draft))
        image.load()
        return to_rgb(image)


URL_TIMEOUT_S = 10.0


class UrlFetchError(OSError):
    """An image URL could not be fetched (no network, refused, HTTP error)."""


def fetch_url(url: str, timeout: float = URL_TIMEOUT_S) -> bytes:
    """The bytes at an ``http(s)://`` URL (as ``transformers.image_utils.load_image`` fetches one), or
    :class:`UrlFetchError`."""
    from huggingface_hub.utils import httpx  # the HTTP client of the Hub stack (what transformers fetches with)

    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as err:
        reason = f"{type(err).__name__}: {err}"
        raise UrlFetchError(f"cannot fetch URL {url!r} ({reason}); offline? pass a local file") from None
    return response.content


def _open(source: Any, draft: int | None) -> Image.Image:
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().float().numpy() if source.is_floating_point() else source.cpu().numpy()
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return _open_file(io.BytesIO(fetch_url(source)), draft)
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(_array_image(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_file(io.BytesIO(bytes(source)), draft)
    if isinstance(source, dict):  # a datasets.Image(decode=False) value
        data, path = source.get("bytes"), source.get("path")
        if data is not None:
            return _open_file(io.BytesIO(data), draft)
        if not path:
            raise ValueError("the image dict has neither 'bytes' nor a 'path'")
        if "://" in str(path):  # a remote file of a Hub dataset (hf://...): datasets' own reader
            import datasets

            return to_rgb(datasets.Image().decode_example({"bytes": None, "path": path}))
        source = path
    if isinstance(source, (str, os.PathLike)):
        return _open_file(source, draft)
    raise TypeError(f"expected a file path, URL, bytes, a PIL image, an array or a tensor, got {type(source).__name__}")


def load_image(source: Any, draft: int | None = None, where: str | None = None) -> Image.Image:
    """Read ``source`` as 8-bit RGB under the policy above, or raise :class:`ImageLoadError`.

    ``draft`` (usually ``draft_size(image_processor)``) lets a JPEG that is opened here decode at reduced
    size; PIL images and arrays are used as given. ``where`` (e.g. ``"train row 12"``) prefixes errors.
    Images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` are refused as possible decompression bombs.
    """
    name = f"{where}: image {describe_image(source)}" if where else f"image {describe_image(source)}"
    try:
        image = _open(source, draft)
    except FileNotFoundError:
        raise ImageLoadError(f"{name} not found") from None
    except UrlFetchError as err:
        raise ImageLoadError(f"{name}: {err}") from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{name} is refused as a possible decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name} is not a readable image (empty file or unknown format)") from None
    except (OSError, ValueError, TypeError, SyntaxError, EOFError) as err:
        raise ImageLoadError(f"cannot read {name}: {err}") from err
    if image.width < 1 or image.height < 1:
        raise ImageLoadError(f"{name} has no pixels ({image.width}x{image.height})")
    return image


def image_pixels(
    processor, images: Sequence[Any], where: str | None = None, draft_decoding: bool = True
) -> torch.Tensor:
    """``pixel_values`` of ``images`` (any source :func:`load_image` takes) under the one policy.

    ``processor`` is a ``CLIPProcessor`` or its image processor; ``where`` (e.g. ``"batch row"``) names
    the i-th image ``"<where> <i>"`` in errors.
    """
    image_processor = getattr(processor, "image_processor", processor)
    draft = draft_size(image_processor) if draft_decoding else None
    rgb = [load_image(image, draft, where=f"{where} {i}" if where else None) for i, image in enumerate(images)]
    return image_processor(images=rgb, return_tensors="pt")["pixel_values"]


__all__ = ["ImageLoadError", "describe_image", "draft_size", "image_pixels", "load_image", "to_eight_bit", "to_rgb"]
