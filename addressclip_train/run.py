"""The pieces of one ``train.py`` run: its arguments, data, model, and what it leaves behind.

``addressclip_train.train`` only wires these together, so each piece is importable and tested on its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoModel, AutoProcessor, CLIPProcessor
from transformers.utils import logging

from addressclip_train.reporting import distance_summary
from modeling_addressclip.configuration_addressclip import DEFAULT_ADDRESS_TEMPLATE, PROMPT_METHODS, AddressCLIPConfig
from modeling_addressclip.data import caption_text
from modeling_addressclip.modeling_addressclip import AddressCLIPModel
from modeling_addressclip.tokenizer import build_clip_processor, sync_text_config_with_tokenizer

DEMO_NAME = "demo city (central Helsinki, rendered from OpenStreetMap)"
METHOD_NAMES = {None: "AddressCLIP (full fine-tuning)", "coop": "CoOp", "cocoop": "CoCoOp", "maple": "MaPLe"}
logger = logging.get_logger(__name__)


@dataclass(frozen=True)
class DatasetTerms:
    """What a model card must carry over from its training data: a name, the license, an attribution."""

    name: str
    hub_id: str | None = None
    license: str | None = None
    attribution: str | None = None


def dataset_terms(args: DataArguments) -> DatasetTerms:
    """Name, Hub id (None for a local directory), license and attribution of the training data, from its card."""
    from huggingface_hub import DatasetCard

    from dataset_scripts.osm import OSM_ATTRIBUTION

    if args.dataset_name is None:
        return DatasetTerms(DEMO_NAME, None, "odbl", OSM_ATTRIBUTION)
    path = Path(args.dataset_name)
    local = path.exists()
    try:
        card = DatasetCard.load(path / "README.md" if local else args.dataset_name, repo_type="dataset")
    except Exception:  # noqa: BLE001 - no card (or offline): nothing to carry over
        return DatasetTerms(path.name if local else args.dataset_name, None if local else args.dataset_name)
    osm = "openstreetmap" in card.text.casefold()
    return DatasetTerms(
        card.data.get("pretty_name") or (path.name if local else args.dataset_name),
        None if local else args.dataset_name,
        card.data.get("license"),
        OSM_ATTRIBUTION if osm else None,
    )


@dataclass
class ModelArguments:
    """Which model to train and with which recipe (paper §4.4, §6.1)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A CLIP checkpoint (Hub id or directory, e.g. openai/clip-vit-base-patch16), loaded with "
            "AddressCLIPModel.from_clip_pretrained, or an AddressCLIP directory. Empty: a small CLIP trained "
            "from scratch with a tokenizer built from the dataset's texts (the demo)."
        },
    )
    address_loss_weight: float = field(default=1.0, metadata={"help": "alpha: image-address contrastive loss (Eq. 1)"})
    caption_loss_weight: float = field(default=0.2, metadata={"help": "beta: image-caption contrastive loss (Eq. 2)"})
    geography_loss_weight: float = field(default=0.8, metadata={"help": "gamma: image-geography matching (Eq. 5)"})
    geography_target: str = field(default="similarity", metadata={"help": "'similarity' (1 - D^U) or 'distance'"})
    address_template: str = field(default=DEFAULT_ADDRESS_TEMPLATE, metadata={"help": "prompt around an address"})
    freeze_vision_model: bool = field(default=False, metadata={"help": "freeze the image encoder (paper Tab. 4)"})
    freeze_text_model: bool = field(default=False, metadata={"help": "freeze the text encoder (paper Tab. 4)"})
    image_size: int = field(default=224, metadata={"help": "input resolution of the image encoder"})
    patch_size: int = field(default=16, metadata={"help": "from scratch: ViT patch size"})
    vision_hidden_size: int = field(default=256, metadata={"help": "from scratch: ViT width"})
    vision_layers: int = field(default=4, metadata={"help": "from scratch: ViT depth"})
    text_hidden_size: int = field(default=256, metadata={"help": "from scratch: text transformer width"})
    text_layers: int = field(default=4, metadata={"help": "from scratch: text transformer depth"})
    attention_heads: int = field(default=4, metadata={"help": "from scratch: heads in both encoders"})
    projection_dim: int = field(default=256, metadata={"help": "from scratch: joint embedding size"})
    vocab_size: int = field(default=2048, metadata={"help": "from scratch: BPE vocabulary size"})
    max_text_length: int = field(default=64, metadata={"help": "from scratch: text positions"})
    caption_includes_address: bool = field(
        default=True,
        metadata={"help": "Eq. 2's text is caption + ' ' + address (paper §4.2); false: the caption alone"},
    )
    prompt_learning: str | None = field(
        default=None,
        metadata={
            "help": "a prompt-learning baseline of the paper's Tab. 2 on a frozen pretrained CLIP: coop, cocoop or "
            "maple; empty: AddressCLIP's full fine-tuning",
            "choices": list(PROMPT_METHODS),
        },
    )
    prompt_context_length: int | None = field(
        default=None, metadata={"help": "prompt learning: context vectors M (default CoOp 16, CoCoOp 4, MaPLe 2)"}
    )
    prompt_depth: int | None = field(default=None, metadata={"help": "MaPLe: prompted layers J (default 9)"})
    prompt_init: str | None = field(
        default=None,
        metadata={"help": "prompt learning: init text (default: random for CoOp, 'a photo of a' for CoCoOp/MaPLe)"},
    )


@dataclass
class DataArguments:
    """Where the IAL dataset comes from (schema in docs/structure.md)."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id or a local directory written by dataset_scripts; empty: the demo city"},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "dataset config (e.g. base, large)"})
    streaming: bool = field(default=False, metadata={"help": "stream the train split (large datasets)"})
    demo_seed: int = field(default=0, metadata={"help": "demo city: rendering seed"})
    demo_image_size: int | None = field(
        default=None, metadata={"help": "demo city: stored image size (default: the builder's, the demo model's input)"}
    )
    demo_max_addresses: int | None = field(default=None, metadata={"help": "demo city: build only N addresses"})
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate train (debugging)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "truncate query (debugging)"})
    unique_address_batches: bool = field(
        default=False,
        metadata={"help": "order each epoch so a batch holds distinct addresses (no same-address negatives in Eq. 1)"},
    )
    zero_shot_eval: bool = field(default=False, metadata={"help": "evaluate the initial model without training"})
    abstain_coverage: float = field(
        default=0.95,
        metadata={
            "help": "calibrate config.abstain_threshold (the pipeline's default min_score) so that this share of the "
            "query split is answered; 0: never abstain"
        },
    )


def load_splits(args: DataArguments) -> tuple[datasets.DatasetDict | datasets.IterableDatasetDict, str]:
    """The train/database/query splits and a name for the model card."""
    if args.dataset_name is None:
        from dataset_scripts.demo_city import load_demo_city

        size = {} if args.demo_image_size is None else {"image_size": args.demo_image_size}
        splits = load_demo_city(seed=args.demo_seed, max_addresses=args.demo_max_addresses, **size)
        name = DEMO_NAME
    else:
        path = Path(args.dataset_name)
        if (path / "dataset_dict.json").exists():
            splits = datasets.load_from_disk(str(path))
        else:
            splits = datasets.load_dataset(args.dataset_name, args.dataset_config_name, streaming=args.streaming)
        name = args.dataset_name
    missing = {"train", "database", "query"} - set(splits)
    if missing:
        raise ValueError(f"dataset {name!r} lacks split(s) {sorted(missing)}; it has {sorted(splits)}")
    if args.max_train_samples is not None:
        splits["train"] = _take(splits["train"], args.max_train_samples)
    if args.max_eval_samples is not None:
        splits["query"] = _take(splits["query"], args.max_eval_samples)
    return splits, name


def _take(split, n: int):
    return split.take(n) if isinstance(split, datasets.IterableDataset) else split.select(range(min(n, len(split))))


def text_corpus(rows, template: str, caption_includes_address: bool = True):
    """Every text the text encoder will see in training: address prompts and caption(+address) texts."""
    for row in rows:
        yield template.format(address=row["address"])
        yield caption_text(row.get("caption") or "", row["address"], caption_includes_address)


def _scratch_config(args: ModelArguments, processor: CLIPProcessor) -> AddressCLIPConfig:
    heads, tokenizer = args.attention_heads, processor.tokenizer
    config = AddressCLIPConfig(
        text_config=dict(
            # The tokenizer's own vocabulary (~2k), not CLIPTextConfig's 49,408: the unused rows were 60% of the
            # demo model's weights, and their dense gradient (zero-fill, accumulate, AdamW) ~25% of a CPU step.
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=args.text_hidden_size,
            intermediate_size=4 * args.text_hidden_size,
            num_hidden_layers=args.text_layers,
            num_attention_heads=heads,
            max_position_embeddings=args.max_text_length,
        ),
        vision_config=dict(
            hidden_size=args.vision_hidden_size,
            intermediate_size=4 * args.vision_hidden_size,
            num_hidden_layers=args.vision_layers,
            num_attention_heads=heads,
            image_size=args.image_size,
            patch_size=args.patch_size,
        ),
        projection_dim=args.projection_dim,
        **_recipe_overrides(args),
    )
    sync_text_config_with_tokenizer(config, processor.tokenizer)
    return config


def _recipe_overrides(args: ModelArguments) -> dict:
    return dict(
        address_loss_weight=args.address_loss_weight,
        caption_loss_weight=args.caption_loss_weight,
        geography_loss_weight=args.geography_loss_weight,
        geography_target=args.geography_target,
        address_template=args.address_template,
        caption_includes_address=args.caption_includes_address,
        prompt_learning=args.prompt_learning,
        prompt_context_length=args.prompt_context_length,
        prompt_depth=args.prompt_depth,
        prompt_init=args.prompt_init,
    )


def _prompt_shape(config: AddressCLIPConfig) -> tuple:
    """What a checkpoint's prompt weights are: the method, M and J (their names and shapes follow from these)."""
    return config.prompt_learning, config.prompt_context_tokens, config.prompt_layers


def build_model(args: ModelArguments, train_rows) -> tuple[AddressCLIPModel, CLIPProcessor]:
    """A pretrained CLIP (or AddressCLIP) checkpoint, or a small CLIP from scratch with an offline tokenizer.

    With ``prompt_learning``, CLIP is frozen and the prompts are initialized from the loaded CLIP's token
    embeddings (``model.initialize_prompts``) unless the checkpoint already holds prompts of this method, M and J.
    """
    if args.model_name_or_path is None:
        corpus = list(text_corpus(train_rows, args.address_template, args.caption_includes_address))
        processor = build_clip_processor(
            corpus, image_size=args.image_size, vocab_size=args.vocab_size, model_max_length=args.max_text_length
        )
        model = AddressCLIPModel(_scratch_config(args, processor))
        missing = {"prompt_learner.ctx"}
        if args.prompt_learning:
            logger.warning(
                f"prompt learning ({args.prompt_learning}) on a CLIP trained from scratch: the prompts adapt a frozen "
                "random CLIP; the paper's baselines start from a pretrained one (--model_name_or_path)"
            )
    else:
        processor = AutoProcessor.from_pretrained(args.model_name_or_path)
        config = AddressCLIPConfig.from_pretrained(args.model_name_or_path) if _is_addressclip(args) else None
        if config is not None:
            saved = _prompt_shape(config)
            for key, value in _recipe_overrides(args).items():
                setattr(config, key, value)
            config.validate()
            stale = saved != _prompt_shape(config)  # the saved prompts are another method's, M's or J's
            model, info = AutoModel.from_pretrained(
                args.model_name_or_path, config=config, ignore_mismatched_sizes=stale, output_loading_info=True
            )
            missing = set(info["missing_keys"])
            if stale and args.prompt_learning:  # start from fresh prompts, as from a plain CLIP
                model.reset_prompts()
                missing.add("prompt_learner.ctx")
        else:
            model, info = AddressCLIPModel.from_clip_pretrained(
                args.model_name_or_path, output_loading_info=True, **_recipe_overrides(args)
            )
            missing = set(info["missing_keys"])
    if args.prompt_learning and "prompt_learner.ctx" in missing:
        model.initialize_prompts(processor.tokenizer)
    freeze(model, vision=args.freeze_vision_model, text=args.freeze_text_model)
    return model, processor


def _is_addressclip(args: ModelArguments) -> bool:
    path = Path(args.model_name_or_path) / "config.json"
    return path.exists() and json.loads(path.read_text()).get("model_type") == "addressclip"


def freeze(model: AddressCLIPModel, vision: bool = False, text: bool = False) -> None:
    """Freeze an encoder with its projection (paper Tab. 4); the logit scale stays trainable.

    A prompt-learning model is left as it is: all of CLIP is frozen already, only its prompts train.
    """
    if getattr(model, "prompt_learner", None) is not None:
        if vision or text:
            logger.warning("--freeze_*_model is ignored with prompt learning: all of CLIP is frozen already")
        return
    for flag, modules in (
        (vision, (model.vision_model, model.visual_projection)),
        (text, (model.text_model, model.text_projection)),
    ):
        for module in modules:
            module.requires_grad_(not flag)


def run_summary(metrics: dict, output_dir: str | os.PathLike, example: dict | None) -> str:
    """The table printed at the end of a run."""
    lines = ["", "=" * 64, "AddressCLIP run summary", "=" * 64]
    for key in ("eval_ssa@1", "eval_ssa@5", "eval_sa@1", "eval_sa@5"):
        if key in metrics:
            lines.append(f"  {key[5:].upper():<8} {100 * metrics[key]:6.2f}%   (query split)")
    if distances := distance_summary(metrics):
        lines.append(distances)
    lines.append(f"  model directory: {output_dir}")
    if example:
        lines.append(f"  example query : {example['reference']}")
        for rank, (address, score) in enumerate(example["predictions"], 1):
            lines.append(f"    {rank}. {address}  (cosine {score:.3f})")
    lines.append("=" * 64)
    return "\n".join(lines)


def recipe_of(model_args: ModelArguments, training_args) -> dict:
    """The settings a model card reports."""
    keys = (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "weight_decay",
        "lr_scheduler_type",
        "warmup_steps",
        "adam_beta1",
        "adam_beta2",
        "seed",
    )
    recipe = {"method": METHOD_NAMES[model_args.prompt_learning]}
    recipe.update({k: v for k, v in asdict(model_args).items() if v is not None})
    recipe.update({k: getattr(training_args, k) for k in keys})
    recipe["world_size"] = training_args.world_size
    recipe["global_batch_size"] = training_args.per_device_train_batch_size * training_args.world_size
    recipe["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return recipe


__all__ = [
    "DataArguments",
    "ModelArguments",
    "DatasetTerms",
    "build_model",
    "dataset_terms",
    "freeze",
    "load_splits",
    "recipe_of",
    "run_summary",
    "text_corpus",
]
