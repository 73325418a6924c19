"""Train AddressCLIP (ECCV 2024) with the Hugging Face Trainer; ``accelerate launch`` for several processes.

    addressclip train                                  # the demo city, a small CLIP from scratch, on CPU
    addressclip train --config pitts_ial               # a shipped recipe: the paper's ViT-B/16 on Pitts-IAL
    addressclip train my_recipe.json --max_steps 20    # a JSON recipe of your own, flags override it
    accelerate launch --multi_gpu --num_processes 2 train.py demo --max_steps 20

``python train.py ...`` in a checkout is the same command. Arguments: ``ModelArguments`` and
``DataArguments`` (``addressclip_train/run.py``) and transformers' ``TrainingArguments``; a recipe (a JSON
file, or the name of a shipped one: demo, tiny, pitts_ial, sf_ial_base, sf_ial_large) given first or
with ``--config`` supplies defaults that later flags override.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

from addressclip_train.abstention import calibrate
from addressclip_train.checkpoints import last_complete_checkpoint
from addressclip_train.places import address_places, has_places
from addressclip_train.reporting import plot_training_curves, write_model_card
from addressclip_train.run import (
    DataArguments,
    ModelArguments,
    build_model,
    dataset_terms,
    load_splits,
    recipe_of,
    run_summary,
)
from addressclip_train.trainer import AddressCLIPTrainer, address_column, unique_addresses
from modeling_addressclip.data import AddressCLIPCollator, undecoded_images
from modeling_addressclip.image_utils import image_pixels

CONFIG_DIR = Path(__file__).with_name("configs")
DEFAULT_RECIPE = "demo"
FORCED = {"label_names": ["utm"], "remove_unused_columns": False}


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``addressclip_train/configs/*.json``)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def resolve_recipe(name: str) -> Path:
    """A recipe file: ``name`` itself if it is a file, else the shipped recipe of that name (``pitts_ial``,
    ``pitts_ial.json`` or ``configs/pitts_ial.json``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.name.removesuffix('.json')}.json"
    if shipped.is_file():
        return shipped
    raise SystemExit(
        f"recipe {name!r}: no such file, and no shipped recipe has that name ({', '.join(shipped_recipes())})"
    )


def _split_recipe(argv: list[str]) -> tuple[Path, list[str]]:
    """(recipe file, the remaining flags) from ``[RECIPE] [--config RECIPE] flags...``."""
    rest, recipe = [], None
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--config":
            recipe = next(iterator, None)
            if recipe is None:
                raise SystemExit("--config needs a recipe name or a JSON file")
        elif arg.startswith("--config="):
            recipe = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if recipe is None and rest and not rest[0].startswith("-"):
        recipe = rest.pop(0)
    return resolve_recipe(recipe or DEFAULT_RECIPE), rest


def parse_args(argv: list[str] | None = None):
    """(model, data, training) arguments from a recipe (a JSON file or a shipped name) plus command-line flags."""
    recipe, rest = _split_recipe(list(sys.argv[1:] if argv is None else argv))
    defaults = json.loads(recipe.read_text())
    defaults.setdefault("use_cpu", not torch.cuda.is_available())  # else accelerate forms no gloo group on CPU
    if defaults.get("bf16") and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        defaults["bf16"] = False  # a recipe's bf16 is for GPUs that support it; an explicit --bf16 flag still wins
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**{**defaults, **FORCED})
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=rest)
    for key, value in FORCED.items():
        setattr(training_args, key, value)
    return model_args, data_args, training_args


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    with training_args.main_process_first(desc="dataset"):
        splits, _ = load_splits(data_args)
    terms = dataset_terms(data_args)  # license and attribution for the card, read before any training
    bank = unique_addresses(address_column(splits["train"]), address_column(splits["database"]))
    places = address_places(bank, splits["train"], splits["database"])  # None for every address without coordinates
    places = places if has_places(places) else None
    set_seed(training_args.seed)  # before the weights are initialized: torch starts from a random seed
    model, processor = build_model(model_args, splits["train"].select_columns(["address", "caption"]))
    trainer = AddressCLIPTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["query"],
        data_collator=AddressCLIPCollator.from_config(processor, model.config),
        processing_class=processor,
        bank_addresses=bank,
        bank_places=places,
        unique_address_batches=data_args.unique_address_batches,
    )
    if not data_args.zero_shot_eval:
        # Not get_last_checkpoint: a run killed while saving leaves a checkpoint-N that cannot be resumed from.
        last = last_complete_checkpoint(training_args.output_dir, training_args.save_only_model)
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last)
    metrics = trainer.evaluate()
    model.set_address_bank(bank, processor, places=places)  # the bank of the final weights, saved with them
    curve = set_abstain_threshold(model, trainer, data_args.abstain_coverage, metrics)
    trainer.save_metrics("eval", metrics)
    trainer.save_model(training_args.output_dir)
    return finish(trainer, metrics, terms, model_args, splits["query"], curve)


def set_abstain_threshold(model, trainer, coverage: float, metrics: dict) -> list:
    """Calibrate ``config.abstain_threshold`` on the final query localization (0 coverage: never abstain)."""
    if not coverage:
        model.config.abstain_threshold = model.config.abstain_coverage = None
        return []
    point, curve = calibrate(*trainer.last_localization, coverage=coverage)
    model.config.abstain_threshold, model.config.abstain_coverage = point.threshold, point.coverage
    metrics.update(eval_abstain_threshold=point.threshold, eval_abstain_coverage=point.coverage)
    metrics["eval_ssa@1_answered"] = point.ssa_at_1
    return curve


def finish(trainer, metrics, terms, model_args, query, curve=()) -> dict:
    """Model card, training curves, optional push, and the printed summary (main process only)."""
    args = trainer.args
    if not trainer.is_world_process_zero():
        return metrics
    plot_training_curves(trainer.state.log_history, Path(args.output_dir) / "training_curves.png")
    write_model_card(
        args.output_dir,
        metrics,
        terms.name,
        recipe_of(model_args, args),
        bank_size=len(trainer.bank_addresses),
        model_id=args.hub_model_id or Path(args.output_dir).name,
        repo=args.hub_model_id or str(args.output_dir),
        attribution=terms.attribution,
        license=terms.license,
        dataset_hub_id=terms.hub_id,
        abstention=curve,
        threshold=trainer.model.config.abstain_threshold,
        coverage=trainer.model.config.abstain_coverage,
        repo_note=_repo_note(args),
    )
    example = example_localization(trainer, query)
    print(run_summary(metrics, args.output_dir, example))
    if args.push_to_hub:
        push(trainer)
    return metrics


def _repo_note(args) -> str:
    if args.hub_model_id or args.push_to_hub:
        return "the Hub repository this run pushes to"
    return f"this model's directory ({args.output_dir}); replace it with the Hub id once pushed"


def example_localization(trainer, query) -> dict:
    """Top-3 addresses for the first query image, for the summary."""
    row = next(iter(undecoded_images(query)))
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    pixel_values = image_pixels(trainer.processing_class, [row["image"]], "query row")
    scores, indices = model.localize(pixel_values, top_k=3)
    predictions = [(model.address_bank[i], s) for i, s in zip(indices[0].tolist(), scores[0].tolist())]
    return {"reference": row["address"], "predictions": predictions}


def push(trainer) -> None:
    """Upload the finished directory; offline this fails after the local directory is complete."""
    from huggingface_hub import upload_folder

    repo = trainer.args.hub_model_id or Path(trainer.args.output_dir).name
    try:
        upload_folder(repo_id=repo, folder_path=trainer.args.output_dir, ignore_patterns=["checkpoint-*"])
    except Exception as err:  # noqa: BLE001 - any Hub/network failure gets the same explanation
        raise SystemExit(
            f"push to the Hub ({repo}) failed: {err}. The model directory "
            f"{trainer.args.output_dir} is complete; push it later with `huggingface-cli upload`."
        ) from err


if __name__ == "__main__":
    main()
