"""AddressCLIP configuration: a CLIP config plus the paper's loss recipe and the address bank."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig

GEOGRAPHY_TARGETS = ("similarity", "distance")
DEFAULT_ADDRESS_TEMPLATE = "A street view photo at {address}."


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
    address_bank_fingerprint (`str`, *optional*):
        fingerprint of the tokenizer + template the bank was encoded with; checked when the bank is used.
    abstain_threshold (`float`, *optional*):
        the pipeline's default ``min_score``: below this top-1 score it answers "no confident address".
        Training sets it on the query split (the score that keeps ``abstain_coverage`` of in-domain photos
        answered); None never abstains.
    abstain_coverage (`float`, *optional*):
        the share of the query split answered at ``abstain_threshold`` when it was calibrated.
    """

    model_type = "addressclip"

    address_loss_weight: float = 1.0
    caption_loss_weight: float = 0.2
    geography_loss_weight: float = 0.8
    geography_target: str = "similarity"
    gather_across_ranks: bool = True
    address_template: str = DEFAULT_ADDRESS_TEMPLATE
    address_bank: list[str] | None = None
    address_bank_fingerprint: str | None = None
    abstain_threshold: float | None = None
    abstain_coverage: float | None = None

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

    def format_address_prompt(self, address: str) -> str:
        """Wrap an address text in ``address_template`` (the exact text the text encoder sees)."""
        return self.address_template.format(address=address)


__all__ = ["AddressCLIPConfig", "DEFAULT_ADDRESS_TEMPLATE", "GEOGRAPHY_TARGETS"]
