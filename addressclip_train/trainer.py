"""Training support for ``addressclip_train.train``: a Trainer that logs the three loss parts and evaluates SSA/SA.

Evaluation follows the paper (§6.1): the address bank is every address of train ∪ database,
each query image is ranked against it, and ``address_accuracy`` scores the top-k lists. When the
bank has places and the query rows carry ``latitude``/``longitude``, ``distance_accuracy`` adds how
far the top-1 address's place is from where each photo was taken (median metres, share within
25 m / 100 m / 1 km). Under several processes each rank localizes its shard and
``gather_for_metrics`` counts every query row exactly once.
"""

from __future__ import annotations

import ctypes
import math
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

from addressclip_train.places import has_places
from modeling_addressclip.data import AddressCLIPCollator, undecoded_images
from modeling_addressclip.image_utils import image_pixels
from modeling_addressclip.metrics import distance_accuracy
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy

logger = logging.get_logger(__name__)
LOSS_PARTS = ("loss_address", "loss_caption", "loss_geography")
COORDINATES = ("latitude", "longitude")


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
    """Query rows -> ``pixel_values`` (the one image policy, as in training and the pipeline),
    ``reference`` (an index into ``address_ids``) and, with ``coordinates``, each row's (latitude, longitude)
    as float64 (NaN where a row has none)."""

    processor: Any
    address_ids: dict[str, int]
    coordinates: bool = False

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        pixel_values = image_pixels(self.processor, [row["image"] for row in rows], "query row")
        batch = {
            "pixel_values": pixel_values,
            "reference": torch.tensor([self.address_ids[r["address"]] for r in rows]),
        }
        if self.coordinates:
            where = [[math.nan if row[key] is None else row[key] for key in COORDINATES] for row in rows]
            batch["coordinates"] = torch.tensor(where, dtype=torch.float64)
        return batch


@dataclass
class Localization:
    """A localized split, in row order: each row's top-k bank addresses, reference, top-1 score and bank index,
    and its own (latitude, longitude) when the split has them (``(N, 2)``, NaN where a row has none)."""

    predictions: list[list[str]]
    references: list[str]
    top_scores: list[float]
    top_indices: list[int]
    coordinates: np.ndarray | None = None


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
    """``Trainer`` whose evaluation is address localization against a bank of ``bank_addresses``
    (with ``bank_places``, aligned with it: each address's place, saved with the bank and used for distances).

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
        bank_places: Sequence[dict | None] | None = None,
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
        if bank_places is not None and len(bank_places) != len(self.bank_addresses):
            raise ValueError(f"bank_places has {len(bank_places)} entries for {len(self.bank_addresses)} addresses")
        self.bank_places = list(bank_places) if bank_places is not None else None
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

    def localize_with_scores(self, dataset) -> tuple[list[list[str]], list[str], list[float]]:
        """``localize_dataset`` plus each row's top-1 ``score`` (the pipeline's softmax over the bank)."""
        found = self.localize_rows(dataset)
        return found.predictions, found.references, found.top_scores

    @torch.no_grad()
    def localize_rows(self, dataset) -> Localization:
        """Rank the bank for every row of ``dataset``, gathered across processes (each row exactly once)."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        model.set_address_bank(self.bank_addresses, self.processing_class, places=self.bank_places)
        names = unique_addresses(self.bank_addresses, address_column(dataset))
        with_coordinates = set(COORDINATES) <= set(dataset.column_names or ())
        collator = QueryCollator(self.processing_class, {a: i for i, a in enumerate(names)}, with_coordinates)
        loader = DataLoader(
            undecoded_images(dataset),
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=collator,
            num_workers=self.args.dataloader_num_workers,
        )
        ranked, refs, top_scores, coordinates = [], [], [], []
        for batch in self.accelerator.prepare(loader):
            similarity = model.address_similarity(batch["pixel_values"].to(model.device))
            scores, indices = model.address_probabilities(similarity).topk(max(self.top_k), dim=-1)
            shard = (indices, batch["reference"], scores) + ((batch["coordinates"],) if with_coordinates else ())
            indices, reference, scores, *where = self.accelerator.gather_for_metrics(shard)  # one row order for all
            ranked.extend(indices.tolist())
            refs.extend(reference.tolist())
            top_scores.extend(scores[:, 0].tolist())
            if where:
                coordinates.append(where[0].cpu().numpy())
        model.train(was_training)
        return Localization(
            predictions=[[self.bank_addresses[i] for i in row] for row in ranked],
            references=[names[i] for i in refs],
            top_scores=top_scores,
            top_indices=[row[0] for row in ranked],
            coordinates=np.concatenate(coordinates).reshape(-1, 2) if with_coordinates else None,
        )

    def distance_metrics(self, found: Localization) -> dict[str, float]:
        """``distance_accuracy`` of each row's top-1 place against the row's own coordinates; {} when the bank has
        no places or the rows no coordinates. Rows that cannot be scored are counted and logged, never hidden."""
        if found.coordinates is None or not has_places(self.bank_places):
            return {}
        places = [self.bank_places[i] for i in found.top_indices]
        unplaced = np.array([p is None for p in places], dtype=bool)
        uncoordinated = ~np.isfinite(found.coordinates).all(axis=1)
        scored = np.flatnonzero(~unplaced & ~uncoordinated)
        if len(scored) < len(places):
            logger.warning(
                f"distance metrics: {len(places) - len(scored)} of {len(places)} query rows left out "
                f"({int(uncoordinated.sum())} without latitude/longitude, "
                f"{int((unplaced & ~uncoordinated).sum())} whose top-1 address has no place)"
            )
        if not len(scored):
            return {}
        predicted = [(places[i]["latitude"], places[i]["longitude"]) for i in scored]
        metrics = distance_accuracy(predicted, found.coordinates[scored].tolist())
        return {**metrics, "distance_samples": len(scored)}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """SSA@k / SA@k of the query split (paper §6.1) and, where places and coordinates exist, the distance of
        the top-1 place to the photo (``median_error_m``, ``within_25m`` ...); logged and passed to callbacks."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        start = time.time()
        found = self.localize_rows(dataset)
        self.last_localization = (found.predictions, found.references, found.top_scores)  # for abstention.calibrate
        scores = address_accuracy(found.predictions, found.references, k=self.top_k)
        scores.update(self.distance_metrics(found))
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
        metrics[f"{metric_key_prefix}_samples"] = len(found.references)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 3)
        if self.state.epoch is not None:
            metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = [
    "AddressCLIPTrainer",
    "LOSS_PARTS",
    "Localization",
    "QueryCollator",
    "UniqueAddressSampler",
    "address_column",
    "keep_freed_memory",
    "unique_addresses",
]
