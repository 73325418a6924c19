"""Train AddressCLIP (ECCV 2024) with the Hugging Face Trainer; ``accelerate launch train.py`` for several processes.

    python train.py                                   # the demo city, a small CLIP from scratch, on CPU
    python train.py configs/pitts_ial.json            # the paper's recipe (ViT-B/16) on Pitts-IAL
    accelerate launch --multi_gpu --num_processes 2 train.py configs/demo.json --max_steps 20

Arguments: ``ModelArguments`` and ``DataArguments`` (modeling_addressclip/run.py) and transformers'
``TrainingArguments``; a JSON file given first supplies defaults that later flags override.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

from modeling_addressclip.checkpoints import last_complete_checkpoint
from modeling_addressclip.data import AddressCLIPCollator
from modeling_addressclip.reporting import plot_training_curves, write_model_card
from modeling_addressclip.run import DataArguments, ModelArguments, build_model, load_splits, recipe_of, run_summary
from modeling_addressclip.training import AddressCLIPTrainer, address_column, unique_addresses

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "demo.json"
FORCED = {"label_names": ["utm"], "remove_unused_columns": False}


def parse_args(argv: list[str] | None = None):
    """(model, data, training) arguments from an optional leading JSON file plus command-line flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, str(DEFAULT_CONFIG))
    defaults = json.loads(Path(argv[0]).read_text()) if argv[0].endswith(".json") else {}
    rest = argv[1:] if argv[0].endswith(".json") else argv
    defaults.setdefault("use_cpu", not torch.cuda.is_available())  # else accelerate forms no gloo group on CPU
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**{**defaults, **FORCED})
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=rest)
    for key, value in FORCED.items():
        setattr(training_args, key, value)
    return model_args, data_args, training_args


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    with training_args.main_process_first(desc="dataset"):
        splits, dataset_name = load_splits(data_args)
    bank = unique_addresses(address_column(splits["train"]), address_column(splits["database"]))
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
        unique_address_batches=data_args.unique_address_batches,
    )
    if not data_args.zero_shot_eval:
        # Not get_last_checkpoint: a run killed while saving leaves a checkpoint-N that cannot be resumed from.
        last = last_complete_checkpoint(training_args.output_dir, training_args.save_only_model)
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last)
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    model.set_address_bank(bank, processor)  # the bank of the final weights, saved with them
    trainer.save_model(training_args.output_dir)
    return finish(trainer, metrics, dataset_name, model_args, data_args, splits["query"])


def finish(trainer, metrics, dataset_name, model_args, data_args, query) -> dict:
    """Model card, training curves, optional push, and the printed summary (main process only)."""
    args = trainer.args
    if not trainer.is_world_process_zero():
        return metrics
    demo = data_args.dataset_name is None
    from dataset_scripts.osm import OSM_ATTRIBUTION

    plot_training_curves(trainer.state.log_history, Path(args.output_dir) / "training_curves.png")
    write_model_card(
        args.output_dir,
        metrics,
        dataset_name,
        recipe_of(model_args, args),
        bank_size=len(trainer.bank_addresses),
        model_id=args.hub_model_id or Path(args.output_dir).name,
        attribution=OSM_ATTRIBUTION if demo else None,
    )
    example = example_localization(trainer, query)
    print(run_summary(metrics, args.output_dir, example))
    if args.push_to_hub:
        push(trainer)
    return metrics


def example_localization(trainer, query) -> dict:
    """Top-3 addresses for the first query image, for the summary."""
    row = next(iter(query))
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    pixel_values = trainer.processing_class(images=[row["image"].convert("RGB")], return_tensors="pt")["pixel_values"]
    scores, indices = model.localize(pixel_values.to(model.device), top_k=3)
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
