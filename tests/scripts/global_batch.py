"""Run under ``accelerate launch --multi_gpu --num_processes 2 -m tests.scripts.global_batch``: 2 x B vs 1 x 2B.

Started as a module from the repository root, it imports ``fixtures`` as the tests do. Every rank
builds the same seeded model and the same 2B rows. The reference is the loss and gradient of the
whole 2B batch in one process (gather disabled). The distributed run feeds rank r its half through
DDP (which averages gradients) with the exact global-batch gather. It does so for AddressCLIP (full
fine-tuning) and for each prompt-learning method named in argv[2:] (default: coop and cocoop, whose
Eq. 1/2 gathers the texts' token ids and the per-image logit rows). Rank 0 writes the largest
differences as JSON to argv[1]: ``{"world_size": 2, "methods": {"none": {...}, "coop": {...}, ...}}``.
"""

import copy
import json
import sys

import torch
from accelerate import Accelerator

from fixtures.tiny_models import tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel


def compare(accelerator: Accelerator, method: str | None, per_rank: int) -> dict:
    """Loss parts and (trainable) gradients of 2 x B under DDP against 1 x 2B in one process."""
    world, rank = accelerator.num_processes, accelerator.process_index
    processor = tiny_processor()
    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config(processor, prompt_learning=method))
    model.initialize_prompts(processor.tokenizer)
    collator = AddressCLIPCollator.from_config(processor, model.config)
    rows = tiny_rows(per_rank * world, seed=1)

    reference = copy.deepcopy(model)
    reference.config.gather_across_ranks = False
    full = reference(**collator(rows))
    full.loss.backward()

    ddp = accelerator.prepare(model)
    local = ddp(**collator(rows[rank * per_rank : (rank + 1) * per_rank]))
    accelerator.backward(local.loss)

    loss_diff = max(
        abs(getattr(local, k).item() - getattr(full, k).item())
        for k in ("loss", "loss_address", "loss_caption", "loss_geography")
    )
    # Relative to the whole gradient: some parameters (attention key biases) have an exactly-zero true
    # gradient, so a per-parameter ratio would only compare rounding noise. Frozen CLIP weights have none.
    pairs = [
        (p, q) for p, q in zip(accelerator.unwrap_model(ddp).parameters(), reference.parameters()) if q.requires_grad
    ]
    diff = torch.cat([(p.grad - q.grad).flatten() for p, q in pairs])
    ref = torch.cat([q.grad.flatten() for _, q in pairs])
    grad_diff = max((diff.norm() / ref.norm()).item(), (diff.abs().max() / ref.abs().max()).item())
    return dict(
        loss=local.loss.item(),
        reference_loss=full.loss.item(),
        max_abs_loss_diff=loss_diff,
        rel_grad_diff=grad_diff,
        trainable=len(pairs),
    )


def main(out_path: str, methods: list[str], per_rank: int = 4) -> None:
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # CPU: gloo, one process per launch slot
    results = {name: compare(accelerator, None if name == "none" else name, per_rank) for name in ["none", *methods]}
    if accelerator.is_main_process:
        with open(out_path, "w") as f:
            json.dump(dict(world_size=accelerator.num_processes, methods=results), f)
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["coop", "cocoop"])
