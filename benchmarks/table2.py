"""The paper's Tab. 2 on the demo city: zero-shot CLIP, CLIP + address, CoOp, CoCoOp, MaPLe and AddressCLIP.

    python -m benchmarks.table2                          # 3 seeds, 3 epochs per method (~40 min on 2 cores)
    python -m benchmarks.table2 --seeds 0 --epochs 13    # the demo's full schedule, one seed
    python -m benchmarks.table2 --tiny                   # CI: tiny recipe, a few steps per method, seconds

Prompt learning needs a *pretrained* CLIP and none can be downloaded here, so every row starts from the same
stand-in: the demo recipe's small CLIP trained once on the demo city's scene captions alone (Eq. 2 with
``caption_includes_address`` false: no address text, no geography; ``--standin-epochs``, default the demo's 13),
saved under ``--workdir`` and reused by later runs. ``--standin-with-address`` trains it on caption + address
texts instead (still no Eq. 1 and no geography): a CLIP that has seen the street names in its captions, as
web-pretrained CLIP has seen place names in alt texts. From it, with the same ``train.py``, Trainer, collator, bank
and metric (query split SSA/SA, paper §6.1):

* zero-shot CLIP: the stand-in evaluated with the address template, no training;
* CLIP + address: full fine-tuning with the image-address loss alone (Eq. 1);
* CoOp / CoCoOp / MaPLe: ``--prompt_learning``, CLIP frozen, Eq. 1 alone, AdamW at ``--prompt-lr`` (CoOp and
  CoCoOp use SGD at 0.002 in their papers, MaPLe 0.0035); CoCoOp at batch ``--cocoop-batch`` (its paper trains at
  batch 1; each image has its own prompt, so a step encodes batch x batch address texts);
* AddressCLIP: full fine-tuning with Eq. 6 (alpha, beta, gamma = 1, 0.2, 0.8).

Every method trains ``--epochs`` epochs per seed; the table gives mean ± std over the seeds, the trainable
parameters and the wall time per run, and says which of the paper's orderings hold here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from addressclip_train import train
from benchmarks.report import publish

METRICS = ("eval_ssa@1", "eval_ssa@5", "eval_sa@1", "eval_sa@5")
EQ1_ONLY = ["--address_loss_weight", "1", "--caption_loss_weight", "0", "--geography_loss_weight", "0"]
# Paper Tab. 2, SSA-1 / SA-1 on Pitts-IAL, for the printed comparison.
PAPER_PITTS = {
    "zero-shot CLIP": (0.85, 1.28),
    "CLIP + address": (77.66, 80.86),
    "CoOp": (67.91, 71.19),
    "CoCoOp": (69.04, 73.28),
    "MaPLe": (72.98, 76.04),
    "AddressCLIP": (80.39, 82.62),
}


def method_flags(args: argparse.Namespace) -> dict[str, list[str] | None]:
    """Each row's train.py flags on top of the stand-in (None: evaluate without training)."""
    prompt = ["--learning_rate", str(args.prompt_lr), "--weight_decay", "0", *EQ1_ONLY]
    return {
        "zero-shot CLIP": None,
        "CLIP + address": EQ1_ONLY,
        "CoOp": ["--prompt_learning", "coop", *prompt],
        "CoCoOp": ["--prompt_learning", "cocoop", "--per_device_train_batch_size", str(args.cocoop_batch), *prompt],
        "MaPLe": ["--prompt_learning", "maple", *prompt],
        "AddressCLIP": [],
    }


def common_flags(args: argparse.Namespace, output: Path, seed: int) -> list[str]:
    schedule = ["--max_steps", str(args.tiny_steps)] if args.tiny else ["--num_train_epochs", str(args.epochs)]
    return [
        "--output_dir", str(output), "--seed", str(seed), *schedule, "--eval_strategy", "no",
        "--save_strategy", "no", "--abstain_coverage", "0", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip


def standin(args: argparse.Namespace) -> Path:
    """The stand-in CLIP every row starts from: trained once, then reused from ``--workdir``."""
    directory = args.workdir / (
        "standin-captions-with-address" if args.standin_with_address else "standin-captions-only"
    )
    if (directory / "model.safetensors").exists():
        print(f"reusing the stand-in CLIP in {directory}")
        return directory
    schedule = ["--max_steps", str(args.tiny_steps)] if args.tiny else ["--num_train_epochs", str(args.standin_epochs)]
    train.main([
        args.recipe, "--output_dir", str(directory), "--seed", "0", *schedule, "--eval_strategy", "no",
        "--save_strategy", "no", "--abstain_coverage", "0", "--disable_tqdm", "true",
        "--address_loss_weight", "0", "--caption_loss_weight", "1", "--geography_loss_weight", "0",
        "--caption_includes_address", str(args.standin_with_address).lower(),
    ])  # fmt: skip
    return directory


def run(args: argparse.Namespace, base: Path, name: str, flags: list[str] | None, seed: int) -> dict:
    """One row's run for one seed: its metrics, trainable parameters and wall seconds."""
    output = (
        args.workdir
        / f"{base.name.removeprefix('standin-')}-{name.replace(' ', '').replace('+', '-').lower()}-seed{seed}"
    )
    argv = [args.recipe, "--model_name_or_path", str(base), *common_flags(args, output, seed)]
    argv += ["--zero_shot_eval", "true"] if flags is None else flags
    start = time.perf_counter()
    metrics = train.main(argv)
    seconds = time.perf_counter() - start
    from modeling_addressclip import AddressCLIPModel

    model = AddressCLIPModel.from_pretrained(output)
    trainable = 0 if flags is None else sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**{m: 100 * metrics[m] for m in METRICS}, "trainable": trainable, "seconds": seconds}


def _cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def orderings(means: dict[str, float]) -> list[str]:
    """The paper's order of SSA@1 (Tab. 2), each adjacent pair checked on the demo's means."""
    order = ["zero-shot CLIP", "CoOp", "CoCoOp", "MaPLe", "CLIP + address", "AddressCLIP"]
    return [
        f"{low} < {high}: {'holds' if means[low] < means[high] else 'does NOT hold'} "
        f"({means[low]:.2f} vs {means[high]:.2f})"
        for low, high in zip(order, order[1:])
    ]


def format_report(result: dict) -> str:
    lines = [
        f"Tab. 2 on the demo city: query split, {len(result['seeds'])} seed(s) {result['seeds']}, "
        f"{result['schedule']} per method, from the stand-in {result['standin']}",
        "",
        "| method | SSA@1 | SSA@5 | SA@1 | SA@5 | trainable params | s per run | paper Pitts-IAL SSA-1 / SA-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["rows"].items():
        cells = " | ".join(_cell([r[m] for r in runs]) for m in METRICS)
        paper = PAPER_PITTS[name]
        seconds = statistics.mean(r["seconds"] for r in runs)
        lines.append(
            f"| {name} | {cells} | {runs[0]['trainable']:,} | {seconds:.0f} | {paper[0]:.2f} / {paper[1]:.2f} |"
        )
    lines += ["", "the paper's SSA@1 order on the demo means:", *(f"- {line}" for line in result["orderings"])]
    lines.append(f"\nwall time: stand-in {result['standin_s']:.0f} s, all rows {result['rows_s']:.0f} s")
    if result["tiny"]:
        lines.append("(tiny mode: a tiny model and a few steps, the numbers mean nothing)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3, help="training epochs of every method")
    parser.add_argument("--standin-epochs", type=float, default=13, help="epochs of the captions-only stand-in")
    parser.add_argument(
        "--standin-with-address",
        action="store_true",
        help="train the stand-in on caption + address texts (a CLIP that has seen the street names) instead",
    )
    parser.add_argument("--prompt-lr", type=float, default=0.002, help="AdamW learning rate of the prompt methods")
    parser.add_argument("--cocoop-batch", type=int, default=16, help="CoCoOp's per-device batch size")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/table2"), help="stand-in and run directories")
    parser.add_argument("--tiny", action="store_true", help="CI: configs/tiny.json, --tiny-steps steps, one seed")
    parser.add_argument("--tiny-steps", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    args.recipe = "tiny" if args.tiny else "demo"
    if args.tiny:
        args.seeds, args.cocoop_batch = args.seeds[:1], 4
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    base = standin(args)
    standin_s = time.perf_counter() - start
    rows: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name, flags in method_flags(args).items():
            rows.setdefault(name, []).append(run(args, base, name, flags, seed))
    means = {name: statistics.mean(r["eval_ssa@1"] for r in runs) for name, runs in rows.items()}
    result = {
        "tiny": args.tiny,
        "seeds": args.seeds,
        "schedule": f"{args.tiny_steps} steps" if args.tiny else f"{args.epochs:g} epochs",
        "standin": str(base),
        "standin_s": standin_s,
        "rows_s": time.perf_counter() - start - standin_s,
        "rows": rows,
        "orderings": orderings(means),
    }
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
