"""kill -9 a tiny ``train.py`` run at seeded points, rerun it, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py --dataset DIR --workdir W --seed 0 --kills 2   # prints the result as JSON

Each run is ``train.py configs/tiny.json --max_steps 10 --save_strategy steps --save_steps 1`` on
``DIR`` (a tiny demo city). A seeded draw picks ``kills`` points, each a step and a phase: during the
next training step, or in the middle of writing one file of ``checkpoint-N`` (half of its bytes on
disk). The killed runs are this script in child mode (``--pause-at STEP:PHASE``): ``train.main`` with
a hook that stops the process at the point and tells the parent, which sends SIGKILL, so every kill
lands at the same place on every machine. The run after the last kill is plain ``python train.py``
(it resumes by itself); its ``model.safetensors`` and ``eval_results.json`` are compared with those of
the uninterrupted reference, which runs once per ``workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modeling_addressclip.checkpoints import checkpoint_problem, last_complete_checkpoint  # noqa: E402

MAX_STEPS = 10
TRAIN_FLAGS = ("--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", "1")
KILL_PHASES = ("training", "model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json")
TIMING_KEYS = ("runtime", "per_second")  # eval_results.json entries that are timings, not results


@dataclass(frozen=True)
class KillPoint:
    """Where a run is killed: during the training step after ``checkpoint-step``, or mid-write of one of its files."""

    step: int
    phase: str

    def describe(self) -> str:
        if self.phase == "training":
            return f"step {self.step + 1}: during the training step (checkpoint-{self.step} complete)"
        return f"checkpoint-{self.step}: mid-write of {self.phase} (half of it on disk)"


def kill_points(seed: int, kills: int = 1, max_steps: int = MAX_STEPS) -> list[KillPoint]:
    """``kills`` points at distinct, increasing steps in [1, max_steps), each with a phase; seeded."""
    rng = random.Random(seed)
    return [KillPoint(step, rng.choice(KILL_PHASES)) for step in sorted(rng.sample(range(1, max_steps), kills))]


def child_env() -> dict[str, str]:
    """The environment of every run: offline, and one thread unless the caller set another count."""
    offline = {name: "1" for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**os.environ, **offline, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def train_args(dataset_dir: Path, output_dir: Path) -> list[str]:
    """The ``train.py`` arguments of every run."""
    config = str(ROOT / "configs" / "tiny.json")
    return [config, "--dataset_name", str(dataset_dir), "--output_dir", str(output_dir), *TRAIN_FLAGS]


def pause_for_kill(marker: Path, description: str) -> None:
    """Tell the parent through ``marker`` (written atomically) that this process is at its kill point; wait."""
    ready = marker.with_name(marker.name + ".tmp")
    ready.write_text(description)
    ready.rename(marker)
    while True:
        time.sleep(60)


def kill_when(command: list[str], ready: Callable[[], bool], log: Path, timeout: float = 600) -> None:
    """Run ``command`` (output in ``log``) until ``ready()`` holds, then SIGKILL it and its process group."""
    with (
        log.open("w") as out,
        subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=out, stderr=out, start_new_session=True) as proc,
    ):
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"{command} ended ({proc.wait()}) before its kill point; {log}:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_when_paused(command: list[str], marker: Path, log: Path, timeout: float = 600) -> str:
    """Run ``command`` until it reaches :func:`pause_for_kill`, SIGKILL it, and return the marker's text."""
    marker.unlink(missing_ok=True)
    kill_when(command, marker.exists, log, timeout)
    return marker.read_text()


def run_to_end(command: list[str], log: Path, timeout: float = 600) -> None:
    """Run ``command`` to completion (output in ``log``); raise with the log's tail if it fails."""
    with log.open("w") as out:
        proc = subprocess.run(command, cwd=ROOT, env=child_env(), stdout=out, stderr=out, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed ({proc.returncode}); {log}:\n{log.read_text()[-3000:]}")


def install_kill_point(point: KillPoint, marker: Path) -> None:
    """Patch this process to stop at ``point`` (:func:`pause_for_kill`); a file phase first writes half the file."""
    if point.phase == "training":
        from transformers import Trainer

        step = Trainer.training_step

        def training_step(self, *args, **kwargs):
            if self.state.global_step == point.step:
                pause_for_kill(marker, point.describe())
            return step(self, *args, **kwargs)

        Trainer.training_step = training_step
        return
    import torch
    import transformers.modeling_utils
    from transformers.trainer_callback import TrainerState

    owner, name = {
        "model.safetensors": (transformers.modeling_utils, "safe_save_file"),
        "optimizer.pt": (torch, "save"),
        "rng_state.pth": (torch, "save"),
        "trainer_state.json": (TrainerState, "save_to_json"),
    }[point.phase]
    write = getattr(owner, name)  # each takes (object, path, ...)
    target = (f"checkpoint-{point.step}", point.phase)

    def half_write(*args, **kwargs):
        path = args[1]
        if not isinstance(path, (str, os.PathLike)) or Path(path).parts[-2:] != target:
            return write(*args, **kwargs)
        whole = marker.with_name(marker.name + ".whole")
        write(args[0], str(whole), *args[2:], **kwargs)
        data = whole.read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        pause_for_kill(marker, point.describe())

    setattr(owner, name, half_write)


def _reference(dataset_dir: Path, workdir: Path) -> Path:
    """The uninterrupted run's output directory, run once per ``workdir`` and dataset (not per code change)."""
    output = workdir / "reference"
    args = train_args(dataset_dir, output)
    stamp = output / "kill_resume.json"
    if (output / "eval_results.json").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == args:
        return output
    shutil.rmtree(output, ignore_errors=True)
    run_to_end([sys.executable, str(ROOT / "train.py"), *args], workdir / "reference.log")
    stamp.write_text(json.dumps(args))
    return output


def _metrics(output: Path) -> dict:
    metrics = json.loads((output / "eval_results.json").read_text())
    return {key: value for key, value in metrics.items() if not any(t in key for t in TIMING_KEYS)}


def max_abs_diff(a: Path, b: Path) -> float:
    """Largest |a - b| over every tensor of two safetensors files (inf if their tensor names differ)."""
    from safetensors.torch import load_file

    left, right = load_file(a), load_file(b)
    if left.keys() != right.keys():
        return float("inf")
    return max((left[k].double() - right[k].double()).abs().max().item() for k in left)


def _incomplete(output: Path) -> list[str]:
    return sorted(p.name for p in output.glob("checkpoint-*") if checkpoint_problem(p) is not None)


def _resume_point(output: Path) -> str | None:
    last = last_complete_checkpoint(output) if output.is_dir() else None
    return Path(last).name if last else None


def kill_and_resume(dataset_dir: Path, workdir: Path, seed: int, kills: int = 1) -> dict:
    """Kill a run ``kills`` times at :func:`kill_points` (``seed``), rerun it, and compare with the reference.

    Returns ``killed_at`` (a description per kill), ``incomplete_after_kill`` (checkpoints left unusable
    by each kill), ``resumed_from`` (the checkpoint each run after a kill started from), ``max_abs_diff``
    over every tensor of the final ``model.safetensors``, ``metrics_equal`` and both metric dicts
    (``eval_results.json`` without timings).
    """
    dataset_dir, workdir = Path(dataset_dir).resolve(), Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    reference = _reference(dataset_dir, workdir)
    output = workdir / f"resumed-seed{seed}-kills{kills}"
    shutil.rmtree(output, ignore_errors=True)
    args, marker = train_args(dataset_dir, output), workdir / f"paused-seed{seed}"
    result: dict = {"killed_at": [], "incomplete_after_kill": [], "resumed_from": []}
    for i, point in enumerate(kill_points(seed, kills)):
        if i:
            result["resumed_from"].append(_resume_point(output))
        child = [sys.executable, __file__, "--pause-at", f"{point.step}:{point.phase}", "--marker", str(marker)]
        result["killed_at"].append(kill_when_paused([*child, "--", *args], marker, workdir / f"killed-{seed}-{i}.log"))
        result["incomplete_after_kill"].append(_incomplete(output))
    result["resumed_from"].append(_resume_point(output))
    run_to_end([sys.executable, str(ROOT / "train.py"), *args], workdir / f"resumed-{seed}.log")
    result["max_abs_diff"] = max_abs_diff(reference / "model.safetensors", output / "model.safetensors")
    result["reference_metrics"], result["resumed_metrics"] = _metrics(reference), _metrics(output)
    result["metrics_equal"] = result["reference_metrics"] == result["resumed_metrics"]
    return result


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, help="a tiny demo city directory")
    parser.add_argument("--workdir", type=Path, help="where the runs go (the reference is reused)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--pause-at", help="child mode: STEP:PHASE, then train.py's arguments after --")
    parser.add_argument("--marker", type=Path, help="child mode: file written when the kill point is reached")
    parser.add_argument("train_args", nargs="*", help="child mode: train.py arguments")
    args = parser.parse_args(argv)
    if args.pause_at:
        import train

        step, phase = args.pause_at.split(":")
        point = KillPoint(int(step), phase)
        install_kill_point(point, args.marker)
        train.main(args.train_args)
        raise SystemExit(f"the run finished without reaching its kill point: {point.describe()}")
    result = kill_and_resume(args.dataset, args.workdir, args.seed, args.kills)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
