"""What README.md and the metric card say is what the code does: examples run, commands parse, marks hold."""

from __future__ import annotations

import doctest
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from addressclip_train import cli
from addressclip_train.train import parse_args

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
METRIC_CARD = (ROOT / "modeling_addressclip" / "metrics" / "address_accuracy" / "README.md").read_text()


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _commands() -> list[list[str]]:
    """Every command line of README.md's bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in _blocks(README, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                if part.strip():
                    commands.append(shlex.split(part))
    return commands


def test_the_readme_address_examples_run_as_written():
    parser = doctest.DocTestParser()
    examples = "\n".join(block for block in _blocks(README, "python") if ">>>" in block)
    test = parser.get_doctest(examples, {}, "README.md", "README.md", 0)
    assert test.examples, "README.md lost its >>> examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_metric_card_example_prints_what_it_says():
    block = next(b for b in _blocks(METRIC_CARD, "python") if "print(results)" in b)
    expected = re.search(r"print\(results\)\s+# (\{.*\})", block).group(1)
    proc = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')) == json.loads(expected.replace("'", '"'))


def _train_argv(command: list[str]) -> list[str] | None:
    """The training arguments of a README command, or None if it is not a training command."""
    if command[:2] == ["addressclip", "train"]:
        return command[2:]
    if command[:2] == ["python", "train.py"]:
        return command[2:]
    if command[:2] == ["accelerate", "launch"]:
        rest = command[2:]
        if "-m" in rest:
            return rest[rest.index("-m") + 2 :]
        return rest[rest.index("train.py") + 1 :]
    return None


@pytest.mark.parametrize("command", _commands(), ids=lambda command: " ".join(command)[:60])
def test_every_readme_command_names_what_exists(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_recipe.json").write_text("{}")
    train_argv = _train_argv(command)
    if train_argv is not None:
        parse_args(train_argv)  # the recipe resolves and every flag is a real argument
    elif command[:2] == ["addressclip", "build-demo"]:
        _flags_exist(["python", "-m", "dataset_scripts.demo_city"], command[2:])
    elif command[0] == "addressclip":
        cli.build_parser().parse_args(command[1:])
    elif command[:3] == ["python", "-m", "pytest"]:
        assert set(command[3:]) <= {"-q"}, command
    elif command[:2] == ["python", "-m"]:
        _flags_exist(command[:3], command[3:])
    else:
        assert command[0] == "pip", command
        target = command[-1]
        extra = re.fullmatch(r'"?addressclip\[(\w+)\]"?', target)
        setup = (ROOT / "setup.py").read_text()
        assert target == "." or (ROOT / target).is_file() or (extra and f'"{extra.group(1)}": [' in setup), command


def _flags_exist(program: list[str], argv: list[str]) -> None:
    """Every ``--flag`` of ``argv`` is in ``program --help`` (run as a module of the installed package)."""
    proc = subprocess.run([sys.executable, *program[1:], "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in (arg for arg in argv if arg.startswith("--")):
        assert flag in proc.stdout, f"{' '.join(program)} has no {flag}"


def test_not_slow_skips_what_the_readme_says_it_skips():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    slow = proc.stdout
    for expected in ("test_install.py", "test_distributed.py", "test_learning.py", "kill_9", "full_build"):
        assert expected in slow, f"{expected} is not marked slow"


def test_the_addresses_the_readme_shows_are_in_the_demo_city():
    from dataset_scripts import osm
    from dataset_scripts.demo_city import plan_views

    text = re.sub(r"\s+", " ", README)
    quoted = set(re.findall(r"[*\"]([A-Z][^\"*]+ (?:between|near) [^\"*]+, [A-Z][\w-]+)[\"*]", text))
    quoted |= set(re.findall(r"example query : (.+)", README))
    assert quoted, "README.md shows no demo address"
    demo = {plan.address.format() for plan in plan_views(osm.partition_streets(osm.HELSINKI_PBF), 0, None)}
    assert quoted <= demo, quoted - demo


def test_the_space_requirements_are_the_package_requirements_plus_its_app_extra():
    import ast

    setup = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {
        k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")
    }
    expected = keywords["install_requires"] + keywords["extras_require"]["app"]
    lines = (ROOT / "space" / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == expected
