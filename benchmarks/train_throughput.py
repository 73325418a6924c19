"""Training-step throughput: AddressCLIP vs plain ``CLIPModel(return_loss=True)``, FLOPs and share of matmul peak.

    python benchmarks/train_throughput.py                         # configs/demo.json's model, batch 32, CPU
    python benchmarks/train_throughput.py --compile               # also torch.compile'd steps (+ compile time)
    python benchmarks/train_throughput.py --profile 3             # + torch.profiler top ops of 3 steps each
    python benchmarks/train_throughput.py --config vit-b16 --device cuda --batch-size 64   # paper model, GPU
    python benchmarks/train_throughput.py --tiny                  # CI: tiny model, seconds

One process builds both models with the same config and weights and one batch of synthetic IAL rows
through ``AddressCLIPCollator`` (captions and UTM, α/β/γ = 1/0.2/0.8). A step is what the Trainer
does: forward with the loss, backward, gradient clipping (``max_grad_norm``), the optimizer that
``train.py``'s default config selects (``Trainer.get_optimizer_cls_and_kwargs``), ``zero_grad``. The
two steps are warmed up and timed interleaved (round-robin, best round kept), so machine noise hits
both alike. FLOPs per step (forward + backward) come from ``FlopCounterMode`` with the math SDPA
backend (the fused CPU attention kernels are not counted by it); the optimizer's element-wise work is
not counted. "% of peak" divides achieved FLOP/s by a large square fp32 ``torch.mm`` measured here.

Goals (demo config, CPU): AddressCLIP's FLOP/s >= 0.95x plain CLIP's (the extra losses, caption
encode and gather cost nothing beyond their FLOPs) and >= 55% of the matmul peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPConfig, CLIPModel, Trainer, TrainingArguments

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inference import measure_ms, synthetic_addresses  # noqa: E402
from modeling_addressclip import AddressCLIPCollator, AddressCLIPConfig, AddressCLIPModel  # noqa: E402
from modeling_addressclip.run import ModelArguments, build_model  # noqa: E402
from modeling_addressclip.tokenizer import build_clip_processor, sync_text_config_with_tokenizer  # noqa: E402
from modeling_addressclip.training import keep_freed_memory  # noqa: E402

PER_FLOP_GOAL, PEAK_GOAL = 0.95, 0.55
# AddressCLIP with the address loss alone: CLIP's FLOPs through AddressCLIP's code (forward, loss, gather).
EQ1_ONLY = "AddressCLIP, Eq. 1 only"
CAPTIONS = (
    "A street view of a wide avenue with tram tracks and tall yellow buildings",
    "A street view of a narrow street with trees on both sides",
    "A street view of a square with a church and parked cars",
)
# The paper's model (CLIP ViT-B/16): not expressible with ModelArguments (12 vision vs 8 text heads).
VIT_B16 = {
    "text_config": dict(
        hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77
    ),
    "vision_config": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224,
        patch_size=16,
    ),
    "projection_dim": 512,
}  # fmt: skip


@dataclass
class Setup:
    """Everything a timed step needs: the models on ``device`` and their optimizers, and a batch per step kind.

    ``batches`` is keyed by step kind; a kind starting with "AddressCLIP" trains ``models["AddressCLIP"]``.
    """

    name: str
    processor: object
    collator: AddressCLIPCollator
    batch_size: int
    device: torch.device
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    batches: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    max_grad_norm: float = 1.0
    training_args: dict = field(default_factory=dict)
    bf16: bool = False


def config_json(name: str) -> dict:
    """The JSON config whose model and optimizer a named setup uses (vit-b16: the paper recipe's optimizer)."""
    file = {"demo": "demo.json", "tiny": "tiny.json", "vit-b16": "pitts_ial.json"}[name]
    return json.loads((ROOT / "configs" / file).read_text())


def synthetic_rows(count: int, image_size: int, seed: int = 0) -> list[dict]:
    """IAL rows with smooth random images (``image_size`` square), real-looking addresses, captions and UTM."""
    rng = np.random.default_rng(seed)
    addresses = synthetic_addresses(count)
    rows = []
    for i in range(count):
        low = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((image_size, image_size), Image.Resampling.BILINEAR)
        rows.append(
            {
                "image": image,
                "address": addresses[i],
                "caption": CAPTIONS[i % len(CAPTIONS)],
                "utm_east": float(385_000 + rng.uniform(0, 1500)),
                "utm_north": float(6_671_000 + rng.uniform(0, 1500)),
            }
        )
    return rows


def build_models(name: str, rows: list[dict]) -> tuple[AddressCLIPModel, object]:
    """AddressCLIP for a named config, built as ``train.py`` builds a from-scratch model (random weights)."""
    fields = config_json(name)
    if name != "vit-b16":
        known = ModelArguments.__dataclass_fields__
        args = ModelArguments(**{k: v for k, v in fields.items() if k in known and k != "model_name_or_path"})
        return build_model(args, rows)
    corpus = [a for row in rows for a in (row["address"], row["caption"])]
    processor = build_clip_processor(corpus, image_size=224, vocab_size=2048, model_max_length=77)
    config = AddressCLIPConfig(**VIT_B16)  # text vocabulary 49,408 as pretrained CLIP's (its embedding trains too)
    sync_text_config_with_tokenizer(config, processor.tokenizer)
    return AddressCLIPModel(config), processor


def plain_clip_twin(model: AddressCLIPModel) -> CLIPModel:
    """A transformers ``CLIPModel`` with the same config and weights as ``model``."""
    config = model.config
    clip_config = CLIPConfig(
        text_config=config.text_config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        projection_dim=config.projection_dim,
        logit_scale_init_value=config.logit_scale_init_value,
    )
    clip = CLIPModel(clip_config)
    clip.load_state_dict(model.state_dict(), strict=True)
    return clip


def make_optimizer(model: torch.nn.Module, training: dict) -> torch.optim.Optimizer:
    """The optimizer ``train.py``'s Trainer builds from ``training`` (optim, lr, betas, weight decay)."""
    keys = ("optim", "learning_rate", "adam_beta1", "adam_beta2", "weight_decay")
    given = {k: training[k] for k in keys if k in training}
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **given)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad]
    return cls([{"params": params, "weight_decay": args.weight_decay}], **kwargs)


def build_setup(
    name: str, batch_size: int, device: str = "cpu", plain: bool = True, seed: int = 0, malloc_tuning: bool = True
) -> Setup:
    """Models, batches and optimizers of a named config; ``plain=False`` leaves out the plain CLIP twin.

    On CPU, ``malloc_tuning`` applies what ``AddressCLIPTrainer`` does there (``keep_freed_memory``).
    """
    if malloc_tuning and torch.device(device).type == "cpu":
        keep_freed_memory()
    torch.manual_seed(seed)
    model_size = config_json(name).get("image_size", 224) if name != "vit-b16" else 224
    rows = synthetic_rows(max(batch_size, 64), model_size, seed)
    model, processor = build_models(name, rows)
    model.config.caption_loss_weight, model.config.geography_loss_weight = 0.2, 0.8
    collator = AddressCLIPCollator.from_config(processor, model.config)
    setup = Setup(name, processor, collator, batch_size, torch.device(device), training_args=config_json(name))
    batch = collator(rows[:batch_size])
    setup.models["AddressCLIP"] = model
    setup.batches["AddressCLIP"] = batch
    if plain:
        setup.models["CLIP"] = plain_clip_twin(model)
        keys = ("input_ids", "attention_mask", "pixel_values")
        setup.batches["CLIP"] = {**{k: batch[k] for k in keys}, "return_loss": True}
        setup.batches[EQ1_ONLY] = setup.batches["CLIP"]
    for key, module in setup.models.items():
        setup.models[key] = module.to(setup.device).train()
        setup.optimizers[key] = make_optimizer(setup.models[key], setup.training_args)
    for key, inputs in setup.batches.items():
        setup.batches[key] = {k: v.to(setup.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    setup.max_grad_norm = float(setup.training_args.get("max_grad_norm", 1.0))
    return setup


def model_key(kind: str) -> str:
    """Which of ``Setup.models`` a step kind trains."""
    return "AddressCLIP" if kind.startswith("AddressCLIP") else "CLIP"


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


def step_flops(setup: Setup, kind: str) -> int:
    """Forward + backward FLOPs of one step (math SDPA so that attention is counted)."""
    model, batch = setup.models[model_key(kind)], setup.batches[kind]
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, autocast:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


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
    result["table"] = format_report(result)
    print(result["table"])
    return result


if __name__ == "__main__":
    main()
