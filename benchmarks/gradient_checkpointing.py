"""Gradient checkpointing: train-step samples/s and peak RSS, AddressCLIP and plain ``CLIPModel(return_loss=True)``.

    python -m benchmarks.gradient_checkpointing                   # ViT-B/16 (the paper's model), batch 8, CPU
    python -m benchmarks.gradient_checkpointing --tiny            # CI: the tiny config, seconds per variant
    python -m benchmarks.gradient_checkpointing --json gc.json    # also write the result as JSON

Each of the four variants (AddressCLIP / CLIP, checkpointing off / on) runs in its own process, so its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) is its own. A process builds the models of a named config with
:func:`fixtures.train_step.build_setup` (the same seeded weights and synthetic batch in every process: captions
and UTM, so AddressCLIP computes all three losses), keeps the one it measures, turns on activation checkpointing
(``activation_checkpointing_enable()``, what ``--gradient_checkpointing`` does), records the first step's loss and
gradient norm (checkpointing must change neither), then runs two Trainer steps
(:func:`benchmarks.train_throughput.train_step`: forward, backward, clipping, the recipe's AdamW; the second is the
first to hold the optimizer's two moments, the activations and the gradients at once) and reads its peak. "RSS
after build" is the peak before the first step.

Speed is timed after that peak is read, in the "off" process of each model: checkpointing off and on take turns
round by round on the same model (best round kept), so the load of a shared machine hits both alike. Besides wall
time, each step's CPU time (``time.process_time``, all threads) is kept: on a machine shared with other work it
moves far less than the wall time, so the cost of the recomputation is read from it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import publish
from fixtures import ROOT

MODELS = ("AddressCLIP", "CLIP")
MODES = ("off", "on")
LOSS_RTOL, GRAD_NORM_RTOL = 1e-5, 1e-4


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_step(model: torch.nn.Module, batch: dict) -> tuple[float, float]:
    """Loss and global gradient norm of one forward + backward (gradients cleared afterwards)."""
    loss = model(**batch).loss
    loss.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    model.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


def set_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Activation checkpointing on or off (transformers' non-reentrant default, as ``--gradient_checkpointing``)."""
    if model.is_activation_checkpointing != on:
        model.activation_checkpointing_enable() if on else model.activation_checkpointing_disable()


def run_variant(args: argparse.Namespace, model_name: str, checkpointing: bool, timed: bool = False) -> dict:
    """Peak RSS, first loss and gradient norm of one variant, in this process; ``timed``: then the seconds per
    step with checkpointing off and on, taking turns on this model (after the peak is read)."""
    from benchmarks.train_throughput import step_fn, time_interleaved, train_step
    from fixtures.train_step import build_setup

    setup = build_setup(args.config, args.batch_size, args.device, plain=model_name == "CLIP", seed=args.seed)
    for other in set(setup.models) - {model_name}:  # the AddressCLIP that the plain twin was copied from
        del setup.models[other], setup.optimizers[other]
    gc.collect()
    model, batch = setup.models[model_name], setup.batches[model_name]
    set_checkpointing(model, checkpointing)
    setup_rss = peak_rss_mb()
    loss, grad_norm = first_step(model, batch)
    for _ in range(2):
        train_step(setup, model_name, batch)
    result = {
        "model": model_name,
        "checkpointing": checkpointing,
        "loss": loss,
        "grad_norm": grad_norm,
        "setup_rss_mb": setup_rss,
        "peak_rss_mb": peak_rss_mb(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    if timed:
        step, cpu = step_fn(setup, model_name), {mode: [] for mode in MODES}

        def with_checkpointing(mode: str):
            def run() -> None:
                set_checkpointing(model, mode == "on")
                start = time.process_time()
                step()
                cpu[mode].append(time.process_time() - start)

            return run

        steps = {mode: with_checkpointing(mode) for mode in MODES}
        result["seconds"] = time_interleaved(steps, setup.device, args.warmup, args.rounds, args.steps)
        result["cpu_seconds"] = {mode: min(times) for mode, times in cpu.items()}
    return result


def _variant_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--config", args.config, "--batch-size", str(args.batch_size), "--device", args.device]
    for flag in ("seed", "warmup", "rounds", "steps", "threads"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    return argv


def _run_process(args: argparse.Namespace, variant: str, out: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.gradient_checkpointing", *_variant_argv(args), "--variant", variant]
    proc = subprocess.run([*command, "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"variant {variant} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def measure(args: argparse.Namespace) -> dict:
    """Every variant in a fresh process; rows AddressCLIP off/on, CLIP off/on."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model_name in MODELS:
            pair = [
                _run_process(args, f"{model_name}:{mode}", Path(scratch) / f"{model_name}-{mode}.json")
                for mode in MODES
            ]
            seconds, cpu = pair[0].pop("seconds"), pair[0].pop("cpu_seconds")
            for row, mode in zip(pair, MODES):
                row.update(step_ms=1000 * seconds[mode], samples_per_s=args.batch_size / seconds[mode])
                row.update(cpu_s_per_step=cpu[mode])
            rows += pair
    same_loss, same_norm = {}, {}
    for name, (off, on) in zip(MODELS, (rows[:2], rows[2:])):
        same_loss[name] = abs(on["loss"] - off["loss"]) <= LOSS_RTOL * abs(off["loss"])
        same_norm[name] = abs(on["grad_norm"] - off["grad_norm"]) <= GRAD_NORM_RTOL * abs(off["grad_norm"])
    return {
        "config": args.config,
        "tiny": args.tiny,
        "device": args.device,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "rows": rows,
        "same_loss": same_loss,
        "same_grad_norm": same_norm,
    }


def format_report(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"Training step with and without gradient checkpointing, {result['config']} config "
        f"({rows[0]['parameters'] / 1e6:.1f} M parameters), batch {result['batch_size']}, {result['device']}, "
        f"{rows[0]['threads']} thread(s); memory: each variant in its own process; speed: off/on interleaved, "
        f"best of {result['rounds']} rounds x {result['steps_per_round']} step(s)",
        "",
        "| model | gradient checkpointing | samples/s | ms/step | CPU s/step | peak RSS MiB | RSS after build MiB "
        "| steps add MiB | first loss | grad norm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {'on' if r['checkpointing'] else 'off'} | {r['samples_per_s']:.2f} | "
            f"{r['step_ms']:.0f} | {r['cpu_s_per_step']:.2f} | {r['peak_rss_mb']:.0f} | {r['setup_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] - r['setup_rss_mb']:.0f} | {r['loss']:.6f} | {r['grad_norm']:.6f} |"
        )
    for name, (off, on) in zip(MODELS, (rows[:2], rows[2:])):
        saved = off["peak_rss_mb"] - on["peak_rss_mb"]
        lines.append(
            f"{name}: checkpointing saves {saved:.0f} MiB of peak RSS ({100 * saved / off['peak_rss_mb']:.1f}%), "
            f"costs {100 * (on['cpu_s_per_step'] / off['cpu_s_per_step'] - 1):.1f}% more CPU time per step "
            f"({100 * (1 - on['samples_per_s'] / off['samples_per_s']):.1f}% of wall samples/s); same loss: "
            f"{result['same_loss'][name]}, same gradient norm: {result['same_grad_norm'][name]}"
        )
    if result["tiny"]:
        lines.append("(tiny mode: a tiny model, the memory and speed numbers are indicative only)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("demo", "vit-b16", "tiny"), default="vit-b16", help="model to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (best kept)")
    parser.add_argument("--steps", type=int, default=1, help="steps per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="CI: tiny config, batch 8, 1 warm-up, 2 rounds x 1 step")
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # MODEL:off|on, measured in this process
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.config, args.batch_size, args.warmup, args.rounds, args.steps = "tiny", 8, 1, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.variant:
        model_name, mode = args.variant.split(":")
        result = run_variant(args, model_name, mode == "on", timed=mode == "off")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return result
    result = measure(args)
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
