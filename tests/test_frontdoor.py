"""The README's promises: its test command is what CI runs, and the CLI answers as documented."""

from __future__ import annotations

import re
from pathlib import Path

from dfpanel import __version__
from dfpanel.cli import COMMAND_MODULES, app, main

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert block, "README must open with a shell block holding the two set-up commands"
    lines = (ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines())
    return [ln for ln in lines if ln]


def test_ci_runs_exactly_the_readme_test_command():
    commands = _readme_commands()
    assert "make demo" in commands and "make test" in commands
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert ci == ["make test"]


def test_makefile_test_target_runs_pytest_in_the_venv():
    mk = (ROOT / "Makefile").read_text()
    target = re.search(r"^test: .*\n((?:\t.*\n)+)", mk, re.M)
    assert target and "pytest" in target.group(1)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_built_step(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups}
    assert registered, "no command registered"
    for name in registered:
        assert name in out
    assert {"synth", "index"} <= registered


def test_unknown_command_is_a_usage_error():
    assert main(["no-such-step"]) == 2


def test_command_modules_all_importable():
    import importlib

    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"dfpanel.commands.{name}")
        except ModuleNotFoundError as exc:
            assert exc.name == f"dfpanel.commands.{name}", exc
