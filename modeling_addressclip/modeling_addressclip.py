"""AddressCLIP (ECCV 2024): CLIP fine-tuned to align street-level images with their addresses.

The model adds no parameters to CLIP (paper §6.1). What it adds is the training objective
(Eq. 6 = alpha * Eq. 1 + beta * Eq. 2 + gamma * Eq. 5, see ``losses.py``) and an *address bank*:
the normalized text embeddings of every candidate address, encoded once and saved with the
weights, so localizing an image is one image encode and one matrix product.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .address import Address
from .configuration_addressclip import AddressCLIPConfig, normalize_places, tokenizer_fingerprint
from .losses import gather_with_grad, geography_matching_loss, image_text_contrastive_loss

# The pipeline is imported so that transformers copies it into the remote-code cache with this file:
# a model loaded with trust_remote_code=True then saves it again (save_pretrained copies HUB_FILES).
from .pipeline_addressclip import TASK as PIPELINE_TASK  # noqa: F401, E402
from .prompt_learning import PromptLearningMixin

# Files copied into every saved model directory so it loads with ``trust_remote_code=True``.
HUB_FILES = (
    "configuration_addressclip.py",
    "modeling_addressclip.py",
    "losses.py",
    "address.py",
    "image_utils.py",
    "pipeline_addressclip.py",
    "prompt_learning.py",
)
AUTO_CLASSES = ("AutoModel", "AutoModelForZeroShotImageClassification")
# Written into the saved config so ``pipeline(TASK, model=dir, trust_remote_code=True)`` finds each task's code.
CUSTOM_PIPELINES = {
    "image-address-localization": {
        "impl": "pipeline_addressclip.ImageAddressLocalizationPipeline",
        "pt": ["AutoModel"],
        "type": "image",
    },
    # transformers' zero-shot task, with the model's address template as the default hypothesis template
    "zero-shot-image-classification": {
        "impl": "pipeline_addressclip.AddressZeroShotImageClassificationPipeline",
        "pt": ["AutoModelForZeroShotImageClassification"],
        "type": "multimodal",
    },
}
_LOADING_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "dtype", "output_loading_info")


@dataclass
class AddressCLIPOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`): Eq. 6, the weighted sum of the parts below that were computed.
    loss_address (`torch.FloatTensor`): image-address contrastive loss, Eq. 1.
    loss_caption (`torch.FloatTensor`): image-caption contrastive loss, Eq. 2 (None without caption ids).
    loss_geography (`torch.FloatTensor`): image-geography matching loss, Eq. 5 (None without utm).
    logits_per_image (`(image_batch, text_batch)`): scaled cosine similarity of the local batch.
    logits_per_text (`(text_batch, image_batch)`): its transpose.
    image_embeds, text_embeds, caption_embeds (`(batch, projection_dim)`): L2-normalized embeddings.
    """

    loss: torch.FloatTensor | None = None
    loss_address: torch.FloatTensor | None = None
    loss_caption: torch.FloatTensor | None = None
    loss_geography: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    caption_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in super().to_tuple())


def _check_rows(name: str, tensor: torch.Tensor | None, ndim: int, rows: int | None) -> None:
    if tensor is None:
        return
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if rows is not None and tensor.shape[0] != rows:
        raise ValueError(f"{name} has batch size {tensor.shape[0]} but pixel_values has {rows}")


class AddressCLIPModel(PromptLearningMixin, CLIPModel):
    """CLIP with AddressCLIP's three losses and a cached address bank; plain CLIP checkpoints load into it.

    With ``config.prompt_learning`` (Tab. 2's CoOp, CoCoOp, MaPLe) CLIP is frozen and only ``prompt_learner`` trains;
    every method below then runs through the prompts (``prompt_learning.py``).
    """

    config_class = AddressCLIPConfig
    config: AddressCLIPConfig
    accepts_loss_kwargs = False

    def __init__(self, config: AddressCLIPConfig):
        super().__init__(config)
        if config.address_bank:
            self.register_buffer("address_bank_embeds", torch.zeros(len(config.address_bank), config.projection_dim))
        self._build_prompt_learner()

    # ----------------------------------------------------------------------------- loading / saving
    @classmethod
    def from_clip_pretrained(cls, name_or_path: str | Path, **kwargs) -> "AddressCLIPModel":
        """Load a plain CLIP checkpoint (local dir or Hub id such as ``openai/clip-vit-base-patch16``).

        Keyword arguments that are ``AddressCLIPConfig`` fields override the recipe (e.g.
        ``geography_loss_weight=0.0``); ``revision``, ``cache_dir``, ``token``, ``local_files_only``,
        ``dtype`` and ``output_loading_info`` go to ``from_pretrained``.
        """
        load_kwargs = {k: kwargs.pop(k) for k in _LOADING_KWARGS if k in kwargs}
        hub_kwargs = {
            k: v for k, v in load_kwargs.items() if k in ("revision", "cache_dir", "token", "local_files_only")
        }
        clip_config = CLIPConfig.from_pretrained(name_or_path, **hub_kwargs)
        fields = clip_config.to_dict()
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            fields.pop(key, None)
        config = AddressCLIPConfig(**{**fields, **kwargs})
        return cls.from_pretrained(name_or_path, config=config, **load_kwargs)

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs) -> None:
        """Save weights + config (``auto_map``, ``custom_pipelines``) and copy the remote-code files beside them."""
        module = self.__class__.__module__.rsplit(".", 1)[-1]
        config_module = self.config.__class__.__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {
            "AutoConfig": f"{config_module}.{self.config.__class__.__name__}",
            **{auto: f"{module}.{self.__class__.__name__}" for auto in AUTO_CLASSES},
        }
        self.config.custom_pipelines = {task: dict(info) for task, info in CUSTOM_PIPELINES.items()}
        super().save_pretrained(save_directory, *args, **kwargs)
        source = Path(__file__).parent
        for name in HUB_FILES:
            if (source / name).exists():
                shutil.copyfile(source / name, Path(save_directory) / name)

    # ----------------------------------------------------------------------------- forward
    def _encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, BaseModelOutputWithPooling]:
        """L2-normalized text embeddings and the text tower's output (``kwargs``: CLIP's output flags)."""
        if self.prompt_learner is not None:  # CLIP's output flags do not apply to the prompted towers
            return self._prompted_text(input_ids, attention_mask, position_ids)
        outputs = self.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        return F.normalize(outputs.pooler_output, dim=-1), outputs

    def _validate_inputs(self, input_ids, attention_mask, pixel_values, caption_input_ids, caption_attention_mask, utm):
        """Name the input that is wrong; only shapes that CLIPModel's forward would also reject, and ours."""
        if input_ids is None:
            raise ValueError("input_ids (the address texts) are required")
        if pixel_values is None:
            raise ValueError("pixel_values (the images) are required")
        _check_rows("pixel_values", pixel_values, 4, None)
        _check_rows("input_ids", input_ids, 2, None)
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != input_ids {tuple(input_ids.shape)}"
            )
        if caption_input_ids is not None:
            if caption_attention_mask is None:
                raise ValueError("caption_input_ids were given without caption_attention_mask")
            _check_rows("caption_input_ids", caption_input_ids, 2, pixel_values.shape[0])
            if caption_attention_mask.shape != caption_input_ids.shape:
                raise ValueError(
                    f"caption_attention_mask shape {tuple(caption_attention_mask.shape)} != "
                    f"caption_input_ids {tuple(caption_input_ids.shape)}"
                )
        if utm is not None:
            if utm.ndim != 2 or utm.shape[1] != 2:
                raise ValueError(f"utm must have shape (batch, 2) = (east, north), got {tuple(utm.shape)}")
            _check_rows("utm", utm, 2, pixel_values.shape[0])

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        caption_input_ids: torch.LongTensor | None = None,
        caption_attention_mask: torch.Tensor | None = None,
        utm: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AddressCLIPOutput:
        r"""
        CLIPModel's arguments, in CLIPModel's order, then AddressCLIP's (keep them that way: CLIP code passes
        the first three by position).

        input_ids / attention_mask / position_ids: `(batch, seq)` address prompts (``config.text_template``).
        pixel_values: `(batch, 3, H, W)` images, processed by the model's image processor.
        return_loss: compute Eq. 6. ``None`` means "when ``utm`` is given" (training and evaluation batches).
        interpolate_pos_encoding: as in CLIP, for images of another size than ``vision_config.image_size``.
        caption_input_ids / caption_attention_mask: `(batch, seq)` ``caption + " " + address`` texts (Eq. 2).
        utm: `(batch, 2)` UTM (east, north) of each image in metres (Eq. 3); it is the Trainer's label.
        kwargs: CLIP's (``output_attentions``, ``output_hidden_states``, ...), passed to both towers as CLIP does;
            ``return_dict=False`` returns ``to_tuple()``. The caption texts are encoded for their embedding only.
        With ``config.prompt_learning`` the output flags are unused; CoCoOp's text/caption embeds are 3-D.
        """
        self._validate_inputs(input_ids, attention_mask, pixel_values, caption_input_ids, caption_attention_mask, utm)
        vision = self._encode_image(pixel_values, interpolate_pos_encoding, **kwargs)
        image_embeds = F.normalize(vision.pooler_output, dim=-1)
        with_loss = bool(return_loss or (return_loss is None and utm is not None))
        if with_loss and input_ids.shape[0] != image_embeds.shape[0]:
            raise ValueError(
                f"input_ids has batch size {input_ids.shape[0]} but pixel_values has {image_embeds.shape[0]}: "
                "the contrastive loss pairs row i of each"
            )
        if self.image_conditioned:  # CoCoOp: each text is encoded under each image's prompt (text_embeds 3-D)
            captions = (caption_input_ids, caption_attention_mask)
            parts = self._conditioned_forward(image_embeds, (input_ids, attention_mask), captions, utm, with_loss)
            return AddressCLIPOutput(**parts, image_embeds=image_embeds, vision_model_output=vision)
        text_embeds, text = self._encode_text(input_ids, attention_mask, position_ids, **kwargs)
        caption_embeds = None
        if caption_input_ids is not None:
            caption_embeds, _ = self._encode_text(caption_input_ids, caption_attention_mask)
        losses = self._losses(image_embeds, text_embeds, caption_embeds, utm) if with_loss else {}
        # As CLIPModel: the logits live where the text tower does (the towers may sit on different devices).
        device = text_embeds.device
        logits_per_text = self.logit_scale.exp().to(device) * text_embeds @ image_embeds.t().to(device)
        return AddressCLIPOutput(
            **losses,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            caption_embeds=caption_embeds,
            text_model_output=text,
            vision_model_output=vision,
        )

    def _losses(self, image_embeds, text_embeds, caption_embeds, utm, pairs=None) -> dict[str, torch.Tensor]:
        """Eq. 1, 2 and 5 on the (global) batch and their Eq. 6 sum; parts without inputs are left out.

        Computed on the text tower's device, like CLIPModel's loss, when the towers sit on different devices.
        ``pairs``: Eq. 1 (and 2) computed by the caller instead (CoCoOp, whose texts depend on the image).
        """
        config = self.config
        device = image_embeds.device if text_embeds is None else text_embeds.device
        gather = gather_with_grad if config.gather_across_ranks else (lambda t: t)
        images = gather(image_embeds.to(device))
        logit_scale = self.logit_scale.to(device)
        parts = dict(pairs or {"loss_address": image_text_contrastive_loss(images, gather(text_embeds), logit_scale)})
        loss = config.address_loss_weight * parts["loss_address"]
        if caption_embeds is not None:
            captions = gather(caption_embeds.to(device))
            parts["loss_caption"] = image_text_contrastive_loss(images, captions, logit_scale)
        if "loss_caption" in parts:
            loss = loss + config.caption_loss_weight * parts["loss_caption"]
        if utm is not None:
            global_utm = gather(utm.to(device=device, dtype=torch.float64))
            parts["loss_geography"] = geography_matching_loss(images, global_utm, config.geography_target)
            loss = loss + config.geography_loss_weight * parts["loss_geography"]
        return {"loss": loss, **parts}

    # ----------------------------------------------------------------------------- address bank
    @property
    def address_bank(self) -> list[str]:
        """The candidate addresses, in the row order of ``address_bank_embeds`` (empty if none is set)."""
        return list(self.config.address_bank or [])

    @property
    def address_places(self) -> list[dict | None]:
        """Aligned with ``address_bank``: each address's ``{"latitude", "longitude", "line"}`` (WGS84 degrees) or
        None where its place is unknown; all None when the bank was set without places."""
        places = self.config.address_places
        return list(places) if places is not None else [None] * len(self.address_bank)

    # ----------------------------------------------------------------------------- the one encode path
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalized image embeddings ``(batch, projection_dim)`` of processed ``pixel_values``."""
        pixel_values = pixel_values.to(device=self.logit_scale.device, dtype=self.dtype)
        return F.normalize(self._encode_image(pixel_values).pooler_output, dim=-1)

    @torch.no_grad()
    def embed_addresses(self, addresses: list[str], processor, batch_size: int = 256) -> torch.Tensor:
        """L2-normalized float embeddings ``(N, projection_dim)`` of address texts in ``config.text_template``.

        Any text works here (a street or neighborhood name too); ``processor`` is the model's processor
        or its tokenizer.
        """
        tokenizer = getattr(processor, "tokenizer", processor)
        prompts = [self.config.format_address_prompt(str(a)) for a in addresses]
        device = self.logit_scale.device
        chunks = [torch.zeros(0, self.config.projection_dim, device=device)]
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(prompts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            embeds, _ = self._encode_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
            chunks.append(embeds.float())
            self._remember_texts(chunks[-1], tokens["input_ids"], tokens["attention_mask"])  # CoCoOp only
        return torch.cat(chunks).contiguous()

    @torch.no_grad()
    def set_address_bank(
        self, addresses: list[str], processor, batch_size: int = 256, places: list[dict | None] | None = None
    ) -> None:
        """Encode every candidate address once (:meth:`embed_addresses`) and keep it as a saved buffer.

        ``places`` (aligned with ``addresses``): each address's ``{"latitude", "longitude", "line": [[lat, lon],
        ...]}`` in WGS84 degrees, or None where it is unknown; saved in the config (rounded to 7 decimals, ~1 cm)
        and returned with each prediction. ``places=None`` clears them.
        """
        addresses = [str(a) for a in addresses]
        if not addresses:
            raise ValueError("the address bank needs at least one address")
        seen: dict[str, int] = {}
        for index, text in enumerate(addresses):
            Address.parse(text)
            if text in seen:
                raise ValueError(f"address bank repeats {text!r} at positions {seen[text]} and {index}")
            seen[text] = index
        places = None if places is None else normalize_places(places, addresses)  # checked before any encoding
        tokenizer = getattr(processor, "tokenizer", processor)
        embeds = self.embed_addresses(addresses, tokenizer, batch_size=batch_size)
        self.register_buffer("address_bank_embeds", embeds, persistent=True)
        self._store_bank_tokens([self.config.format_address_prompt(a) for a in addresses], tokenizer)  # CoCoOp only
        self.config.address_bank = addresses
        self.config.address_places = places
        self.config.address_bank_fingerprint = self._bank_fingerprint(tokenizer_fingerprint(tokenizer))

    def _bank_fingerprint(self, tokenizer_hash: str) -> str:
        return self.config.bank_fingerprint(tokenizer_hash)

    def check_address_bank(self, processor=None) -> torch.Tensor:
        """The bank matrix (N, D) after checking it exists and matches the template (and ``processor``)."""
        bank = getattr(self, "address_bank_embeds", None)
        if bank is None or bank.shape[0] == 0 or not self.config.address_bank:
            raise ValueError("this model has no address bank: call model.set_address_bank(addresses, processor) first")
        if bank.shape[0] != len(self.config.address_bank):
            raise ValueError(f"address bank has {bank.shape[0]} embeddings but {len(self.config.address_bank)} texts")
        stored = self.config.address_bank_fingerprint or ""
        tokenizer_hash = stored.split(":", 1)[0]
        if processor is not None:
            tokenizer_hash = tokenizer_fingerprint(getattr(processor, "tokenizer", processor))
        if stored != self._bank_fingerprint(tokenizer_hash):
            raise ValueError(
                "the address bank was encoded with a different tokenizer or address_template "
                f"(bank fingerprint {stored!r}, current {self._bank_fingerprint(tokenizer_hash)!r}); "
                "rebuild it with model.set_address_bank(model.address_bank, processor)"
            )
        return bank

    @torch.no_grad()
    def address_similarity(
        self, pixel_values: torch.Tensor, bank: torch.Tensor | None = None, processor=None
    ) -> torch.Tensor:
        """Cosine similarity ``(batch, N)`` of each image to each address: one image encode, one matrix product.

        ``bank`` is an ``(N, projection_dim)`` matrix of normalized address embeddings (default: the checked
        address bank, :meth:`check_address_bank`); the product runs in the bank's dtype. CoCoOp encodes the bank's
        texts under each image's prompt instead; a ``bank`` must then hold rows of the bank or of ``embed_addresses``.
        """
        if self.image_conditioned:
            return self._conditioned_similarity(pixel_values, bank, processor)
        bank = self.check_address_bank(processor) if bank is None else bank
        image = self.embed_images(pixel_values)
        return image.to(bank.dtype) @ bank.to(image.device).t()

    def address_probabilities(self, similarity: torch.Tensor) -> torch.Tensor:
        """Softmax over the candidates of the logit-scaled cosines (the pipeline's ``score``): a ranking score
        that sums to 1 over the candidates, not a calibrated probability of the place."""
        return (self.logit_scale.exp().float() * similarity.float()).softmax(dim=-1)

    @torch.no_grad()
    def localize(
        self, pixel_values: torch.Tensor, top_k: int = 5, processor=None, bank: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank the address bank for each image: returns (scores, indices), each (batch, min(top_k, N)).

        Scores are cosine similarities between the image embedding and each bank address
        (:meth:`address_similarity`); ``bank`` replaces the saved bank with another candidate matrix.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        similarity = self.address_similarity(pixel_values, bank=bank, processor=processor)
        return similarity.topk(min(top_k, similarity.shape[-1]), dim=-1)


__all__ = ["AddressCLIPModel", "AddressCLIPOutput", "HUB_FILES", "tokenizer_fingerprint"]
