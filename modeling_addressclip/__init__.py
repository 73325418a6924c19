"""addressclip: image address localization (AddressCLIP, ECCV 2024) on the Hugging Face stack.

Importing this package registers ``"addressclip"`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForZeroShotImageClassification``, so ``AutoModel.from_pretrained(dir)`` works without
``trust_remote_code``; saved directories also carry the code for ``trust_remote_code=True``.
It also registers the ``"image-address-localization"`` pipeline task. A saved directory names the task
in its config (``custom_pipelines``), so ``pipeline("image-address-localization", model=dir,
trust_remote_code=True)`` works anywhere (it also names the zero-shot task, so the task must be given);
without remote code pass ``pipeline_class=ImageAddressLocalizationPipeline``.

This package is the Hub model library: it never imports ``dataset_scripts`` or ``addressclip_train``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification
from transformers.pipelines import PIPELINE_REGISTRY

from .address import Address, parse_address
from .configuration_addressclip import PROMPT_METHODS, AddressCLIPConfig
from .data import AddressCLIPCollator, caption_text
from .geo import latlon_to_utm, utm_to_latlon, utm_zone_for
from .image_utils import ImageLoadError, image_pixels, load_image
from .losses import gather_with_grad, geography_matching_loss, image_text_contrastive_loss, symmetric_contrastive_loss
from .modeling_addressclip import AddressCLIPModel, AddressCLIPOutput
from .pipeline_addressclip import TASK as PIPELINE_TASK
from .pipeline_addressclip import AddressZeroShotImageClassificationPipeline, ImageAddressLocalizationPipeline
from .prompt_learning import CoCoOpPromptLearner, MaPLePromptLearner, PromptLearner
from .tokenizer import build_clip_processor, build_clip_tokenizer, sync_text_config_with_tokenizer

AutoConfig.register(AddressCLIPConfig.model_type, AddressCLIPConfig, exist_ok=True)
AutoModel.register(AddressCLIPConfig, AddressCLIPModel, exist_ok=True)
AutoModelForZeroShotImageClassification.register(AddressCLIPConfig, AddressCLIPModel, exist_ok=True)
if PIPELINE_TASK not in PIPELINE_REGISTRY.supported_tasks:
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=ImageAddressLocalizationPipeline, pt_model=AutoModel, type="image"
    )

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AddressZeroShotImageClassificationPipeline",
    "AddressCLIPCollator",
    "AddressCLIPConfig",
    "AddressCLIPModel",
    "AddressCLIPOutput",
    "CoCoOpPromptLearner",
    "ImageAddressLocalizationPipeline",
    "ImageLoadError",
    "MaPLePromptLearner",
    "PROMPT_METHODS",
    "PromptLearner",
    "build_clip_processor",
    "build_clip_tokenizer",
    "caption_text",
    "gather_with_grad",
    "geography_matching_loss",
    "image_pixels",
    "image_text_contrastive_loss",
    "latlon_to_utm",
    "load_image",
    "parse_address",
    "symmetric_contrastive_loss",
    "sync_text_config_with_tokenizer",
    "utm_to_latlon",
    "utm_zone_for",
]
