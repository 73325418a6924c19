"""kill -9 a tiny ``train.py`` run at seeded points, rerun it, and compare with an uninterrupted run.

    python -m benchmarks.kill_resume --dataset DIR --workdir W --seed 0 --kills 2   # prints the result as JSON

Each run is ``train.py tiny.json --max_steps 10 --save_strategy steps --save_steps 1`` on ``DIR`` (a
tiny demo city). A seeded draw picks ``kills`` points, each a step and a phase: during the next
training step, or in the middle of writing one file of ``checkpoint-N`` (half of its bytes on disk).
Each killed run stops itself at its point and tells this process, which sends SIGKILL, so every kill
lands at the same place on every machine. The run after the last kill is plain ``python train.py``
(it resumes by itself); its ``model.safetensors`` and ``eval_results.json`` are compared with those of
the uninterrupted reference, which runs once per ``workdir``. The machinery is
``fixtures.kill_resume`` (shared with tests/test_reliability.py and ``benchmarks.reliability``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fixtures.kill_resume import kill_and_resume


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a tiny demo city directory")
    parser.add_argument("--workdir", type=Path, required=True, help="where the runs go (the reference is reused)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kills", type=int, default=1)
    args = parser.parse_args(argv)
    result = kill_and_resume(args.dataset, args.workdir, args.seed, args.kills)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
