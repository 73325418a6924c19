"""AddressCLIP configuration: a CLIP config plus the paper's loss recipe and the address bank."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig

GEOGRAPHY_TARGETS = ("similarity", "distance")
DEFAULT_ADDRESS_TEMPLATE = "A street view photo at {address}."
PLACE_DECIMALS = 7  # ~1 cm: what config.json keeps of a coordinate
PLACE_KEYS = ("latitude", "longitude", "line")
# Prompt learning (paper Tab. 2 baselines): each method's context length M in its paper, MaPLe's depth J, the init text.
PROMPT_METHODS = ("coop", "cocoop", "maple")
PROMPT_CONTEXT_LENGTHS = {"coop": 16, "cocoop": 4, "maple": 2}
PROMPT_INIT_TEXTS = {"coop": None, "cocoop": "a photo of a", "maple": "a photo of a"}
MAPLE_DEPTH = 9
PROMPT_CLASS_TEMPLATE = "{address}."  # the class text after the learned context (CoOp's "[V]_1 ... [V]_M [CLASS].")


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of a tokenizer's vocabulary and merges: banks from another tokenizer are rejected."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # padding/truncation settings change as the tokenizer is used: leave them out
        spec = json.loads(backend.to_str())
        text = json.dumps({k: spec.get(k) for k in ("model", "normalizer", "pre_tokenizer", "added_tokens")})
    else:
        text = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _degrees(value: Any, axis: str, where: str) -> float:
    """One WGS84 coordinate as a float rounded to ``PLACE_DECIMALS``; ``axis`` is "latitude" or "longitude"."""
    limit = 90.0 if axis == "latitude" else 180.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {axis} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ValueError(f"{where}: {axis} must be a finite number in [-{limit:g}, {limit:g}], got {value!r}")
    return round(number, PLACE_DECIMALS)


def normalize_place(place: Any, where: str) -> dict[str, Any] | None:
    """One address's place as saved in the config: ``{"latitude", "longitude", "line": [[lat, lon], ...]}``.

    ``place`` is None (unknown place) or a mapping with ``latitude`` and ``longitude`` (degrees, WGS84) and an
    optional ``line`` (the sub-street's polyline as (lat, lon) pairs; empty or one point allowed). Coordinates
    are rounded to ``PLACE_DECIMALS``; anything else raises ``ValueError`` naming ``where``.
    """
    if place is None:
        return None
    if not isinstance(place, Mapping):
        raise ValueError(f"{where} must be a dict with latitude, longitude and line, or None; got {place!r}")
    unknown = sorted(set(place.keys()) - set(PLACE_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; a place has only {list(PLACE_KEYS)}")
    missing = [key for key in ("latitude", "longitude") if key not in place]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    line = place.get("line")
    line = line.tolist() if hasattr(line, "tolist") else [] if line is None else line  # a numpy (k, 2) array too
    if not isinstance(line, (list, tuple)):
        raise ValueError(f"{where}: line must be a list of [latitude, longitude] pairs, got {line!r}")
    points = []
    for j, point in enumerate(line):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise ValueError(f"{where}['line'][{j}] must be a [latitude, longitude] pair, got {point!r}")
        vertex = f"{where}['line'][{j}]"
        points.append([_degrees(point[0], "latitude", vertex), _degrees(point[1], "longitude", vertex)])
    return {
        "latitude": _degrees(place["latitude"], "latitude", where),
        "longitude": _degrees(place["longitude"], "longitude", where),
        "line": points,
    }


def normalize_places(places: Sequence[Any], addresses: Sequence[str]) -> list[dict[str, Any] | None]:
    """Every place of an address bank (:func:`normalize_place`), checked to be aligned with ``addresses``."""
    if isinstance(places, (str, bytes, dict)) or not isinstance(places, Sequence):
        raise ValueError(f"address_places must be a list aligned with address_bank, got {type(places).__name__}")
    if len(places) != len(addresses):
        raise ValueError(
            f"address_places has {len(places)} entries but address_bank has {len(addresses)} addresses: "
            "entry i is the place of address i (None where it is unknown)"
        )
    normalized = []
    for i, (place, address) in enumerate(zip(places, addresses)):
        try:
            normalized.append(normalize_place(place, f"address_places[{i}]"))
        except ValueError as err:
            raise ValueError(f"{err} (the place of address {address!r})") from None
    return normalized


@strict
class AddressCLIPConfig(CLIPConfig):
    r"""
    Configuration of [`AddressCLIPModel`]: every field of [`CLIPConfig`] plus

    address_loss_weight (`float`, defaults to 1.0):
        alpha of Eq. 6, weight of the image-address contrastive loss (Eq. 1).
    caption_loss_weight (`float`, defaults to 0.2):
        beta of Eq. 6, weight of the image-caption contrastive loss (Eq. 2).
    geography_loss_weight (`float`, defaults to 0.8):
        gamma of Eq. 6, weight of the image-geography matching loss (Eq. 5).
    geography_target (`str`, defaults to `"similarity"`):
        `"similarity"` regresses cosine similarity onto `1 - D^U` (neighbours pulled together, as §4.3
        describes); `"distance"` is Eq. 5 taken literally (cosine similarity onto `D^U`).
    gather_across_ranks (`bool`, defaults to `True`):
        under `torch.distributed`, compute every loss on the global batch with an exact autograd gather.
    address_template (`str`, defaults to `"A street view photo at {address}."`):
        the prompt an address is wrapped in before the text encoder, identical in training and inference.
    address_bank (`list[str]`, *optional*):
        candidate addresses whose normalized text embeddings the model stores (see `set_address_bank`).
    address_places (`list[dict | None]`, *optional*):
        aligned with ``address_bank``: entry i is ``{"latitude", "longitude", "line": [[lat, lon], ...]}`` (WGS84
        degrees, rounded to 7 decimals; the address's place on its sub-street and the sub-street's polyline,
        possibly empty or one point), or None where the place is unknown. None when the data had no coordinates.
    address_bank_fingerprint (`str`, *optional*):
        fingerprint of the tokenizer + template the bank was encoded with; checked when the bank is used.
    abstain_threshold (`float`, *optional*):
        the pipeline's default ``min_score``: below this top-1 score it answers "no confident address".
        Training sets it on the query split (the score that keeps ``abstain_coverage`` of in-domain photos
        answered); None never abstains.
    abstain_coverage (`float`, *optional*):
        the share of the query split answered at ``abstain_threshold`` when it was calibrated.
    caption_includes_address (`bool`, defaults to `True`):
        Eq. 2's text is ``caption + " " + address`` (§4.2); False uses the caption alone (e.g. to train a
        captions-only stand-in for a pretrained CLIP, one that never saw an address).
    prompt_learning (`str`, *optional*):
        None trains CLIP itself (AddressCLIP, full fine-tuning). A prompt-learning baseline of the paper's Tab. 2
        freezes every CLIP weight (the logit scale too) and learns only prompts (``prompt_learning.py``):
        ``"coop"`` (Zhou et al., IJCV 2022), ``"cocoop"`` (Zhou et al., CVPR 2022) or ``"maple"`` (Khattak et al.,
        CVPR 2023). The class text is then ``"{address}."`` after the learned context, not ``address_template``.
    prompt_context_length (`int`, *optional*):
        M, the number of learned context vectors; None: the method's paper default (CoOp 16, CoCoOp 4, MaPLe 2).
    prompt_depth (`int`, *optional*):
        MaPLe only: J, the number of layers (from the first) that get their own prompts; None: 9, the paper's J.
        Clipped to the number of layers of the shallower encoder.
    prompt_init (`str`, *optional*):
        the text whose token embeddings initialize the context vectors (its first M tokens; positions beyond its
        length stay random), applied by ``model.initialize_prompts(tokenizer)``. None: each paper's choice, random
        N(0, 0.02^2) for CoOp (its main setting), "a photo of a" for CoCoOp and MaPLe.
    """

    model_type = "addressclip"

    address_loss_weight: float = 1.0
    caption_loss_weight: float = 0.2
    geography_loss_weight: float = 0.8
    geography_target: str = "similarity"
    gather_across_ranks: bool = True
    address_template: str = DEFAULT_ADDRESS_TEMPLATE
    address_bank: list[str] | None = None
    address_places: list[dict | None] | None = None
    address_bank_fingerprint: str | None = None
    abstain_threshold: float | None = None
    abstain_coverage: float | None = None
    caption_includes_address: bool = True
    prompt_learning: str | None = None
    prompt_context_length: int | None = None
    prompt_depth: int | None = None
    prompt_init: str | None = None

    def validate_architecture(self):
        """Part of `@strict` validation: the recipe fields must make sense."""
        if self.geography_target not in GEOGRAPHY_TARGETS:
            raise ValueError(f"geography_target must be one of {GEOGRAPHY_TARGETS}, got {self.geography_target!r}")
        if "{address}" not in self.address_template:
            raise ValueError(f"address_template must contain '{{address}}', got {self.address_template!r}")
        for name in ("abstain_threshold", "abstain_coverage"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("address_loss_weight", "caption_loss_weight", "geography_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self._validate_prompt_learning()

    def _validate_prompt_learning(self):
        """The prompt-learning fields name a known method and fit the text encoder (see ``validate_architecture``)."""
        method = self.prompt_learning
        if method is not None and method not in PROMPT_METHODS:
            raise ValueError(f"prompt_learning must be None or one of {PROMPT_METHODS}, got {method!r}")
        if method is None:
            fields = ("prompt_context_length", "prompt_depth", "prompt_init")
            given = [name for name in fields if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{given} set but prompt_learning is None: choose one of {PROMPT_METHODS}")
            return
        for name in ("prompt_context_length", "prompt_depth"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prompt_depth is not None and method != "maple":
            raise ValueError(f"prompt_depth is MaPLe's (the layers with prompts); {method!r} prompts the input only")
        if self.prompt_init is not None and not self.prompt_init.strip():
            raise ValueError("prompt_init must be a non-empty text (or None for the method's default)")
        positions = self.text_config.max_position_embeddings
        if self.prompt_context_tokens + 3 > positions:
            raise ValueError(
                f"prompt_context_length {self.prompt_context_tokens} leaves no room for an address in the text "
                f"encoder's {positions} positions (SOS, context, at least one token, EOS)"
            )

    def validate_address_places(self):
        """Part of `@strict` validation: places are aligned with the bank and hold valid WGS84 coordinates."""
        if self.address_places is None:
            return
        if self.address_bank is None:
            raise ValueError("address_places is set but address_bank is not: places belong to bank addresses")
        normalize_places(self.address_places, self.address_bank)

    @property
    def text_template(self) -> str:
        """The template an address is tokenized in: ``address_template``, or ``"{address}."`` with prompt learning
        (the learned context vectors take the template's place, inserted after SOS)."""
        return PROMPT_CLASS_TEMPLATE if self.prompt_learning else self.address_template

    @property
    def prompt_context_tokens(self) -> int:
        """M: ``prompt_context_length`` or the method's default (0 without prompt learning)."""
        if not self.prompt_learning:
            return 0
        return self.prompt_context_length or PROMPT_CONTEXT_LENGTHS[self.prompt_learning]

    @property
    def prompt_layers(self) -> int:
        """J: the layers that get prompts (MaPLe's depth, clipped to the shallower encoder; 1 for CoOp/CoCoOp)."""
        if self.prompt_learning != "maple":
            return 1
        layers = min(self.text_config.num_hidden_layers, self.vision_config.num_hidden_layers)
        return min(self.prompt_depth or MAPLE_DEPTH, layers)

    @property
    def prompt_init_text(self) -> str | None:
        """The text that initializes the context vectors: ``prompt_init`` or the method's default."""
        return self.prompt_init or PROMPT_INIT_TEXTS.get(self.prompt_learning or "")

    def format_address_prompt(self, address: str) -> str:
        """Wrap an address text in :attr:`text_template` (the exact text the text encoder sees)."""
        return self.text_template.format(address=address)

    def bank_fingerprint(self, tokenizer_hash: str) -> str:
        """The fingerprint of an address bank encoded with this template and a tokenizer of ``tokenizer_hash``."""
        return f"{tokenizer_hash}:{hashlib.sha256(self.text_template.encode()).hexdigest()[:16]}"


__all__ = [
    "AddressCLIPConfig",
    "DEFAULT_ADDRESS_TEMPLATE",
    "GEOGRAPHY_TARGETS",
    "MAPLE_DEPTH",
    "PROMPT_CONTEXT_LENGTHS",
    "PROMPT_INIT_TEXTS",
    "PROMPT_METHODS",
    "normalize_place",
    "normalize_places",
    "tokenizer_fingerprint",
]
