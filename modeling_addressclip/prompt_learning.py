"""The prompt-learning baselines of the paper's Tab. 2 on a frozen CLIP: CoOp, CoCoOp and MaPLe.

A learner holds only the prompts (saved as ``prompt_learner.*`` in ``model.safetensors``); the functions here run
CLIP's own embeddings, layers, norms and projections with them. The class text is ``"{address}."``; the text
encoder sees ``[SOS] ctx_1 .. ctx_M tokens("{address}.") [EOS]``.

- CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022): M = 16 unified context
  vectors, class token at the end, random N(0, 0.02^2) initialization (the paper's main setting).
- CoCoOp (Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022): M = 4 context
  vectors from "a photo of a"; a meta-net Linear(d, d/16)-ReLU-Linear(d/16, D) of the normalized image
  embedding adds pi(x) to every context vector: each image has its own prompt.
- MaPLe (Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023): M = 2 text prompts from "a photo of a"
  at layer 0, N(0, 0.02^2) "compound" prompts for layers 1..J-1 (J = 9); vision prompts = one coupling
  Linear(D_text, D_vision) per layer of that layer's text prompts, appended after the patch tokens before
  ``pre_layrnorm`` (as MaPLe's code does); at layers 1..J-1 both towers' prompt positions are replaced.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .losses import gather_tokens, gather_with_grad, symmetric_contrastive_loss

_REMEMBERED_ROWS = 65536  # embed_addresses rows whose texts a CoCoOp model can re-encode under an image's prompt


def _reset_linear(layer: nn.Linear) -> None:
    """PyTorch's own ``nn.Linear`` initialization (what the CoCoOp and MaPLe code use), through the guarded inits."""
    init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    if layer.bias is not None:
        init.uniform_(layer.bias, -1 / math.sqrt(layer.in_features), 1 / math.sqrt(layer.in_features))


class PromptLearner(nn.Module):
    """M context vectors ``ctx`` (M, D_text) inserted after SOS: CoOp's learner, and the base of the others."""

    image_conditioned = False

    def __init__(self, config):
        super().__init__()
        self.context_length = config.prompt_context_tokens
        self.ctx = nn.Parameter(torch.empty(self.context_length, config.text_config.hidden_size))
        self.add_parameters(config)
        self.reset_parameters()

    def add_parameters(self, config) -> None:
        """The method's parameters beyond the context (CoOp has none)."""

    def reset_parameters(self) -> None:
        """Random init N(0, 0.02^2) as all three papers do without an init text (loaded weights are kept)."""
        init.normal_(self.ctx, std=0.02)

    @torch.no_grad()
    def initialize_from_text(self, token_embedding: nn.Embedding, tokenizer, text: str) -> int:
        """Copy the token embeddings of ``text``'s first M tokens into the context; returns how many were set."""
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: self.context_length]
        if ids:
            weight = token_embedding.weight
            self.ctx[: len(ids)] = weight[torch.tensor(ids, device=weight.device)].to(self.ctx.dtype)
        return len(ids)

    def text_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The layer-0 context (M, D) and the deeper layers' replacements (MaPLe; none here)."""
        return self.ctx, []

    def vision_prompts(self) -> list[torch.Tensor] | None:
        """Per-layer vision prompts (MaPLe), or None when the image tower is CLIP's own."""
        return None


class CoCoOpPromptLearner(PromptLearner):
    """CoCoOp: the context plus pi(x), the meta-net of the image embedding (one prompt per image)."""

    image_conditioned = True

    def add_parameters(self, config) -> None:
        vis_dim, hidden = config.projection_dim, max(1, config.projection_dim // 16)
        self.meta_net = nn.Sequential(
            nn.Linear(vis_dim, hidden), nn.ReLU(), nn.Linear(hidden, config.text_config.hidden_size)
        )

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in (self.meta_net[0], self.meta_net[2]):
            _reset_linear(layer)

    def image_context(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, M, D): ctx + pi(v) for each L2-normalized image embedding v (B, projection_dim)."""
        shift = self.meta_net(image_embeds.to(self.ctx.dtype))
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)


class MaPLePromptLearner(PromptLearner):
    """MaPLe: text prompts for layers 0..J-1 (``ctx``, ``deep_ctx``) and their couplings to the vision tower."""

    def add_parameters(self, config) -> None:
        text_dim, vision_dim, depth = (
            config.text_config.hidden_size,
            config.vision_config.hidden_size,
            config.prompt_layers,
        )
        self.deep_ctx = nn.ParameterList([nn.Parameter(torch.empty_like(self.ctx)) for _ in range(depth - 1)])
        self.couplings = nn.ModuleList([nn.Linear(text_dim, vision_dim) for _ in range(depth)])

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for prompt in self.deep_ctx:
            init.normal_(prompt, std=0.02)
        for layer in self.couplings:
            _reset_linear(layer)

    def text_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.ctx, list(self.deep_ctx)

    def vision_prompts(self) -> list[torch.Tensor]:
        return [coupling(prompt) for coupling, prompt in zip(self.couplings, [self.ctx, *self.deep_ctx])]


LEARNERS = {"coop": PromptLearner, "cocoop": CoCoOpPromptLearner, "maple": MaPLePromptLearner}


def fit_token_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int):
    """Cut right-padded sequences to ``width`` tokens, keeping each row's last real token (its EOS) at the end."""
    if input_ids.shape[1] <= width:
        return input_ids, attention_mask
    lengths = attention_mask.sum(dim=1)
    rows = torch.nonzero(lengths > width).flatten()
    ids, mask = input_ids[:, :width].clone(), attention_mask[:, :width].clone()
    ids[rows, width - 1] = input_ids[rows, lengths[rows] - 1]
    return ids, mask


def eos_positions(text_model, input_ids: torch.Tensor) -> torch.Tensor:
    """Where ``CLIPTextModel`` pools each row: the highest id (legacy ``eos_token_id == 2``) or the first EOS."""
    ids, eos = input_ids.to(torch.int), text_model.eos_token_id
    return ids.argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)


def prompted_text_features(model, input_ids, attention_mask, ctx, deep=()) -> BaseModelOutputWithPooling:
    """CLIP's text tower with the context ``ctx`` ((M, D) shared or (B, M, D) per row) inserted after SOS.

    ``deep`` (MaPLe): the prompts that replace the context positions' hidden states at layers 1, 2, ...
    Address tokens are cut so that the sequence fits ``max_position_embeddings`` (the EOS is kept). Returns the
    final hidden states and the projected (unnormalized) EOS embedding as ``pooler_output``.
    """
    text = model.text_model
    batch, context = input_ids.shape[0], ctx.shape[-2]
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    input_ids, attention_mask = fit_token_ids(input_ids, attention_mask, text.config.max_position_embeddings - context)
    tokens = text.embeddings.token_embedding(input_ids)
    ctx = ctx.to(tokens.dtype).expand(batch, -1, -1)
    hidden = torch.cat([tokens[:, :1], ctx, tokens[:, 1:]], dim=1)
    hidden = hidden + text.embeddings.position_embedding(text.embeddings.position_ids[:, : hidden.shape[1]])
    mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(batch, context), attention_mask[:, 1:]], dim=1)
    mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=mask, cache=None)
    for index, layer in enumerate(text.encoder.layers):
        if 0 < index <= len(deep):
            prompt = deep[index - 1].to(hidden.dtype).expand(batch, -1, -1)
            hidden = torch.cat([hidden[:, :1], prompt, hidden[:, 1 + context :]], dim=1)
        hidden = layer(hidden, mask, is_causal=True)
    hidden = text.final_layer_norm(hidden)
    rows = torch.arange(batch, device=hidden.device)
    pooled = hidden[rows, eos_positions(text, input_ids).to(hidden.device) + context]
    return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=model.text_projection(pooled))


def prompted_image_features(model, pixel_values, prompts, interpolate_pos_encoding=False):
    """CLIP's vision tower with MaPLe's prompts: ``prompts[k]`` (M, D_vision) holds the M tokens after the patches
    at layer k (appended before ``pre_layrnorm`` at layer 0, replacing the previous ones at 1..J-1); CLS pooling."""
    vision = model.vision_model
    hidden = vision.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
    batch, context = hidden.shape[0], prompts[0].shape[0]
    hidden = vision.pre_layrnorm(torch.cat([hidden, prompts[0].to(hidden.dtype).expand(batch, -1, -1)], dim=1))
    for index, layer in enumerate(vision.encoder.layers):
        if 0 < index < len(prompts):
            prompt = prompts[index].to(hidden.dtype).expand(batch, -1, -1)
            hidden = torch.cat([hidden[:, :-context], prompt], dim=1)
        hidden = layer(hidden, None)
    pooled = vision.post_layernorm(hidden[:, 0])
    return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=model.visual_projection(pooled))


def _row_keys(matrix: torch.Tensor) -> list[bytes]:
    rows = matrix.detach().float().cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


class PromptLearningMixin:
    """What ``AddressCLIPModel`` does with ``config.prompt_learning`` set; with None, every path is CLIP's own.

    CoOp and MaPLe banks are fixed matrices encoded with the prompts. CoCoOp's text depends on the image: its bank
    also keeps the token ids (``address_bank_input_ids`` / ``_attention_mask``, saved) and is encoded per image;
    ``address_bank_embeds`` holds the bank under the image-free prompt (pi = 0).
    """

    prompt_learner: PromptLearner | None

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``; a prompt model's CLIP weights stay frozen (loading replaces them)."""
        loaded = super().from_pretrained(*args, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).freeze_clip()
        return loaded

    def freeze_clip(self) -> None:
        """With prompt learning: every CLIP weight frozen (the logit scale too, as CoOp keeps CLIP's temperature),
        the prompts trainable. Without: nothing changes."""
        if self.prompt_learner is not None:
            self.requires_grad_(False)
            self.prompt_learner.requires_grad_(True)

    def reset_prompts(self) -> None:
        """A fresh learner (the method's random init; CLIP stays frozen); ``initialize_prompts`` may follow."""
        method = self.config.prompt_learning
        self.prompt_learner = None if method is None else LEARNERS[method](self.config)
        if self.prompt_learner is not None:
            self.prompt_learner.to(device=self.logit_scale.device, dtype=self.dtype)
        self.freeze_clip()

    def _build_prompt_learner(self) -> None:
        self.reset_prompts()
        if self.image_conditioned and self.config.address_bank:
            shape = (len(self.config.address_bank), self._bank_width())
            self._register_bank_tokens(torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long))

    @property
    def image_conditioned(self) -> bool:
        """True for CoCoOp: the text embeddings depend on the image, so no fixed bank matrix ranks addresses."""
        return self.prompt_learner is not None and self.prompt_learner.image_conditioned

    def prompt_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of a prompt-learning model (empty without prompt learning)."""
        return [] if self.prompt_learner is None else list(self.prompt_learner.parameters())

    def initialize_prompts(self, tokenizer) -> int:
        """Initialize the context from ``config.prompt_init_text``'s token embeddings (of this model's CLIP).

        Call it after loading a CLIP (or full fine-tuned) checkpoint into a prompt model; returns the number of
        context vectors set from the text (0 for CoOp's random init or without prompt learning).
        """
        text = self.config.prompt_init_text
        if self.prompt_learner is None or not text:
            return 0
        return self.prompt_learner.initialize_from_text(self.text_model.embeddings.token_embedding, tokenizer, text)

    def _init_weights(self, module: nn.Module) -> None:
        """Missing prompt weights get their method's random init; missing bank token ids are zeros (no bank)."""
        if isinstance(module, PromptLearner):
            module.reset_parameters()
            return
        if module is self and hasattr(self, "address_bank_input_ids"):
            init.zeros_(self.address_bank_input_ids)
            init.zeros_(self.address_bank_attention_mask)
        super()._init_weights(module)

    # ----------------------------------------------------------------------------- the two towers
    def _prompted_text(self, input_ids, attention_mask, position_ids=None):
        """Normalized text embeddings with the learned context (CoCoOp: pi = 0, the image-free prompt)."""
        if position_ids is not None:
            raise ValueError("position_ids cannot be given with prompt learning: the context shifts every position")
        ctx, deep = self.prompt_learner.text_prompts()
        outputs = prompted_text_features(self, input_ids, attention_mask, ctx, deep)
        return F.normalize(outputs.pooler_output, dim=-1), outputs

    def _encode_image(self, pixel_values, interpolate_pos_encoding: bool = False, **kwargs):
        """The image tower's output (``pooler_output`` projected): MaPLe's prompted tower or CLIP's own."""
        prompts = None if self.prompt_learner is None else self.prompt_learner.vision_prompts()
        if prompts is None:
            return self.get_image_features(
                pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
            )
        return prompted_image_features(self, pixel_values, prompts, interpolate_pos_encoding)

    def _conditioned_text(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """CoCoOp: (B_img, N, D) normalized embeddings of the N texts, each under each image's own prompt."""
        images, texts = image_embeds.shape[0], input_ids.shape[0]
        ctx = self.prompt_learner.image_context(image_embeds).repeat_interleave(texts, dim=0)
        outputs = prompted_text_features(self, input_ids.repeat(images, 1), attention_mask.repeat(images, 1), ctx)
        return F.normalize(outputs.pooler_output, dim=-1).view(images, texts, -1)

    def _conditioned_forward(self, image_embeds, texts, captions, utm, with_loss: bool) -> dict:
        """CoCoOp's outputs and losses: Eq. 1/2 on the global batch, Eq. 5 as AddressCLIP's.

        ``logits[i, j] = scale * cos(v_i, t(ctx + pi(v_i), text_j))`` for the local images i and the GLOBAL
        batch's texts j (token ids gathered, no gradient needed); the (B_local, B) rows are gathered with
        ``gather_with_grad`` into the full (B, B) matrix and the symmetric loss of Eq. 1 applied. ``texts`` and
        ``captions`` are (input_ids, attention_mask); the returned embeddings are (B_img, B_text, D).
        """
        scale, out, pairs = self.logit_scale.exp(), {}, {}
        gather = with_loss and self.config.gather_across_ranks
        for name, (input_ids, attention_mask) in (("text", texts), ("caption", captions)):
            if input_ids is None:
                continue
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            all_ids, all_mask, offset = gather_tokens(input_ids, mask) if gather else (input_ids, mask, 0)
            embeds = self._conditioned_text(image_embeds, all_ids, all_mask)
            logits = scale * torch.einsum("bd,bnd->bn", image_embeds.to(embeds.dtype), embeds)
            if with_loss:
                key = "loss_address" if name == "text" else "loss_caption"
                pairs[key] = symmetric_contrastive_loss(gather_with_grad(logits) if gather else logits)
            out[f"{name}_embeds"] = embeds[:, offset : offset + input_ids.shape[0]]
            if name == "text":
                out["logits_per_image"] = logits[:, offset : offset + input_ids.shape[0]]
                out["logits_per_text"] = out["logits_per_image"].t()
        losses = self._losses(image_embeds, None, None, utm, pairs) if with_loss else {}
        return {**losses, **out}

    # ----------------------------------------------------------------------------- CoCoOp's address bank
    def _bank_width(self) -> int:
        return self.config.text_config.max_position_embeddings - self.config.prompt_context_tokens

    def _register_bank_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self.register_buffer("address_bank_input_ids", input_ids, persistent=True)
        self.register_buffer("address_bank_attention_mask", attention_mask, persistent=True)

    def _store_bank_tokens(self, prompts: list[str], tokenizer) -> None:
        """CoCoOp: keep the bank's token ids (padded buffers saved with the weights) to encode them per image."""
        if not self.image_conditioned:
            return
        tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        ids, mask = fit_token_ids(tokens["input_ids"], tokens["attention_mask"], self._bank_width())
        pad = self._bank_width() - ids.shape[1]
        device = self.logit_scale.device
        self._register_bank_tokens(F.pad(ids, (0, pad)).to(device), F.pad(mask, (0, pad)).to(device))

    def _remember_texts(self, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """CoCoOp: note which texts ``embed_addresses`` rows (pi = 0) stand for, so a matrix of them can be ranked."""
        if not self.image_conditioned:
            return
        remembered = self.__dict__.setdefault("_remembered_texts", OrderedDict())
        for key, ids, mask in zip(_row_keys(embeds), input_ids.cpu(), attention_mask.cpu()):
            remembered[key] = ids[: int(mask.sum())]
            remembered.move_to_end(key)
        while len(remembered) > _REMEMBERED_ROWS:
            remembered.popitem(last=False)

    def _bank_tokens(self, bank: torch.Tensor | None, processor) -> tuple[torch.Tensor, torch.Tensor]:
        """The token ids (N, L) behind a bank matrix: the saved bank's, or those of rows this model encoded
        (the saved bank's or ``embed_addresses``'s rows, recognized by a hash of their values)."""
        stored = getattr(self, "address_bank_embeds", None)
        if bank is None or bank is stored:
            self.check_address_bank(processor)
            return self._stored_bank_tokens()
        keys, remembered = _row_keys(bank), self.__dict__.get("_remembered_texts", {})
        if any(key not in remembered for key in keys) and stored is not None:
            self._remember_texts(stored, *self._stored_bank_tokens())
            remembered = self.__dict__["_remembered_texts"]
        unknown = [index for index, key in enumerate(keys) if key not in remembered]
        if unknown:
            raise ValueError(
                f"bank rows {unknown} are not addresses this CoCoOp model encoded: its texts' embeddings depend on the "
                "image, so a fixed matrix cannot be ranked. Pass rows of model.address_bank_embeds or of "
                "model.embed_addresses(texts, processor) (their texts are re-encoded under each image's prompt)"
            )
        texts = [remembered[key] for key in keys]
        padded = nn.utils.rnn.pad_sequence(texts, batch_first=True)
        mask = torch.arange(padded.shape[1]) < torch.tensor([len(t) for t in texts])[:, None]
        return padded.to(self.logit_scale.device), mask.long().to(self.logit_scale.device)

    def _stored_bank_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.address_bank_input_ids, self.address_bank_attention_mask
        if not bool(mask[:, 0].all()):
            raise ValueError("this CoCoOp model's address bank has no token ids: call model.set_address_bank again")
        return ids, mask

    @torch.no_grad()
    def _conditioned_similarity(self, pixel_values, bank, processor, texts_per_chunk: int = 1024) -> torch.Tensor:
        """CoCoOp's (batch, N) cosine similarities: every bank text encoded under each image's prompt, chunked."""
        ids, mask = self._bank_tokens(bank, processor)
        image = self.embed_images(pixel_values)
        width = int(mask.sum(dim=1).max())
        ids, mask = ids[:, :width], mask[:, :width]
        step = max(1, texts_per_chunk // image.shape[0])
        chunks = [
            torch.einsum("bd,bnd->bn", image, self._conditioned_text(image, ids[i : i + step], mask[i : i + step]))
            for i in range(0, ids.shape[0], step)
        ]
        return torch.cat(chunks, dim=1).float()


__all__ = [
    "LEARNERS",
    "CoCoOpPromptLearner",
    "MaPLePromptLearner",
    "PromptLearner",
    "PromptLearningMixin",
    "eos_positions",
    "fit_token_ids",
    "prompted_image_features",
    "prompted_text_features",
]
