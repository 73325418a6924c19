"""Trainer compatibility: the collator feeds AddressCLIPModel; a resumed run ends with identical weights."""

import datasets
import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from addressclip_train.trainer import AddressCLIPTrainer, UniqueAddressSampler
from fixtures.tiny_models import ADDRESSES, tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel


class StopAfter(TrainerCallback):
    """Simulates an interruption: training ends after ``step`` (a checkpoint was just written)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def _trainer(output_dir, dataset, processor, callbacks=(), unique=False):
    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config(processor))
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=10,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        save_steps=5,
        save_strategy="steps",
        logging_steps=1,
        seed=0,
        data_seed=0,
        report_to=[],
        label_names=["utm"],
        remove_unused_columns=False,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = AddressCLIPCollator.from_config(processor, model.config)
    if not unique:
        return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=list(callbacks))
    return AddressCLIPTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=list(callbacks),
        processing_class=processor, bank_addresses=ADDRESSES, unique_address_batches=True,
    )  # fmt: skip


@pytest.mark.parametrize("unique", [False, True], ids=["random-order", "unique-address-batches"])
def test_ten_steps_checkpoint_and_resume_give_identical_weights(tmp_path, unique):
    processor = tiny_processor()
    dataset = datasets.Dataset.from_list(tiny_rows(24, seed=7))
    full = _trainer(tmp_path / "full", dataset, processor, unique=unique)
    full.train()
    losses = [log for log in full.state.log_history if "loss" in log]
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(log["loss"])) for log in losses)

    interrupted = _trainer(tmp_path / "resumed", dataset, processor, [StopAfter(5)], unique=unique)
    interrupted.train()
    assert interrupted.state.global_step == 5 and (tmp_path / "resumed" / "checkpoint-5").is_dir()
    resumed = _trainer(tmp_path / "resumed", dataset, processor, unique=unique)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-5"))
    assert resumed.state.global_step == 10

    final_full, final_resumed = full.model.state_dict(), resumed.model.state_dict()
    assert final_full.keys() == final_resumed.keys()
    for name, tensor in final_full.items():
        assert torch.allclose(tensor, final_resumed[name], atol=1e-6, rtol=0), name
    torch.manual_seed(0)
    start = AddressCLIPModel(tiny_config(processor)).state_dict()
    assert any(not torch.equal(start[k], final_full[k]) for k in start), "training changed nothing"


def test_unique_address_sampler_batches_hold_distinct_addresses():
    addresses = [a for a in ADDRESSES for _ in range(5)] + [ADDRESSES[0]] * 3  # 6 addresses, uneven counts
    sampler = UniqueAddressSampler(addresses, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(addresses)))  # every row once per epoch
    for start in range(0, 30, 6):  # while every address still has rows, each window of 6 is distinct
        assert len({addresses[i] for i in order[start : start + 6]}) == 6
    assert list(sampler) == order  # deterministic for one epoch
    sampler.set_epoch(1)
    assert list(sampler) != order
