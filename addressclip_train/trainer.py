"""Training support for ``addressclip_train.train``: a Trainer that logs the three loss parts and evaluates SSA/SA.

Evaluation follows the paper (§6.1): the address bank is every address of train ∪ database,
each query image is ranked against it, and ``address_accuracy`` scores the top-k lists. Under
several processes each rank localizes its shard and ``gather_for_metrics`` counts every query
row exactly once.
"""

from __future__ import annotations

import ctypes
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.utils import logging

from modeling_addressclip.data import AddressCLIPCollator, undecoded_images
from modeling_addressclip.image_utils import image_pixels
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy

logger = logging.get_logger(__name__)
LOSS_PARTS = ("loss_address", "loss_caption", "loss_geography")


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory in the process instead of returning it to the OS (CPU training).

    By default glibc serves large blocks with fresh ``mmap`` pages and trims the heap after frees, so
    every step page-faults its activations in again: ~11k faults per demo step, ~5-10% of its time.
    A fixed mmap threshold (its 32 MiB maximum) and no trimming keep them; peak RSS is unchanged.
    Returns False where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


@dataclass
class QueryCollator:
    """Query rows -> ``pixel_values`` (the one image policy, as in training and the pipeline) and
    ``reference`` (an index into ``address_ids``)."""

    processor: Any
    address_ids: dict[str, int]

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        pixel_values = image_pixels(self.processor, [row["image"] for row in rows], "query row")
        return {"pixel_values": pixel_values, "reference": torch.tensor([self.address_ids[r["address"]] for r in rows])}


class UniqueAddressSampler(torch.utils.data.Sampler[int]):
    """Each epoch visits every row once, ordered in rounds that take one row of every address.

    Consecutive rows (a batch, or the global batch of several processes) then hold distinct
    addresses whenever the batch is not larger than the number of addresses, so Eq. 1 never treats
    another view of the same address as a negative. Deterministic in (seed, epoch), so a resumed run
    sees the same order.
    """

    def __init__(self, addresses: Sequence[str], seed: int = 0):
        groups: dict[str, list[int]] = defaultdict(list)
        for index, address in enumerate(addresses):
            groups[address].append(index)
        self.groups = list(groups.values())
        self.size = len(addresses)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = [list(rng.permutation(group)) for group in self.groups]
        while queues:
            order = rng.permutation(len(queues))
            yield from (int(queues[i].pop()) for i in order)
            queues = [q for q in queues if q]


def unique_addresses(*columns: Sequence[str]) -> list[str]:
    """Distinct addresses in first-seen order over several address columns (the bank's row order)."""
    return list(dict.fromkeys(a for column in columns for a in column))


def address_column(dataset) -> list[str]:
    """The ``address`` of every row, without decoding images (also for streaming datasets)."""
    if isinstance(dataset, datasets.Dataset):
        return list(dataset["address"])
    return [row["address"] for row in dataset.select_columns(["address"])]


class AddressCLIPTrainer(Trainer):
    """``Trainer`` whose evaluation is address localization against a bank of ``bank_addresses``.

    It also logs the mean of each loss part (Eq. 1, 2, 5) over the steps since the last log. With an
    ``AddressCLIPCollator`` the train split's images reach the collator undecoded, and the query split's
    reach evaluation undecoded, so both decode through the one image policy (``image_utils.load_image``,
    JPEGs only down to the model's input size) exactly as the pipeline does; on CPU, freed memory stays in the
    process (:func:`keep_freed_memory`).
    """

    def __init__(
        self,
        *args,
        bank_addresses: Sequence[str],
        top_k: Sequence[int] = (1, 5),
        unique_address_batches: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if isinstance(self.data_collator, AddressCLIPCollator) and self.train_dataset is not None:
            self.train_dataset = undecoded_images(self.train_dataset)
        if self.args.device.type == "cpu":
            keep_freed_memory()
        self.unique_address_batches = unique_address_batches
        if not bank_addresses:
            raise ValueError("bank_addresses is empty: evaluation needs the addresses of train ∪ database")
        self.bank_addresses = list(bank_addresses)
        self.top_k = tuple(k for k in sorted(top_k) if k <= len(self.bank_addresses))
        if len(self.top_k) < len(top_k):
            logger.warning(f"bank of {len(self.bank_addresses)} addresses: reporting only k in {self.top_k}")
        self._loss_parts: dict[str, list[torch.Tensor]] = defaultdict(list)  # on device: no sync per step
        self.last_localization: tuple[list[list[str]], list[str], list[float]] | None = None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.unique_address_batches and isinstance(dataset, datasets.Dataset):
            return UniqueAddressSampler(address_column(dataset), seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for name in LOSS_PARTS:
            value = getattr(outputs, name, None)
            if value is not None:
                self._loss_parts[name].append(value.detach())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_parts:
            logs.update({name: round(torch.stack(v).mean().item(), 6) for name, v in self._loss_parts.items()})
            self._loss_parts.clear()
        super().log(logs, start_time)

    def localize_dataset(self, dataset) -> tuple[list[list[str]], list[str]]:
        """Top-k bank addresses for every row of ``dataset`` (in order) and the rows' reference addresses."""
        ranked, references, _ = self.localize_with_scores(dataset)
        return ranked, references

    @torch.no_grad()
    def localize_with_scores(self, dataset) -> tuple[list[list[str]], list[str], list[float]]:
        """``localize_dataset`` plus each row's top-1 ``score`` (the pipeline's softmax over the bank)."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        model.set_address_bank(self.bank_addresses, self.processing_class)
        names = unique_addresses(self.bank_addresses, address_column(dataset))
        collator = QueryCollator(self.processing_class, {a: i for i, a in enumerate(names)})
        loader = DataLoader(
            undecoded_images(dataset),
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=collator,
            num_workers=self.args.dataloader_num_workers,
        )
        ranked, refs, top_scores = [], [], []
        for batch in self.accelerator.prepare(loader):
            similarity = model.address_similarity(batch["pixel_values"].to(model.device))
            scores, indices = model.address_probabilities(similarity).topk(max(self.top_k), dim=-1)
            indices, reference, scores = self.accelerator.gather_for_metrics((indices, batch["reference"], scores))
            ranked.extend(indices.tolist())
            refs.extend(reference.tolist())
            top_scores.extend(scores[:, 0].tolist())
        model.train(was_training)
        return [[self.bank_addresses[i] for i in row] for row in ranked], [names[i] for i in refs], top_scores

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """SSA@k / SA@k of the query split (paper §6.1), logged and passed to callbacks like Trainer's metrics."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        start = time.time()
        predictions, references, top_scores = self.localize_with_scores(dataset)
        self.last_localization = (predictions, references, top_scores)  # for abstention.calibrate
        scores = address_accuracy(predictions, references, k=self.top_k)
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
        metrics[f"{metric_key_prefix}_samples"] = len(references)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 3)
        if self.state.epoch is not None:
            metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = [
    "AddressCLIPTrainer",
    "LOSS_PARTS",
    "QueryCollator",
    "UniqueAddressSampler",
    "address_column",
    "keep_freed_memory",
    "unique_addresses",
]
