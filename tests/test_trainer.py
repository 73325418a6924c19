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


def _trainer(output_dir, dataset, processor, callbacks=(), unique=False, places=None):
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
        processing_class=processor, bank_addresses=ADDRESSES, bank_places=places, unique_address_batches=True,
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


def _located(rows: list[dict]) -> list[dict]:
    """``tiny_rows`` with the latitude/longitude of their UTM 35V positions."""
    from modeling_addressclip.geo import utm_to_latlon

    lat, lon = utm_to_latlon([r["utm_east"] for r in rows], [r["utm_north"] for r in rows], "35V")
    return [dict(r, latitude=float(a), longitude=float(o)) for r, a, o in zip(rows, lat, lon, strict=True)]


def test_evaluation_reports_distance_metrics_of_the_top1_place(tmp_path):
    import numpy as np
    from pyproj import Geod

    from addressclip_train.places import address_places

    processor = tiny_processor()
    rows = _located(tiny_rows(30, seed=5))
    bank_rows, query = datasets.Dataset.from_list(rows[:18]), _located(tiny_rows(11, seed=6))
    query[0]["latitude"] = float("nan")  # a photo without coordinates: counted, left out of the distances
    places = address_places(ADDRESSES, bank_rows)
    trainer = _trainer(tmp_path, bank_rows, processor, unique=True, places=places)
    trainer.args.per_device_eval_batch_size = 4  # batches of 4, 4, 3
    metrics = trainer.evaluate(datasets.Dataset.from_list(query))
    assert trainer.model.address_places == places  # the evaluated bank carries the places
    assert metrics["eval_distance_samples"] == 10 and metrics["eval_samples"] == 11
    top1 = [ranked[0] for ranked in trainer.last_localization[0]][1:]
    predicted = np.array([[places[ADDRESSES.index(a)][k] for k in ("latitude", "longitude")] for a in top1])
    truth = np.array([[row["latitude"], row["longitude"]] for row in query[1:]])
    _, _, metres = Geod(ellps="WGS84").inv(predicted[:, 1], predicted[:, 0], truth[:, 1], truth[:, 0])
    assert metrics["eval_median_error_m"] == pytest.approx(np.median(metres), rel=1e-6)
    for key, limit in (("eval_within_25m", 25), ("eval_within_100m", 100), ("eval_within_1km", 1000)):
        assert metrics[key] == pytest.approx(np.mean(metres <= limit))
    assert 0 < metrics["eval_within_1km"] < 1  # rows spread over 1.5 km: a real spread, not a constant

    without = trainer.evaluate(datasets.Dataset.from_list(query).remove_columns(["latitude", "longitude"]))
    assert "eval_ssa@1" in without and not any("within" in k or "error" in k or "distance" in k for k in without)
    trainer.bank_places = None
    assert "eval_median_error_m" not in trainer.evaluate(datasets.Dataset.from_list(query))
    with pytest.raises(ValueError, match="bank_places has 2 entries for 6 addresses"):
        _trainer(tmp_path, bank_rows, processor, unique=True, places=places[:2])
