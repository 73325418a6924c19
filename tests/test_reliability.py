"""kill -9 at any moment: train.py resumes to the uninterrupted weights, a killed builder leaves nothing that loads."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_utils import get_last_checkpoint

from addressclip_train.checkpoints import checkpoint_problem, last_complete_checkpoint
from dataset_scripts.schema import SPLITS, remove_stale_siblings, staging_directory
from fixtures.kill_resume import kill_and_resume, kill_points, kill_when, kill_when_paused, run_to_end


def _checkpoint(output: Path, step: int) -> Path:
    """A hand-made ``checkpoint-step`` with every file a resume reads, whole."""
    path = output / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"weight": torch.arange(6.0)}, path / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.ones(64)}, path / name)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {  # a kill mid-save leaves one of these; the key starts the reported problem
    "model.safetensors is truncated": lambda c: _cut(c / "model.safetensors"),
    "optimizer.pt is truncated": lambda c: _cut(c / "optimizer.pt"),
    "scheduler.pt is missing": lambda c: (c / "scheduler.pt").unlink(),
    "rng_state.pth is truncated": lambda c: _cut(c / "rng_state.pth"),
    "trainer_state.json is missing": lambda c: (c / "trainer_state.json").unlink(),
    "trainer_state.json is truncated": lambda c: _cut(c / "trainer_state.json"),
    "trainer_state.json says global_step 2": lambda c: (c / "trainer_state.json").write_text('{"global_step": 2}'),
}


@pytest.mark.parametrize("problem", DAMAGE)
def test_last_complete_checkpoint_skips_a_partly_written_one(tmp_path, caplog, problem):
    _checkpoint(tmp_path, 1)
    complete = _checkpoint(tmp_path, 2)
    DAMAGE[problem](_checkpoint(tmp_path, 10))  # numeric order: 10 is the newest, not 2
    assert get_last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")  # what the Trainer would pick
    with caplog.at_level(logging.WARNING, logger="addressclip_train.checkpoints"):
        assert last_complete_checkpoint(tmp_path) == str(complete)
    assert f"skipping incomplete checkpoint {tmp_path / 'checkpoint-10'}: {problem}" in caplog.text
    assert len(caplog.records) == 1


def test_checkpoint_problem_of_other_layouts(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    only_model = _checkpoint(tmp_path, 1)  # save_only_model: weights and trainer state only
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (only_model / name).unlink()
    assert checkpoint_problem(only_model) == "optimizer.pt is missing"
    assert checkpoint_problem(only_model, save_only_model=True) is None

    ranks = _checkpoint(tmp_path, 2)  # two processes: one RNG file per rank
    (ranks / "rng_state.pth").rename(ranks / "rng_state_0.pth")
    torch.save({"state": torch.ones(64)}, ranks / "rng_state_1.pth")
    assert checkpoint_problem(ranks) is None
    _cut(ranks / "rng_state_1.pth")
    assert checkpoint_problem(ranks).startswith("rng_state_1.pth is truncated")
    (ranks / "rng_state_1.pth").unlink()  # the Trainer resumes without it (as with another process count)
    assert checkpoint_problem(ranks) is None

    sharded = _checkpoint(tmp_path, 3)
    (sharded / "model.safetensors").unlink()
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    for name, shard in shards.items():
        save_file({name: torch.ones(8)}, sharded / shard)
    assert checkpoint_problem(sharded) is None
    _cut(sharded / shards["b"])
    assert checkpoint_problem(sharded).startswith("model-00002-of-00002.safetensors is truncated")


def test_kill_points_are_seeded_increasing_and_in_range():
    points = kill_points(seed=0, kills=3)
    assert points == kill_points(seed=0, kills=3) and points != kill_points(seed=1, kills=3)
    steps = [p.step for p in points]
    assert steps == sorted(set(steps)) and all(1 <= s < 10 for s in steps)


@pytest.mark.slow
def test_kill_9_mid_step_and_mid_checkpoint_write_then_resume_gives_the_uninterrupted_run(tiny_demo_dir, tmp_path):
    result = kill_and_resume(tiny_demo_dir, tmp_path, seed=0, kills=2)
    # seed 0 draws a kill during step 8, then (in the resumed run) one while checkpoint-9's optimizer.pt is written
    assert result["killed_at"] == [
        "step 8: during the training step (checkpoint-7 complete)",
        "checkpoint-9: mid-write of optimizer.pt (half of it on disk)",
    ]
    assert result["incomplete_after_kill"] == [[], ["checkpoint-9"]]
    assert result["resumed_from"] == ["checkpoint-7", "checkpoint-8"]  # not the half-written checkpoint-9
    assert result["max_abs_diff"] <= 1e-6
    assert result["metrics_equal"] and result["resumed_metrics"] == result["reference_metrics"]
    assert {"eval_ssa@1", "eval_ssa@5", "eval_sa@1", "eval_sa@5"} <= set(result["reference_metrics"])


def _builder(output: Path) -> list[str]:
    return [sys.executable, "-m", "dataset_scripts.demo_city", "--output", str(output),
            "--max-addresses", "6", "--image-size", "64"]  # fmt: skip


def _leftovers(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.glob(f".{output.name}.*"))


def _assert_loads_with_all_splits(output: Path, cache: Path) -> None:
    splits = datasets.load_dataset(str(output), cache_dir=str(cache))
    assert set(splits) == set(SPLITS) and all(len(splits[s]) > 0 for s in SPLITS)


def test_builder_killed_mid_write_leaves_nothing_loadable_and_a_rerun_cleans_up(tmp_path):
    output = tmp_path / "city"
    writing = lambda: any(tmp_path.glob(".city.tmp-*/.cache/**/*.arrow"))  # noqa: E731 - rows being written
    kill_when(_builder(output), writing, tmp_path / "killed.log")
    assert not output.exists() and [n.split("-")[0] for n in _leftovers(output)] == [".city.tmp"]
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset(str(output), cache_dir=str(tmp_path / "hf"))
    run_to_end(_builder(output), tmp_path / "rerun.log")
    _assert_loads_with_all_splits(output, tmp_path / "hf")
    assert _leftovers(output) == []  # the killed build's temp directory is gone


def test_only_leftovers_of_gone_writers_on_this_host_are_removed(tmp_path):
    output = tmp_path / "city"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    mine = staging_directory(output).name.split("-")[1]  # this host's tag
    names = {
        f".city.tmp-{mine}-{gone.pid}-0123abcd": False,  # writer gone: removed
        f".city.old-{mine}-{gone.pid}-89abcdef": False,
        f".city.tmp-{mine}-{os.getppid()}-0123abcd": True,  # writer alive
        f".city.tmp-{mine}-{os.getpid()}-0123abcd": True,  # this process
        f".city.tmp-00000000-{gone.pid}-0123abcd": True,  # another host: its pids mean nothing here
        ".city.tmp-0123abcd": True,  # no owner recorded
        f".town.tmp-{mine}-{gone.pid}-0123abcd": True,  # another output
    }
    for name in names:
        (tmp_path / name).mkdir()
    assert sorted(p.name for p in remove_stale_siblings(output)) == sorted(n for n, keep in names.items() if not keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep)


PAUSE_IN_PUBLISH = """
import sys
from pathlib import Path
from fixtures.kill_resume import pause_for_kill
rename = Path.rename
def rename_then_pause(self, target):
    moved = rename(self, target)
    if ".old-" in Path(target).name:
        pause_for_kill(Path(sys.argv[1]), "publish_directory: old output moved away, new one not yet in place")
    return moved
Path.rename = rename_then_pause
from dataset_scripts.demo_city import main
main(sys.argv[2:])
"""


def test_builder_killed_between_the_renames_of_publish_then_rerun(tiny_demo_dir, tmp_path):
    output = tmp_path / "city"
    shutil.copytree(tiny_demo_dir, output)  # a previous complete build of the same settings
    marker = tmp_path / "paused"
    command = [sys.executable, "-c", PAUSE_IN_PUBLISH, str(marker), *_builder(output)[3:]]
    assert kill_when_paused(command, marker, tmp_path / "killed.log").startswith("publish_directory")
    assert not output.exists()
    assert sorted(n.split("-")[0] for n in _leftovers(output)) == [".city.old", ".city.tmp"]
    assert (next(tmp_path.glob(".city.old-*")) / "README.md").is_file()  # the previous build, still whole
    run_to_end(_builder(output), tmp_path / "rerun.log")
    _assert_loads_with_all_splits(output, tmp_path / "hf")
    assert _leftovers(output) == []
