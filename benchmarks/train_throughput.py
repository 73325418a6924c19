"""Training-step throughput: AddressCLIP vs plain ``CLIPModel(return_loss=True)``, FLOPs and share of matmul peak.

    python -m benchmarks.train_throughput                         # configs/demo.json's model, batch 32, CPU
    python -m benchmarks.train_throughput --compile               # also torch.compile'd steps (+ compile time)
    python -m benchmarks.train_throughput --profile 3             # + torch.profiler top ops of 3 steps each
    python -m benchmarks.train_throughput --config vit-b16 --device cuda --batch-size 64   # paper model, GPU
    python -m benchmarks.train_throughput --tiny                  # CI: tiny model, seconds

One process builds (``fixtures.train_step.build_setup``) both models with the same config and weights
and one batch of synthetic IAL rows through ``AddressCLIPCollator`` (captions and UTM, α/β/γ =
1/0.2/0.8). A step is what the Trainer does: forward with the loss, backward, gradient clipping
(``max_grad_norm``), the optimizer that ``train.py``'s default config selects
(``Trainer.get_optimizer_cls_and_kwargs``), ``zero_grad``. The two steps are warmed up and timed
interleaved (round-robin, best round kept), so machine noise hits both alike. FLOPs per step (forward
+ backward) come from ``FlopCounterMode`` with the math SDPA backend (the fused CPU attention kernels
are not counted by it); the optimizer's element-wise work is not counted. "% of peak" divides
achieved FLOP/s by a large square fp32 ``torch.mm`` measured here.

Goals (demo config, CPU): AddressCLIP's FLOP/s >= 0.95x plain CLIP's (the extra losses, caption
encode and gather cost nothing beyond their FLOPs) and >= 55% of the matmul peak.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.inference import measure_ms
from benchmarks.report import publish
from fixtures.train_step import EQ1_ONLY, Setup, build_setup, model_key, step_flops

PER_FLOP_GOAL, PEAK_GOAL = 0.95, 0.55


def train_step(setup: Setup, kind: str, batch: dict, model: torch.nn.Module | None = None) -> None:
    """What the Trainer does per batch: loss, backward, clip to ``max_grad_norm``, optimizer step, zero_grad."""
    key = model_key(kind)
    with torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
        loss = (setup.models[key] if model is None else model)(**batch).loss
    loss.backward()
    if setup.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(setup.models[key].parameters(), setup.max_grad_norm)
    setup.optimizers[key].step()
    setup.optimizers[key].zero_grad(set_to_none=True)


def step_fn(setup: Setup, kind: str, model: torch.nn.Module | None = None) -> Callable[[], None]:
    """One training step of kind ``kind`` on its batch (``model``: e.g. the compiled model instead)."""
    return lambda: train_step(setup, kind, setup.batches[kind], model)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steps: dict[str, Callable[[], None]], device: torch.device, warmup: int, rounds: int, per_round: int
) -> dict[str, float]:
    """Best-of-``rounds`` seconds per call of each function, the functions taking turns round by round."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for key, fn in steps.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            synchronize(device)
            best[key] = min(best[key], (time.perf_counter() - start) / per_round)
    return best


def matmul_peak_gflops(device: torch.device, size: int, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` matrix product."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))

    def product() -> None:
        torch.mm(a, b)
        synchronize(device)

    return 2 * size**3 / (measure_ms(product, repeats) / 1000) / 1e9


def compile_steps(setup: Setup) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """torch.compile'd step functions of both models and each one's compile time (its first call)."""
    steps, seconds = {}, {}
    for key, model in setup.models.items():
        steps[f"{key} compiled"] = step_fn(setup, key, torch.compile(model))
        start = time.perf_counter()
        steps[f"{key} compiled"]()
        synchronize(setup.device)
        seconds[key] = time.perf_counter() - start
    return steps, seconds


def profile_table(setup: Setup, key: str, steps: int, rows: int = 15) -> str:
    """torch.profiler's top ops by self time over ``steps`` steps (after one warm-up step)."""
    step = step_fn(setup, key)
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if setup.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(setup.device)
    sort = "self_device_time_total" if setup.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows)


def measure(args: argparse.Namespace) -> dict:
    """Peak, FLOPs and interleaved step times of both models (and of their compiled versions with --compile)."""
    device = torch.device(args.device)
    tuning = not args.default_malloc
    setup = build_setup(args.config, args.batch_size, args.device, seed=args.seed, malloc_tuning=tuning)
    setup.bf16 = args.bf16
    flops = {kind: step_flops(setup, kind) for kind in setup.batches}
    steps = {kind: step_fn(setup, kind) for kind in setup.batches}
    compile_s = {}
    if args.compile:
        compiled, compile_s = compile_steps(setup)
        steps.update(compiled)
        flops.update({f"{key} compiled": flops[key] for key in setup.models})
    seconds = time_interleaved(steps, device, args.warmup, args.rounds, args.steps)
    peak = matmul_peak_gflops(device, args.peak_size, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    rows = {}
    for key, step_s in seconds.items():
        gflops = flops[key] / step_s / 1e9
        rows[key] = {
            "samples_per_s": args.batch_size / step_s,
            "step_ms": 1000 * step_s,
            "gflop_per_step": flops[key] / 1e9,
            "gflops": gflops,
            "peak_fraction": gflops / peak,
        }
    ratio = {
        f"{kind}{suffix}": rows[f"{kind}{suffix}"]["gflops"] / rows[f"CLIP{suffix}"]["gflops"]
        for kind, suffix in (("AddressCLIP", ""), (EQ1_ONLY, ""), ("AddressCLIP", " compiled"))
        if f"CLIP{suffix}" in rows
    }
    result = {
        "config": args.config,
        "tiny": args.tiny,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "optimizer": type(setup.optimizers["AddressCLIP"]).__name__ + _optimizer_mode(setup.optimizers["AddressCLIP"]),
        "attention": setup.models["AddressCLIP"].config._attn_implementation,
        "parameters": sum(p.numel() for p in setup.models["AddressCLIP"].parameters()),
        "peak_gflops": peak,
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "malloc_tuning": not args.default_malloc and device.type == "cpu",
        "rows": rows,
        "per_flop_ratio": ratio,
        "compile_s": compile_s,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    if args.profile:
        result["profiles"] = {key: profile_table(setup, key, args.profile) for key in setup.models}
    return result


def _optimizer_mode(optimizer: torch.optim.Optimizer) -> str:
    defaults = optimizer.defaults
    return " (fused)" if defaults.get("fused") else " (foreach)" if defaults.get("foreach") is not False else ""


def format_report(result: dict) -> str:
    lines = [
        f"Training step, {result['config']} config, batch {result['batch_size']}, {result['device']}, "
        f"{result['threads']} thread(s), {result['optimizer']}, attention {result['attention']}, "
        f"{result['parameters'] / 1e6:.2f} M parameters; best of {result['rounds']} interleaved rounds "
        f"x {result['steps_per_round']} steps",
        f"{result['precision']}; glibc malloc keeps freed memory: {result['malloc_tuning']}; "
        f"{'bf16' if result['precision'] != 'fp32' else 'fp32'} matmul peak: {result['peak_gflops']:.1f} GFLOP/s",
        "",
        "| model | samples/s | ms/step | GFLOP/step | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in result["rows"].items():
        lines.append(
            f"| {key} | {row['samples_per_s']:.1f} | {row['step_ms']:.1f} | {row['gflop_per_step']:.2f} | "
            f"{row['gflops']:.1f} | {100 * row['peak_fraction']:.1f}% |"
        )
    for key, seconds in result["compile_s"].items():
        lines.append(f"compile time {key}: {seconds:.1f} s (first call)")
    for kind, ratio in result["per_flop_ratio"].items():
        met = "MET" if ratio >= PER_FLOP_GOAL else "NOT MET"
        lines.append(f"per-FLOP ratio {kind} / CLIP: {ratio:.3f} (goal >= {PER_FLOP_GOAL}) -> {met}")
    peak = result["rows"]["AddressCLIP"]["peak_fraction"]
    lines.append(
        f"AddressCLIP share of peak: {100 * peak:.1f}% (goal >= {100 * PEAK_GOAL:.0f}%) -> "
        f"{'MET' if peak >= PEAK_GOAL else 'NOT MET'}"
    )
    if result["tiny"]:
        lines.append("(tiny mode: a tiny model, the goals are indicative only)")
    for key, table in result.get("profiles", {}).items():
        lines += ["", f"profile of {key}:", table]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("demo", "vit-b16", "tiny"), default="demo", help="model to time")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (best kept)")
    parser.add_argument("--steps", type=int, default=3, help="steps per model per round")
    parser.add_argument("--peak-size", type=int, default=None, help="matmul size for the peak (2048 CPU, 8192 GPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (as configs/pitts_ial.json on GPU)")
    parser.add_argument(
        "--default-malloc", action="store_true", help="CPU: leave glibc malloc as is (train.py: keep_freed_memory)"
    )
    parser.add_argument("--profile", type=int, default=0, help="print torch.profiler top ops over N steps per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="CI: tiny config, batch 8, 1 warm-up, 2 rounds x 1 step")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.config, args.batch_size, args.warmup, args.rounds, args.steps = "tiny", 8, 1, 2, 1
        args.peak_size = args.peak_size or 256
    args.peak_size = args.peak_size or (8192 if args.device.startswith("cuda") else 2048)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = measure(args)
    return publish(result, format_report(result), args.json)


if __name__ == "__main__":
    main()
