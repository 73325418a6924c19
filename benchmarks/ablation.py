"""Ablation of AddressCLIP's losses on the demo city, like the paper's Tab. 3.

    python -m benchmarks.ablation                       # 4 variants x 3 seeds with configs/demo.json
    python -m benchmarks.ablation --tiny                # a seconds-long smoke run (CI)
    python -m benchmarks.ablation -- --num_train_epochs 3 --eval_strategy no --save_strategy no
                                                        # the reduced schedule of benchmarks/README.md (~35 min)

Each variant trains from the same configuration with only the loss weights (alpha, beta, gamma) changed
and prints SSA-1/SSA-5/SA-1/SA-5 on the query split as mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from addressclip_train import train

VARIANTS = {  # name: (alpha, beta, gamma) of Eq. 6
    "L_address": (1.0, 0.0, 0.0),
    "L_address + L_caption": (1.0, 0.2, 0.0),
    "L_address + L_geography": (1.0, 0.0, 0.8),
    "all three (AddressCLIP)": (1.0, 0.2, 0.8),
}
METRICS = ("eval_ssa@1", "eval_ssa@5", "eval_sa@1", "eval_sa@5")


def run_variant(weights: tuple[float, float, float], seed: int, output: Path, config: str, extra: list[str]) -> dict:
    alpha, beta, gamma = weights
    argv = [
        str(train.resolve_recipe(config)),
        "--output_dir",
        str(output),
        "--seed",
        str(seed),
        "--address_loss_weight",
        str(alpha),
        "--caption_loss_weight",
        str(beta),
        "--geography_loss_weight",
        str(gamma),
        "--disable_tqdm",
        "true",
        *extra,
    ]
    return train.main(argv)


def table(results: dict[str, list[dict]]) -> str:
    header = f"| {'losses':<26} | " + " | ".join(f"{m[5:].upper():>13}" for m in METRICS) + " |"
    lines = [header, "|" + "-" * 28 + "|" + "|".join("-" * 15 for _ in METRICS) + "|"]
    for name, runs in results.items():
        cells = []
        for metric in METRICS:
            values = [100 * run[metric] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):6.2f} ± {spread:4.2f}")
        lines.append(f"| {name:<26} | " + " | ".join(f"{c:>13}" for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--tiny", action="store_true", help="configs/tiny.json: tiny model, 6 addresses, 4 steps (a smoke test)"
    )
    parser.add_argument("--output", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("extra", nargs="*", help="further train.py flags, e.g. --num_train_epochs 4")
    args = parser.parse_args(argv)
    config = "tiny.json" if args.tiny else "demo.json"
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        base = args.output or Path(scratch)
        for name, weights in VARIANTS.items():
            for seed in args.seeds:
                out = base / f"{name.split()[0].strip('_')}-{'-'.join(map(str, weights))}-seed{seed}"
                results.setdefault(name, []).append(run_variant(weights, seed, out, config, args.extra))
    text = table(results)
    print(f"\nAblation on the demo city (query split, {len(args.seeds)} seed(s) per row)\n{text}")
    return text


if __name__ == "__main__":
    main()
