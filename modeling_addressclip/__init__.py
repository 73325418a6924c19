"""addressclip: image address localization (AddressCLIP, ECCV 2024) on the Hugging Face stack.

Importing this package registers ``"addressclip"`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForZeroShotImageClassification``, so ``AutoModel.from_pretrained(dir)`` works without
``trust_remote_code``; saved directories also carry the code for ``trust_remote_code=True``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification

from .address import Address, parse_address
from .configuration_addressclip import AddressCLIPConfig
from .data import AddressCLIPCollator, caption_text
from .geo import latlon_to_utm, utm_to_latlon, utm_zone_for
from .losses import gather_with_grad, geography_matching_loss, image_text_contrastive_loss
from .modeling_addressclip import AddressCLIPModel, AddressCLIPOutput
from .tokenizer import build_clip_processor, build_clip_tokenizer, sync_text_config_with_tokenizer

AutoConfig.register(AddressCLIPConfig.model_type, AddressCLIPConfig, exist_ok=True)
AutoModel.register(AddressCLIPConfig, AddressCLIPModel, exist_ok=True)
AutoModelForZeroShotImageClassification.register(AddressCLIPConfig, AddressCLIPModel, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AddressCLIPCollator",
    "AddressCLIPConfig",
    "AddressCLIPModel",
    "AddressCLIPOutput",
    "build_clip_processor",
    "build_clip_tokenizer",
    "caption_text",
    "gather_with_grad",
    "geography_matching_loss",
    "image_text_contrastive_loss",
    "latlon_to_utm",
    "parse_address",
    "sync_text_config_with_tokenizer",
    "utm_to_latlon",
    "utm_zone_for",
]
