"""Which checkpoint a run can resume from: transformers' Trainer writes checkpoints in place, so a
run killed while saving leaves a ``checkpoint-N`` that ``get_last_checkpoint`` still returns."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging

logger = logging.get_logger(__name__)


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole file, judged by its own end markers (JSON, safetensors, torch.save zip)."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            with path.open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + size + end:
                return f"{path.name} is truncated"
        else:  # torch.save writes a zip archive whose central directory comes last
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        return f"{path.name} is truncated or unreadable ({type(err).__name__})"
    return None


def _weights_problem(checkpoint: Path) -> str | None:
    """Why the weights a resume loads (one file, or an index and every shard it names) are not whole."""
    for index in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME):
        if (checkpoint / index).is_file():
            try:
                shards = sorted(set(json.loads((checkpoint / index).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                return f"{index} is truncated or unreadable"
            return next(filter(None, (_file_problem(checkpoint / shard) for shard in shards)), None)
    return _file_problem(checkpoint / (WEIGHTS_NAME if (checkpoint / WEIGHTS_NAME).is_file() else SAFE_WEIGHTS_NAME))


def _state_problem(checkpoint: Path) -> str | None:
    """Why ``trainer_state.json`` is not the whole state of this ``checkpoint-N``."""
    path = checkpoint / "trainer_state.json"
    problem = _file_problem(path)
    if problem is None:
        state = json.loads(path.read_text())
        step = state.get("global_step") if isinstance(state, dict) else None
        if checkpoint.name != f"{PREFIX_CHECKPOINT_DIR}-{step}":
            problem = f"trainer_state.json says global_step {step}"
    return problem


def checkpoint_problem(checkpoint: str | os.PathLike, save_only_model: bool = False) -> str | None:
    """Why resuming from ``checkpoint`` would crash or silently differ; None when the files it reads are whole.

    ``Trainer._save_checkpoint`` (transformers 5) writes in place, without fsync or renames: the weights,
    config, processor and ``training_args.bin``; then ``optimizer.pt``, ``scheduler.pt`` (``scaler.pt``),
    each rank's ``rng_state[_i].pth``; and ``trainer_state.json`` last (rank 0). A kill in between leaves a
    ``checkpoint-N`` that ``get_last_checkpoint`` still returns; resuming from it crashes on the missing or
    cut ``trainer_state.json`` (every rerun again: each picks the same directory), and a checkpoint that
    lacks ``optimizer.pt`` or ``scheduler.pt`` resumes silently with a fresh optimizer. Checked in write
    order, so the answer names where the writer stopped. A missing per-rank RNG file is accepted: the
    Trainer resumes without it, as it must when the number of processes changed, which the files cannot
    tell from a kill.
    """
    checkpoint = Path(checkpoint)
    states = [] if save_only_model else ["optimizer.pt", "scheduler.pt"]
    rng = sorted(checkpoint.glob("rng_state*.pth"))
    problems = (
        _weights_problem(checkpoint),
        *(_file_problem(checkpoint / name) for name in states),
        None if rng or save_only_model else "no rng_state file",
        *map(_file_problem, rng),
        _state_problem(checkpoint),
    )
    return next(filter(None, problems), None)


def last_complete_checkpoint(output_dir: str | os.PathLike, save_only_model: bool = False) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that passes :func:`checkpoint_problem`, or None.

    Replaces transformers' ``get_last_checkpoint``, which returns a checkpoint half written by a killed
    run; each newer incomplete checkpoint is skipped with a warning naming it.
    """
    pattern = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
    found = [(int(m[1]), p) for p in Path(output_dir).glob("*") if p.is_dir() and (m := pattern.fullmatch(p.name))]
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path, save_only_model)
        if problem is None:
            return str(path)
        logger.warning(f"skipping incomplete checkpoint {path}: {problem} (a run killed while saving it?)")
    return None


__all__ = ["checkpoint_problem", "last_complete_checkpoint"]
