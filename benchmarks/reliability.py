"""Reliability in one table: awkward images, malformed rows, kill -9 during training, fuzzed properties.

    python -m benchmarks.reliability                                 # 2 kills, 1,000 examples per property
    python -m benchmarks.reliability --kills 5 --examples 5000 --workdir /tmp/rel   # reuses the reference run
    python -m benchmarks.reliability --tiny --kills 0                # CI: 10 examples per property, no training

Each row is one suite, with the cases tried and the failures among them:

* bad images: ``fixtures/bad_inputs.IMAGE_CASES`` (truncated, empty, non-image and missing files, a decompression
  bomb, a non-image input; CMYK, 16-bit, palette, RGBA, grayscale, 1-pixel and EXIF-rotated files) through
  the localization pipeline of a tiny random model. Failure: an unreadable input not refused with an
  ``ImageLoadError`` naming it, or a convertible one localized otherwise than its RGB equivalent.
* bad rows: ``fixtures/bad_inputs.bad_rows()`` (every field missing, of a wrong type, non-finite, out of range,
  unparseable or inconsistent; extra keys; non-mappings) through ``schema.validate_row``. Failure: a row
  accepted, or refused with anything but a ``ValueError`` naming the row and the field.
* kills survived: ``fixtures/kill_resume.kill_and_resume`` once per seed (``--seed``, ``--seed + 1``, ...), one
  SIGKILL per run at a seeded point (in a training step or mid-write of a checkpoint file), then train.py
  reruns and resumes. Survived: final weights within 1e-6 of the uninterrupted run's and equal metrics.
* fuzz examples run: every property of ``fixtures/properties.py`` with ``--examples`` hypothesis examples
  (seeded). A failure is a falsified property: hypothesis stops at its first failing case and shrinks it.

The script exits with status 1 when any suite has a failure; the failures are listed under the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from fixtures import bad_inputs
from fixtures.suites import Suite, format_table

SURVIVAL_TOLERANCE = 1e-6
DEFAULT_KILLS, DEFAULT_EXAMPLES, TINY_EXAMPLES = 2, 1_000, 10


def _describe(err: BaseException, limit: int = 300) -> str:
    text = " ".join("".join(traceback.format_exception_only(err)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_cases(suite: Suite, cases: list, check: Callable[[object], None], label: Callable[[object], str]) -> None:
    """Run ``check`` on every case; any exception is a failure of that case."""
    for case in cases:
        suite.tried += 1
        try:
            check(case)
        except Exception as err:  # an unexpected exception type is exactly what is counted
            suite.failures.append(f"{label(case)}: {_describe(err)}")


def bad_images_suite() -> Suite:
    suite = Suite("bad images")
    localizer = bad_inputs.tiny_localizer()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        _run_cases(
            suite,
            list(bad_inputs.IMAGE_CASES),
            lambda case: bad_inputs.check_image_case(localizer, case, directory),
            lambda case: case.name,
        )
    refused = sum(case.error is not None for case in bad_inputs.IMAGE_CASES)
    suite.note = f"{refused} to refuse, {suite.tried - refused} to localize"
    return suite


def bad_rows_suite() -> Suite:
    suite = Suite("bad rows")
    _run_cases(suite, bad_inputs.bad_rows(), bad_inputs.check_row_case, lambda case: case.name)
    suite.note = "validate_row must raise ValueError naming the field"
    return suite


def demo_dataset() -> Path:
    """The tiny demo city that configs/tiny.json trains on (built into the cache once)."""
    from dataset_scripts.demo_city import default_cache_dir, load_demo_city

    load_demo_city(seed=0, image_size=64, max_addresses=6)
    return default_cache_dir(0, 64, 6)


def kills_suite(kills: int, seed: int, dataset: Path | None, workdir: Path | None) -> Suite:
    suite = Suite("kills survived")
    if kills <= 0:
        suite.skipped, suite.note = True, "skipped (--kills 0)"
        return suite
    from fixtures.kill_resume import kill_and_resume

    dataset = dataset or demo_dataset()
    diffs = []
    with tempfile.TemporaryDirectory() as scratch:
        runs = workdir or Path(scratch)
        for trial_seed in range(seed, seed + kills):
            suite.tried += 1
            try:
                result = kill_and_resume(dataset, runs, trial_seed, kills=1)
            except Exception as err:  # a run that fails to resume is a kill not survived
                suite.failures.append(f"seed {trial_seed}: {_describe(err)}")
                continue
            diffs.append(result["max_abs_diff"])
            if not (result["max_abs_diff"] <= SURVIVAL_TOLERANCE and result["metrics_equal"]):
                suite.failures.append(
                    f"seed {trial_seed}, killed at {result['killed_at']}: max |diff| {result['max_abs_diff']:.3g}, "
                    f"metrics equal: {result['metrics_equal']}"
                )
    suite.note = f"max abs weight diff {max(diffs):.3g}" if diffs else "no run finished"
    return suite


def fuzz_suite(examples: int, seed: int) -> Suite:
    from fixtures.properties import PROPERTIES

    suite = Suite("fuzz examples run")
    for prop in PROPERTIES:
        result = prop.fuzz(examples, seed=seed, database=False)
        suite.tried += result.examples
        if result.error is not None:
            suite.failures.append(f"{prop.name}: {_describe(result.error, limit=600)}")
    suite.note = f"{len(PROPERTIES)} properties, up to {examples:,} examples each; failures = falsified properties"
    return suite


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help=f"CI: {TINY_EXAMPLES} fuzz examples per property, 1 kill")
    parser.add_argument("--kills", type=int, default=None, help=f"kill/resume trials ({DEFAULT_KILLS}; 0: none)")
    parser.add_argument("--examples", type=int, default=None, help=f"fuzz examples per property ({DEFAULT_EXAMPLES:,})")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed and first kill seed")
    parser.add_argument("--dataset", type=Path, default=None, help="tiny demo city for the kills (default: built)")
    parser.add_argument("--workdir", type=Path, default=None, help="kill/resume runs (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.kills is None:
        args.kills = 1 if args.tiny else DEFAULT_KILLS
    if args.examples is None:
        args.examples = TINY_EXAMPLES if args.tiny else DEFAULT_EXAMPLES
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    runs: list[Callable[[], Suite]] = [
        bad_images_suite,
        bad_rows_suite,
        lambda: kills_suite(args.kills, args.seed, args.dataset, args.workdir),
        lambda: fuzz_suite(args.examples, args.seed),
    ]
    suites = []
    for run in runs:
        start = time.perf_counter()
        suite = run()
        suite.seconds = time.perf_counter() - start
        suites.append(suite)
    table = format_table(suites)
    print(f"Reliability (seed {args.seed}, {args.examples:,} fuzz examples per property)\n\n{table}")
    result = {
        "table": table,
        "examples": args.examples,
        "suites": {s.name: {"tried": s.tried, "failures": s.failures, "skipped": s.skipped} for s in suites},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if any(suite["failures"] for suite in outcome["suites"].values()) else 0)
